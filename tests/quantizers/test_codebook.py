"""The fast nearest-entry kernel against the simple reference argmin(squared_distances)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vqlearn.quantizers import codebook as cb


def _reference(x, e):
  dist = cb.squared_distances(x, e)
  idx = jnp.argmin(dist, axis=-1)
  return idx, jnp.take_along_axis(dist, idx[..., None], axis=-1)[..., 0]


@pytest.mark.parametrize("n,g,k,d", [(1, 1, 2, 3), (37, 1, 31, 5), (300, 2, 100, 4),
                                     (1000, 1, 2048, 8), (70, 3, 33, 2)])
def test_nearest_equals_reference(n, g, k, d, monkeypatch):
  monkeypatch.setattr(cb, "TILE_ELEMENTS", 8192)  # force several row tiles and padding
  monkeypatch.setattr(cb, "MIN_TILE_ROWS", 8)
  kx, ke = jax.random.split(jax.random.PRNGKey(n + k))
  x = jax.random.normal(kx, (n, g, d))
  e = jax.random.normal(ke, (g, k, d))
  idx, dist = jax.jit(cb.nearest)(x, e)
  ref_idx, ref_dist = _reference(x, e)
  np.testing.assert_array_equal(idx, ref_idx)
  np.testing.assert_allclose(dist, ref_dist, rtol=1e-5, atol=1e-4)


def test_ties_resolve_to_the_first_index_across_blocks():
  b = cb.ARGMIN_BLOCK
  e = jnp.zeros((1, 3 * b + 5, 2)).at[0, :, 0].set(5.0)
  for i in (3 + 2 * b, 3 + b, 3):  # three equal nearest entries, in three blocks
    e = e.at[0, i].set(jnp.array([1.0, 0.0]))
  x = jnp.array([[[1.0, 0.0]], [[0.9, 0.0]]])
  idx, dist = cb.nearest(x, e)
  np.testing.assert_array_equal(idx[:, 0], [3, 3])
  np.testing.assert_allclose(dist[:, 0], [0.0, 0.01], atol=1e-6)


def test_padding_codes_are_never_chosen():
  # K = 5 is padded to a whole block; even far-away rows and non-finite rows get real codes.
  e = jax.random.normal(jax.random.PRNGKey(0), (1, 5, 3))
  x = jnp.array([[[1e18, -1e18, 1e18]], [[jnp.nan, 0.0, 0.0]], [[0.1, 0.2, 0.3]]])
  idx, _ = cb.nearest(x, e)
  assert ((idx >= 0) & (idx < 5)).all()
  x64, e64 = np.asarray(x, np.float64)[[0, 2], 0], np.asarray(e, np.float64)[0]
  # ||x||^2 is dropped: at 1e36 it would swamp the differences even in float64.
  exact = ((e64 ** 2).sum(-1)[None] - 2.0 * x64 @ e64.T).argmin(1)
  np.testing.assert_array_equal(idx[jnp.array([0, 2]), 0], exact)


def test_bfloat16_inputs_assign_in_float32():
  x = jax.random.normal(jax.random.PRNGKey(0), (512, 1, 16)).astype(jnp.bfloat16)
  e = jax.random.normal(jax.random.PRNGKey(1), (1, 256, 16))
  idx, _ = cb.nearest(x, e)
  x64, e64 = np.asarray(x, np.float64)[:, 0], np.asarray(e, np.float64)[0]
  exact = ((x64[:, None] - e64[None]) ** 2).sum(-1).argmin(1)
  assert np.mean(np.asarray(idx[:, 0]) == exact) >= 0.999


def test_sample_rows_distinct_real_rows_then_cycled():
  key = jax.random.PRNGKey(0)
  mask = jnp.array([1, 0, 1, 1, 0, 1, 1, 0, 1, 1], jnp.float32)  # 7 real rows
  picks = np.asarray(cb.sample_rows(key, mask, 5))
  assert len(set(picks)) == 5 and (np.asarray(mask)[picks] == 1).all()
  picks = np.asarray(cb.sample_rows(key, mask, 12))  # more seeds than real rows: cycle them
  assert set(picks) == set(np.flatnonzero(np.asarray(mask)))
  np.testing.assert_array_equal(picks[7:], picks[:5])
  # Padding appended at the end does not change the draw.
  padded = jnp.concatenate([mask, jnp.zeros(6)])
  np.testing.assert_array_equal(cb.sample_rows(key, padded, 5), cb.sample_rows(key, mask, 5))


def test_kmeans_on_fewer_real_rows_than_codes():
  x = jnp.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [99.0, 99.0]])
  mask = jnp.array([1.0, 1.0, 1.0, 0.0])
  centroids, counts = cb.kmeans(jax.random.PRNGKey(0), x, mask, 5, 3)
  np.testing.assert_allclose(counts.sum(), 3.0)
  found = {tuple(np.round(c, 4)) for c in np.asarray(centroids)}
  assert found == {(0.0, 0.0), (10.0, 0.0), (0.0, 10.0)}  # the padded row is never a seed
