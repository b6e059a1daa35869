"""The quantizer protocol (DESIGN.md), checked identically on every registered configuration."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from tests.quantizers.cases import CASES, REQUIRED_METRICS, batch, make
from vqlearn import quantizers

KEY = jax.random.PRNGKey(42)


def _setup(case, shape=(4, 6, 8)):
  q = make(case)
  x, mask = batch(shape)
  params, state = q.init(jax.random.PRNGKey(1), jax.ShapeDtypeStruct(x.shape, x.dtype))
  return q, params, state, x, mask


def _train_step(q):
  return jax.jit(functools.partial(q.apply, train=True))


def _assert_trees_close(a, b, atol=1e-5, rtol=1e-5):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(np.asarray(u, np.float64), np.asarray(v, np.float64),
                               atol=atol, rtol=rtol)


def test_registry_covers_every_name():
  assert {name for name, _ in CASES.values()} == set(quantizers.names())
  for name in quantizers.names():  # reference defaults build without arguments
    assert isinstance(quantizers.get(name), quantizers.Quantizer)


@pytest.mark.parametrize("case", sorted(CASES))
def test_shapes_dtypes_and_codes(case):
  q, params, state, x, mask = _setup(case)
  out, _ = _train_step(q)(params, state, x, rng=KEY, mask=mask)
  s, v = q.spec
  assert out.quantized.shape == x.shape and out.quantized.dtype == x.dtype
  assert out.codes.shape == x.shape[:-1] + (s,) and out.codes.dtype == jnp.int32
  real = np.asarray(mask) > 0
  codes = np.asarray(out.codes)
  assert ((codes[real] >= 0) & (codes[real] < v)).all()
  assert (codes[~real] == -1).all()
  assert (np.asarray(out.quantized)[~real] == 0).all()
  if out.probs is not None:
    assert out.probs.shape == x.shape[:-1] + (s, v)
  for name, value in {**out.losses, **out.metrics}.items():
    assert value.shape == () and value.dtype == jnp.float32, name
    assert np.isfinite(value), name
  assert set(REQUIRED_METRICS) <= set(out.metrics)
  assert 0 <= out.metrics["usage"] <= 1
  assert 0 < out.metrics["perplexity"] <= s * v + 1e-3


@pytest.mark.parametrize("case", sorted(CASES))
def test_lookup_matches_quantized(case):
  q, params, state, x, mask = _setup(case)
  # One step first, so that k-means initialisation (which rewrites the codebook inside the
  # step that triggers it) is behind us; after that a training step quantizes with the
  # codebook of the state it was given, and updates it afterwards.
  _, state = _train_step(q)(params, state, x, rng=KEY, mask=mask)
  for train in (True, False):
    out, _ = jax.jit(functools.partial(q.apply, train=train))(
        params, state, x, rng=jax.random.PRNGKey(5), mask=mask)
    looked_up = q.lookup(params, state, out.codes)
    np.testing.assert_allclose(looked_up, out.quantized, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("case", sorted(CASES))
def test_lookup_enumerates_the_codebook(case):
  q, params, state, x, _ = _setup(case)
  s, v = q.spec
  codes = jnp.broadcast_to(jnp.arange(v)[:, None], (v, s)).astype(jnp.int32)
  vectors = q.lookup(params, state, codes)
  assert vectors.shape == (v, x.shape[-1])
  assert np.isfinite(vectors).all()
  assert (np.asarray(q.lookup(params, state, -jnp.ones((1, s), jnp.int32))) == 0).all()


@pytest.mark.parametrize("case", sorted(CASES))
def test_jit_and_eager_agree(case):
  q, params, state, x, mask = _setup(case)
  eager = q.apply(params, state, x, rng=KEY, mask=mask, train=True)
  jitted = _train_step(q)(params, state, x, rng=KEY, mask=mask)
  _assert_trees_close(eager, jitted, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("case", sorted(CASES))
def test_eval_leaves_state_and_is_deterministic(case):
  q, params, state, x, mask = _setup(case)
  # Advance once so the state is not the initial one.
  _, state = _train_step(q)(params, state, x, rng=KEY, mask=mask)
  evaluate = jax.jit(functools.partial(q.apply, train=False))
  out_a, state_a = evaluate(params, state, x, mask=mask)
  out_b, _ = evaluate(params, state, x, rng=jax.random.PRNGKey(7), mask=mask)
  for before, after in zip(jax.tree.leaves(state), jax.tree.leaves(state_a)):
    np.testing.assert_array_equal(before, after)
  for a, b in zip(jax.tree.leaves(out_a), jax.tree.leaves(out_b)):
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("case", sorted(CASES))
def test_state_structure_stable_and_no_retrace(case):
  q, params, state, x, mask = _setup(case)
  traces = []

  @jax.jit
  def step(params, state, x, mask, rng):
    traces.append(1)
    return q.apply(params, state, x, rng=rng, mask=mask, train=True)

  structure = jax.tree.structure(state)
  specs = [(a.shape, a.dtype) for a in jax.tree.leaves(state)]
  for i in range(3):
    out, state = step(params, state, x, mask, jax.random.fold_in(KEY, i))
    assert jax.tree.structure(state) == structure
    assert [(a.shape, a.dtype) for a in jax.tree.leaves(state)] == specs
  assert len(traces) == 1
  assert all(np.isfinite(v) for v in jax.tree.leaves(out.metrics))


@pytest.mark.parametrize("case", sorted(CASES))
def test_init_on_abstract_shapes(case):
  q = make(case)
  x, _ = batch()
  concrete = q.init(jax.random.PRNGKey(3), x)
  abstract = q.init(jax.random.PRNGKey(3), jax.ShapeDtypeStruct(x.shape, x.dtype))
  _assert_trees_close(concrete, abstract, atol=0, rtol=0)
  shapes = jax.eval_shape(q.init, jax.random.PRNGKey(3), jax.ShapeDtypeStruct(x.shape, x.dtype))
  assert jax.tree.structure(shapes) == jax.tree.structure(concrete)


@pytest.mark.parametrize("case", sorted(CASES))
def test_padding_changes_nothing_when_masked(case):
  q, params, state, x, mask = _setup(case)
  step = _train_step(q)
  out, new_state = step(params, state, x, rng=KEY, mask=mask)
  # Two extra examples of garbage (large values, inf, nan), fully masked, appended.
  garbage = 100.0 * jax.random.normal(jax.random.PRNGKey(9), (2,) + x.shape[1:])
  garbage = garbage.at[0, 0].set(jnp.inf).at[1, -1].set(jnp.nan)
  x_pad = jnp.concatenate([x, garbage])
  mask_pad = jnp.concatenate([mask, jnp.zeros((2,) + mask.shape[1:])])
  out_pad, state_pad = step(params, state, x_pad, rng=KEY, mask=mask_pad)
  _assert_trees_close(new_state, state_pad, atol=1e-5, rtol=1e-4)
  _assert_trees_close((out.losses, out.metrics), (out_pad.losses, out_pad.metrics),
                      atol=1e-5, rtol=1e-4)
  np.testing.assert_allclose(out.quantized, out_pad.quantized[:x.shape[0]], atol=1e-5)
  np.testing.assert_array_equal(out.codes, out_pad.codes[:x.shape[0]])
  assert (np.asarray(out_pad.codes[x.shape[0]:]) == -1).all()


@pytest.mark.parametrize("case", sorted(CASES))
def test_float32_assignments_for_bfloat16_inputs(case):
  q, params, state, x, mask = _setup(case)
  x16 = x.astype(jnp.bfloat16)
  out16, _ = _train_step(q)(params, state, x16, rng=KEY, mask=mask)
  out32, _ = _train_step(q)(params, state, x16.astype(jnp.float32), rng=KEY, mask=mask)
  assert out16.quantized.dtype == jnp.bfloat16
  np.testing.assert_array_equal(out16.codes, out32.codes)
  for value in jax.tree.leaves((out16.losses, out16.metrics)):
    assert value.dtype == jnp.float32


@pytest.mark.parametrize("case", sorted(CASES))
def test_orbax_round_trip(case, tmp_path):
  q, params, state, x, mask = _setup(case)
  _, state = _train_step(q)(params, state, x, rng=KEY, mask=mask)
  tree = {"params": params, "state": state}
  with ocp.StandardCheckpointer() as ckpt:
    ckpt.save(tmp_path / "ckpt", tree)
    ckpt.wait_until_finished()
    restored = ckpt.restore(tmp_path / "ckpt", jax.tree.map(ocp.utils.to_shape_dtype_struct,
                                                            tree))
  assert jax.tree.structure(restored) == jax.tree.structure(tree)
  for a, b in zip(jax.tree.leaves(tree), jax.tree.leaves(restored)):
    assert a.dtype == b.dtype
    np.testing.assert_array_equal(a, b)
  out_a, _ = q.apply(params, state, x, mask=mask)
  out_b, _ = q.apply(restored["params"], restored["state"], x, mask=mask)
  np.testing.assert_array_equal(out_a.codes, out_b.codes)
