"""vq and ema_vq against numpy derivations of REFERENCE.md §1."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vqlearn import quantizers

KEY = jax.random.PRNGKey(0)


def _np_nearest(x, e):
  dist = ((x[:, None, :] - e[None, :, :]) ** 2).sum(-1)
  return dist.argmin(1)


def _data(n=24, d=5, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n, d)).astype(np.float32)
  mask = (rng.uniform(size=n) > 0.3).astype(np.float32)
  return x, mask


def test_vq_losses_codes_and_gradients():
  x, mask = _data()
  q = quantizers.vq(8, init_scale=1.0)
  params, state = q.init(KEY, x)
  e = np.asarray(params["codebook"], np.float64)
  out, _ = q.apply(params, state, jnp.asarray(x), mask=jnp.asarray(mask), train=True)

  idx = _np_nearest(x.astype(np.float64), e)
  real = mask > 0
  np.testing.assert_array_equal(np.asarray(out.codes)[real, 0], idx[real])
  expected = ((e[idx] - x) ** 2).mean(1)[real].mean()
  np.testing.assert_allclose(out.losses["codebook"], expected, rtol=1e-5)
  np.testing.assert_allclose(out.losses["commitment"], expected, rtol=1e-5)
  np.testing.assert_allclose(out.metrics["quantization_error"],
                             ((e[idx] - x) ** 2).sum(1)[real].mean(), rtol=1e-5)

  # d codebook / d e_k = 2 sum_{n: idx=k} (e_k - x_n) / (n_real d); commitment gives e nothing.
  def loss(params, name):
    out, _ = q.apply(params, state, jnp.asarray(x), mask=jnp.asarray(mask), train=True)
    return out.losses[name]

  grad_e = np.zeros_like(e)
  for n in np.flatnonzero(real):
    grad_e[idx[n]] += 2 * (e[idx[n]] - x[n]) / (real.sum() * x.shape[1])
  np.testing.assert_allclose(jax.grad(loss)(params, "codebook")["codebook"], grad_e,
                             atol=1e-6)
  np.testing.assert_array_equal(jax.grad(loss)(params, "commitment")["codebook"], 0.0)

  # Straight-through: the output's gradient to x is the identity on real rows, zero on padding.
  g = np.random.default_rng(1).normal(size=x.shape).astype(np.float32)
  grad_x = jax.grad(lambda x: jnp.sum(q.apply(params, state, x, mask=jnp.asarray(mask))[0]
                                      .quantized * g))(jnp.asarray(x))
  np.testing.assert_allclose(grad_x, g * mask[:, None], atol=1e-6)


def test_rotation_trick_value_and_gradient():
  x, _ = _data(n=6, d=4, seed=3)
  q = quantizers.vq(5, init_scale=1.0, estimator="rotation")
  params, state = q.init(KEY, x)
  e = np.asarray(params["codebook"], np.float64)
  g = np.random.default_rng(2).normal(size=x.shape)
  fn = lambda x: q.apply(params, state, x)[0].quantized
  out = fn(jnp.asarray(x))
  grad = jax.grad(lambda x: jnp.sum(fn(x) * g))(jnp.asarray(x))
  idx = _np_nearest(x.astype(np.float64), e)
  np.testing.assert_allclose(out, e[idx], atol=1e-5)
  for n in range(x.shape[0]):
    xv, qv = x[n].astype(np.float64), e[idx[n]]
    xh, qh = xv / np.linalg.norm(xv), qv / np.linalg.norm(qv)
    r = (xh + qh) / np.linalg.norm(xh + qh)
    rot = np.eye(4) - 2 * np.outer(r, r) + 2 * np.outer(qh, xh)
    np.testing.assert_allclose(rot @ xh, qh, atol=1e-9)  # R maps x^ onto q^
    scale = np.linalg.norm(qv) / np.linalg.norm(xv)
    np.testing.assert_allclose(grad[n], scale * rot.T @ g[n], atol=1e-4)


def test_cosine_codebook_assigns_by_angle():
  x, _ = _data(n=16, d=3, seed=4)
  q = quantizers.vq(6, init_scale=1.0, cosine=True)
  params, state = q.init(KEY, x)
  e = np.asarray(params["codebook"], np.float64)
  out, _ = q.apply(params, state, jnp.asarray(x))
  unit = lambda a: a / np.linalg.norm(a, axis=-1, keepdims=True)
  expected = (unit(x) @ unit(e).T).argmax(1)
  np.testing.assert_array_equal(out.codes[:, 0], expected)
  np.testing.assert_allclose(np.linalg.norm(out.quantized, axis=-1), 1.0, atol=1e-5)


def _clusters(seed=0, per=50, k=4, d=3):
  rng = np.random.default_rng(seed)
  centres = 10.0 * rng.normal(size=(k, d))
  x = np.concatenate([c + 0.05 * rng.normal(size=(per, d)) for c in centres])
  return centres, rng.permutation(x).astype(np.float32)


def _match(found, centres):
  dist = np.linalg.norm(found[:, None] - centres[None], axis=-1)
  return dist.min(0)  # distance from each true centre to the closest entry


@pytest.mark.parametrize("name", ["vq", "ema_vq"])
def test_kmeans_init_recovers_separated_centres(name):
  centres, x = _clusters()
  # Seeds are random rows (no k-means++): with 4 seeds for 4 clusters, Lloyd recovers them all
  # only if each cluster gets one (a 9% chance); with 32, a cluster goes unseeded with
  # probability 4 (3/4)^32 < 1e-3, whatever the random stream.
  k = 32
  q = quantizers.get(name, codebook_size=k, kmeans_init=True, kmeans_iters=10)
  params, state = q.init(KEY, x)
  before = np.asarray(q.lookup(params, state, jnp.arange(k)[:, None]))
  assert _match(before, centres).max() > 1.0
  step = jax.jit(functools.partial(q.apply, train=True))
  out, state = step(params, state, jnp.asarray(x), rng=KEY)
  after = np.asarray(q.lookup(params, state, jnp.arange(k)[:, None]))
  assert _match(after, centres).max() < 0.1  # sub-cluster means stay within the 0.05 spread
  assert out.metrics["perplexity"] > 3.9
  # Initialisation happens once: a second batch does not re-run k-means.
  assert bool(state["initialized"])


def test_vq_revives_a_collapsed_codebook():
  _, x = _clusters(k=8, per=20)
  window = 3
  q = quantizers.vq(8, revive_dead=True, usage_window=window)
  params, state = q.init(KEY, x)
  params = {"codebook": jnp.zeros_like(params["codebook"]).at[:, 0].set(1000.0)
            .at[0].set(0.0)}  # every row picks entry 0; the other 7 are far away and dead
  step = jax.jit(functools.partial(q.apply, train=True))
  usages = []
  for i in range(window + 1):
    out, state = step(params, state, jnp.asarray(x), rng=jax.random.fold_in(KEY, i))
    usages.append(float(out.metrics["usage"]))
  assert usages[:window] == [1 / 8] * window  # dead until a whole window has passed
  assert usages[window] > 0.5
  # Revived entries are rows of the batch.
  book = np.asarray(q.lookup(params, state, jnp.arange(8)[:, None]))
  dist = np.linalg.norm(book[1:, None] - x[None], axis=-1).min(1)
  assert dist.max() < 1e-3  # float32 round-off of (1000 + offset)


def test_ema_vq_two_updates_match_numpy():
  x1, m1 = _data(n=20, d=3, seed=5)
  x2, m2 = _data(n=20, d=3, seed=6)
  k, decay, eps = 4, 0.9, 1e-5
  q = quantizers.ema_vq(k, decay=decay, epsilon=eps)
  params, state = q.init(KEY, x1)
  e = np.asarray(state["codebook"], np.float64)
  counts_h, sums_h, weight = np.zeros(k), np.zeros((k, 3)), 0.0
  step = jax.jit(functools.partial(q.apply, train=True))
  for x, m in [(x1, m1), (x2, m2)]:
    out, state = step(params, state, jnp.asarray(x), mask=jnp.asarray(m))
    idx = _np_nearest(x.astype(np.float64), e)
    onehot = np.eye(k)[idx] * m[:, None]
    np.testing.assert_array_equal(np.asarray(out.codes)[m > 0, 0], idx[m > 0])
    commit = ((e[idx] - x) ** 2).mean(1)[m > 0].mean()
    np.testing.assert_allclose(out.losses["commitment"], commit, rtol=1e-5)
    counts_h = decay * counts_h + (1 - decay) * onehot.sum(0)
    sums_h = decay * sums_h + (1 - decay) * onehot.T @ x
    weight = decay * weight + (1 - decay)
    n, s = counts_h / weight, sums_h / weight  # zero-debiased
    smoothed = (n + eps) / (n.sum() + k * eps) * n.sum()  # Laplace smoothing
    e = s / smoothed[:, None]
    np.testing.assert_allclose(state["codebook"], e, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(state["ema_weight"], 1 - decay ** 2, rtol=1e-6)


def test_ema_vq_split_revival_fills_dead_entries():
  _, x = _clusters(k=4, per=40)
  q = quantizers.ema_vq(8, revive_dead=True, dead_threshold=1.0, decay=0.5)
  params, state = q.init(KEY, x)
  state = dict(state, codebook=jnp.zeros_like(state["codebook"]).at[1:, 0].set(1e4))
  step = jax.jit(functools.partial(q.apply, train=True))
  out, state = step(params, state, jnp.asarray(x), rng=KEY)
  assert float(out.metrics["usage"]) == 1 / 8  # the batch used entry 0 only
  counts = np.asarray(state["ema_counts"] / state["ema_weight"])
  assert counts.min() >= 1.0  # every entry was refilled by splitting
  np.testing.assert_allclose(counts.sum(), x.shape[0], rtol=1e-5)  # splitting conserves mass
  book = np.asarray(state["codebook"])
  assert len({tuple(np.round(r, 6)) for r in book}) == 8  # nudged copies are distinct
  out, state = step(params, state, jnp.asarray(x), rng=jax.random.fold_in(KEY, 1))
  assert float(out.metrics["usage"]) > 0.25
