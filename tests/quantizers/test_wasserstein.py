"""Wasserstein VQ (VQ-WAE, REFERENCE.md §4): Sinkhorn against exact OT computed with scipy,
gradients against a float64 numpy Sinkhorn, and the family's shape/mask/sharding behaviour."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P
from scipy.optimize import linear_sum_assignment, linprog
from scipy.special import logsumexp as np_logsumexp
from scipy.special import softmax as np_softmax

from vqlearn.quantizers.wasserstein import sinkhorn, wasserstein

KEY = jax.random.PRNGKey(0)


# ------------------------------------------------------------------------------------------------
# Independent numpy references.
# ------------------------------------------------------------------------------------------------

def np_cost(z, e):
  z, e = np.asarray(z, np.float64), np.asarray(e, np.float64)
  return np.sum(np.square(z[:, None, :] - e[None, :, :]), axis=-1)


def np_emd(cost, a, b):
  """Exact optimal transport cost between weights a (n,) and b (m,) by linear programming."""
  n, m = cost.shape
  rows = np.kron(np.eye(n), np.ones((1, m)))  # sum_j P_ij = a_i
  cols = np.kron(np.ones((1, n)), np.eye(m))  # sum_i P_ij = b_j
  res = linprog(cost.reshape(-1), A_eq=np.concatenate([rows, cols]),
                b_eq=np.concatenate([a, b]), bounds=(0, None), method="highs")
  assert res.status == 0
  return res.fun


def np_entropic_ot(cost, a, b, eps, iters=20000):
  """float64 min <P, C> + eps KL(P || a b^T) by plain (log-domain) Sinkhorn; returns (value, P)."""
  keep = a > 0
  cost, a = cost[keep], a[keep]
  log_a, log_b = np.log(a), np.log(b)
  g = np.zeros(cost.shape[1])
  for _ in range(iters):
    f = -eps * np_logsumexp(log_b[None] + (g[None] - cost) / eps, axis=1)
    g = -eps * np_logsumexp(log_a[:, None] + (f[:, None] - cost) / eps, axis=0)
  plan = np.exp(log_a[:, None] + log_b[None] + (f[:, None] + g[None] - cost) / eps)
  ratio = plan / (a[:, None] * b[None])
  kl = np.sum(np.where(plan > 0, plan * np.log(np.where(plan > 0, ratio, 1.0)), 0.0))
  full = np.zeros((keep.shape[0], cost.shape[1]))
  full[keep] = plan
  return float(np.sum(plan * cost) + eps * kl), full


def _setup(shape, k, *, seed=0, **options):
  q = wasserstein(k, **options)
  x = jax.random.normal(jax.random.PRNGKey(seed), shape, jnp.float32)
  params, state = q.init(jax.random.PRNGKey(seed + 1), jax.ShapeDtypeStruct(shape, jnp.float32))
  return q, params, state, x


def _losses(q, params, state, x, mask=None):
  out, _ = jax.jit(functools.partial(q.apply, train=True))(params, state, x, mask=mask)
  return {name: float(v) for name, v in out.losses.items()}


# ------------------------------------------------------------------------------------------------
# Sinkhorn and the OT loss against exact transport.
# ------------------------------------------------------------------------------------------------

def test_sinkhorn_marginals_with_padding():
  rng = np.random.default_rng(0)
  n, m, real = 10, 6, 7
  cost = np_cost(rng.normal(size=(n, 3)), rng.normal(size=(m, 3)))
  a = np.where(np.arange(n) < real, 1.0 / real, 0.0)
  b = np_softmax(rng.normal(size=m))
  with np.errstate(divide="ignore"):
    a_log, b_log = np.log(a), np.log(b)
  result = jax.jit(sinkhorn, static_argnums=4)(
      jnp.asarray(cost, jnp.float32), jnp.asarray(a_log, jnp.float32),
      jnp.asarray(b_log, jnp.float32), 0.1 * cost.mean(), 500)
  plan = np.asarray(result.plan, np.float64)
  assert np.isfinite(plan).all() and (plan >= 0).all()
  assert np.isfinite(np.asarray(result.f)).all() and np.isfinite(np.asarray(result.g)).all()
  assert (plan[real:] == 0).all()
  np.testing.assert_allclose(plan.sum(axis=1), a, atol=1e-4)
  np.testing.assert_allclose(plan.sum(axis=0), b, atol=1e-4)
  # The entropic plan itself, from an independent float64 solver.
  _, expected = np_entropic_ot(cost, a, b, 0.1 * cost.mean(), iters=2000)
  np.testing.assert_allclose(plan, expected, atol=1e-5)


def test_transport_cost_approaches_the_assignment_cost():
  n, d = 8, 3
  rng = np.random.default_rng(1)
  z, e = rng.normal(size=(n, d)), rng.normal(size=(n, d))
  cost = np_cost(z, e)
  rows, cols = linear_sum_assignment(cost)
  exact = cost[rows, cols].sum() / n  # uniform weights 1/N on both sides
  gaps = []
  for epsilon in (0.1, 0.03, 0.01):
    q = wasserstein(n, weights="global", epsilon=epsilon, sinkhorn_iters=2000)
    params, state = q.init(KEY, jax.ShapeDtypeStruct((n, d), jnp.float32))
    params["codebook"] = jnp.asarray(e, jnp.float32)
    gaps.append(abs(_losses(q, params, state, jnp.asarray(z, jnp.float32))["ot"] - exact) / exact)
  assert gaps[0] > gaps[1] > gaps[2], gaps
  assert gaps[-1] < 1e-3, gaps


def test_global_ot_matches_exact_emd_with_padding():
  n, real, k, d = 9, 6, 4, 2
  q, params, state, x = _setup((n, d), k, weights="global", epsilon=0.01, sinkhorn_iters=3000)
  params["weight_logits"] = jax.random.normal(jax.random.PRNGKey(5), (k,))
  mask = (jnp.arange(n) < real).astype(jnp.float32)
  pi = np_softmax(np.asarray(params["weight_logits"], np.float64))
  cost = np_cost(x[:real], params["codebook"])
  exact = np_emd(cost, np.full(real, 1.0 / real), pi)
  np.testing.assert_allclose(_losses(q, params, state, x, mask)["ot"], exact, rtol=1e-3)


def test_local_ot_is_the_mean_of_per_position_emds():
  b, t, k, d = 5, 3, 4, 2
  q, params, state, x = _setup((b, t, d), k, epsilon=0.02, sinkhorn_iters=3000)
  assert params["weight_logits"].shape == (t, k)
  params["weight_logits"] = jax.random.normal(jax.random.PRNGKey(6), (t, k))
  # Position 1 has two padded latents, position 2 none real at all (it must not count).
  mask = np.ones((b, t), np.float32)
  mask[3:, 1] = 0.0
  mask[:, 2] = 0.0
  pis = np_softmax(np.asarray(params["weight_logits"], np.float64), axis=-1)
  expected = []
  for p in range(2):
    real = mask[:, p] > 0
    cost = np_cost(np.asarray(x)[real, p], params["codebook"])
    expected.append(np_emd(cost, np.full(real.sum(), 1.0 / real.sum()), pis[p]))
  got = _losses(q, params, state, x, jnp.asarray(mask))["ot"]
  np.testing.assert_allclose(got, np.mean(expected), rtol=1e-3)


def test_kl_and_weight_perplexity_against_numpy():
  b, t, k, d = 2, 3, 5, 4
  q, params, state, x = _setup((b, t, d), k)
  logits = 2.0 * jax.random.normal(jax.random.PRNGKey(7), (t, k))
  params["weight_logits"] = logits
  pi = np_softmax(np.asarray(logits, np.float64), axis=-1)
  evaluate = jax.jit(q.apply)
  out, _ = evaluate(params, state, x)
  np.testing.assert_allclose(out.losses["kl"], np.mean(np.sum(pi * np.log(pi * k), axis=-1)),
                             rtol=1e-5)
  np.testing.assert_allclose(out.metrics["weight_perplexity"],
                             np.mean(np.exp(-np.sum(pi * np.log(pi), axis=-1))), rtol=1e-5)
  # Uniform weights (the init): no KL, full weight perplexity.
  out, _ = evaluate(q.init(KEY, x)[0], state, x)
  np.testing.assert_allclose(out.losses["kl"], 0.0, atol=1e-6)
  np.testing.assert_allclose(out.metrics["weight_perplexity"], k, rtol=1e-5)


# ------------------------------------------------------------------------------------------------
# Gradients: those of the entropic OT value at convergence (envelope theorem).
# ------------------------------------------------------------------------------------------------

def test_ot_gradients_match_the_entropic_ot_value():
  n, real, k, d, epsilon = 7, 5, 4, 3, 0.2
  q, params, state, x = _setup((n, d), k, weights="global", epsilon=epsilon,
                               sinkhorn_iters=1000)
  params["weight_logits"] = jax.random.normal(jax.random.PRNGKey(8), (k,))
  mask = (jnp.arange(n) < real).astype(jnp.float32)

  def ot(params, x):
    return q.apply(params, state, x, mask=mask, train=True)[0].losses["ot"]

  grads, grad_x = jax.jit(jax.grad(ot, argnums=(0, 1)))(params, x)
  for leaf in jax.tree.leaves((grads, grad_x)):
    assert np.isfinite(np.asarray(leaf)).all()
  assert (np.asarray(grad_x)[real:] == 0).all()

  z, e = np.asarray(x, np.float64)[:real], np.asarray(params["codebook"], np.float64)
  w = np.asarray(params["weight_logits"], np.float64)
  cost = np_cost(z, e)
  a = np.full(real, 1.0 / real)
  eps = epsilon * cost.mean()  # epsilon is relative to the mean cost over real latents
  value = lambda w: np_entropic_ot(cost, a, np_softmax(w), eps, iters=3000)[0]
  h = 1e-4
  fd = np.array([(value(w + h * np.eye(k)[j]) - value(w - h * np.eye(k)[j])) / (2 * h)
                 for j in range(k)])
  np.testing.assert_allclose(grads["weight_logits"], fd, atol=2e-4 * np.abs(fd).max() + 1e-6,
                             rtol=2e-3)

  # dOT/dC = P: the gradients w.r.t. latents and codewords are the plan-weighted pulls.
  _, plan = np_entropic_ot(cost, a, np_softmax(w), eps, iters=3000)
  expected_z = 2.0 * (plan.sum(1)[:, None] * z - plan @ e)
  expected_e = 2.0 * (plan.sum(0)[:, None] * e - plan.T @ z)
  np.testing.assert_allclose(np.asarray(grad_x)[:real], expected_z, atol=1e-4)
  np.testing.assert_allclose(grads["codebook"], expected_e, atol=1e-4)


def test_quantized_is_nearest_codeword_with_straight_through():
  q, params, state, x = _setup((6, 3), 5, weights="global")
  out, _ = jax.jit(q.apply)(params, state, x)
  cost = np_cost(x, params["codebook"])
  np.testing.assert_array_equal(out.codes[:, 0], np.argmin(cost, axis=1))
  np.testing.assert_allclose(out.quantized, np.asarray(params["codebook"])[np.argmin(cost, 1)],
                             atol=1e-6)
  probe = jax.random.normal(jax.random.PRNGKey(2), x.shape)
  grad = jax.jit(jax.grad(lambda x: jnp.sum(q.apply(params, state, x)[0].quantized * probe)))(x)
  np.testing.assert_allclose(grad, probe, atol=1e-6)


# ------------------------------------------------------------------------------------------------
# Behaviour: shapes, options, jit, padding, sharding.
# ------------------------------------------------------------------------------------------------

def test_parameter_shapes_and_option_checks():
  spec = lambda *shape: jax.ShapeDtypeStruct(shape, jnp.float32)
  params, state = wasserstein(16).init(KEY, spec(2, 4, 5, 8))
  assert params["codebook"].shape == (16, 8) and params["weight_logits"].shape == (20, 16)
  assert set(state) == {"step", "last_used"}
  assert wasserstein(16).init(KEY, spec(3, 8))[0]["weight_logits"].shape == (1, 16)
  assert wasserstein(16, weights="global").init(KEY, spec(2, 4, 8))[0]["weight_logits"].shape \
      == (16,)
  assert wasserstein(16, num_positions=4).init(KEY, spec(2, 4, 8))[0]["weight_logits"].shape \
      == (4, 16)
  with pytest.raises(ValueError, match="num_positions"):
    wasserstein(16, num_positions=3).init(KEY, spec(2, 4, 8))
  with pytest.raises(ValueError, match="num_positions"):
    wasserstein(16, weights="global", num_positions=4)
  for bad in (dict(weights="per_row"), dict(epsilon=0.0), dict(sinkhorn_iters=0),
              dict(codebook_size=1), dict(usage_window=0)):
    with pytest.raises(ValueError, match=next(iter(bad))):
      wasserstein(**{"codebook_size": 16, **bad})
  q = wasserstein(16)
  params, state = q.init(KEY, spec(2, 4, 8))
  with pytest.raises(ValueError, match="x must have 4 positions"):
    jax.eval_shape(q.apply, params, state, jnp.zeros((2, 5, 8)))
  # Global weights accept any leading shape.
  q = wasserstein(16, weights="global")
  params, state = q.init(KEY, spec(2, 4, 8))
  out = jax.eval_shape(q.apply, params, state, jnp.zeros((3, 7, 8)))[0]
  assert out.codes.shape == (3, 7, 1)


def test_jit_without_retrace():
  q, params, state, x = _setup((4, 3, 2), 6)
  traces = []

  @jax.jit
  def step(params, state, x):
    traces.append(1)
    out, state = q.apply(params, state, x, train=True)
    return out.losses["ot"], state

  first, state = step(params, state, x)
  second, state = step(params, state, x + 1.0)
  assert len(traces) == 1
  assert int(state["step"]) == 2
  assert np.isfinite(first) and np.isfinite(second) and first != second


@pytest.mark.parametrize("weights", ["local", "global"])
def test_masked_rows_change_nothing_including_gradients(weights):
  b, t, k, d = 4, 3, 6, 2
  q, params, state, x = _setup((b, t, d), k, weights=weights)
  mask = jnp.ones((b, t)).at[1, 2:].set(0.0)
  x_pad = jnp.concatenate([x, 100.0 * jax.random.normal(jax.random.PRNGKey(3), (2, t, d))])
  mask_pad = jnp.concatenate([mask, jnp.zeros((2, t))])

  @jax.jit
  def loss_and_grads(params, x, mask):
    def total(params, x):
      out, _ = q.apply(params, state, x, mask=mask, train=True)
      return out.losses["ot"] + out.losses["kl"], out
    return jax.grad(total, argnums=(0, 1), has_aux=True)(params, x)

  (g_params, g_x), out = loss_and_grads(params, x, mask)
  (g_params_pad, g_x_pad), out_pad = loss_and_grads(params, x_pad, mask_pad)
  for u, v in zip(jax.tree.leaves((out.losses, out.metrics, g_params)),
                  jax.tree.leaves((out_pad.losses, out_pad.metrics, g_params_pad))):
    np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(g_x, g_x_pad[:b], rtol=1e-5, atol=1e-6)
  assert (np.asarray(g_x_pad)[b:] == 0).all()
  assert (np.asarray(g_x)[1, 2:] == 0).all()
  # Nothing real at all: a zero loss and zero, finite gradients.
  (g_params_none, g_x_none), out_none = loss_and_grads(params, x, jnp.zeros((b, t)))
  assert float(out_none.losses["ot"]) == 0.0
  assert (np.asarray(g_x_none) == 0).all()
  assert (np.asarray(g_params_none["codebook"]) == 0).all()


@pytest.mark.parametrize("weights", ["local", "global"])
def test_shard_map_values_and_gradients_equal_the_unsharded_call(weights):
  # check_vma=True (shard_map's default) types the loss as replicated, so gradients w.r.t.
  # replicated params and sharded inputs are those of the unsharded call.
  devices = 4
  mesh = jax.make_mesh((devices,), ("data",), axis_types=(jax.sharding.AxisType.Auto,),
                       devices=jax.devices()[:devices])
  shape, k = (2 * devices, 3, 2), 6
  _, params, state, x = _setup(shape, k, weights=weights)
  params["weight_logits"] = 0.5 * jax.random.normal(KEY, params["weight_logits"].shape)
  mask = jnp.ones(shape[:-1]).at[1::2, 2:].set(0.0).at[:2].set(0.0)  # shard 0: all padding

  def grads(q):
    def ot(params, x, mask):
      return q.apply(params, state, x, mask=mask, train=True)[0].losses["ot"]
    return jax.value_and_grad(ot, argnums=(0, 1))

  ref_value, ref_grads = jax.jit(grads(wasserstein(k, weights=weights)))(params, x, mask)
  sharded = jax.jit(jax.shard_map(
      grads(wasserstein(k, weights=weights, axis_name="data")), mesh=mesh,
      in_specs=(P(), P("data"), P("data")), out_specs=(P(), (P(), P("data")))))
  value, sharded_grads = sharded(params, x, mask)
  np.testing.assert_allclose(value, ref_value, rtol=1e-5)
  assert np.abs(np.asarray(ref_grads[1])).max() > 0
  for u, v in zip(jax.tree.leaves(sharded_grads), jax.tree.leaves(ref_grads)):
    np.testing.assert_allclose(u, v, rtol=1e-4, atol=1e-6)
