"""Golden and behaviour tests for the Gumbel-softmax quantizer (REFERENCE.md §2).

Expected values are re-derived here in numpy (float64) from the reference formulas.
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import erf

from vqlearn.quantizers.gumbel import gumbel, gumbel_temperature, straight_through_mix

G, V = 2, 3
D = G * V  # d/G = V, so an identity codebook makes quantized == y (the mixing weights).


# ---------------------------------------------------------------------------------------------
# numpy references
# ---------------------------------------------------------------------------------------------

def np_softmax(z):
  z = z - z.max(-1, keepdims=True)
  e = np.exp(z)
  return e / e.sum(-1, keepdims=True)


def np_perplexity(mean_probs):
  """fairseq: sum over groups of exp(-sum_v p log(p + 1e-7)); mean_probs (G, V)."""
  return float(np.sum(np.exp(-np.sum(mean_probs * np.log(mean_probs + 1e-7), -1))))


def np_logits(params, x, v=V):
  """Logit head in float64: GELU (exact, torch nn.GELU) hidden blocks, then a linear layer."""
  h = np.asarray(x, np.float64)
  i = 0
  while f"hidden{i}_w" in params:
    h = h @ np.asarray(params[f"hidden{i}_w"], np.float64) + np.asarray(params[f"hidden{i}_b"])
    h = 0.5 * h * (1.0 + erf(h / math.sqrt(2.0)))
    i += 1
  h = h @ np.asarray(params["logits_w"], np.float64) + np.asarray(params["logits_b"])
  return h.reshape(h.shape[0], -1, v)


def fixed_params(rng, d=D, identity=False):
  rng = np.random.default_rng(rng)
  book = np.tile(np.eye(V), (G, 1)) if identity else rng.uniform(size=(G * V, d // G))
  return {"logits_w": jnp.asarray(rng.normal(size=(d, G * V)), jnp.float32),
          "logits_b": jnp.asarray(rng.normal(size=(G * V,)), jnp.float32),
          "codebook": jnp.asarray(book, jnp.float32)}


@functools.lru_cache(maxsize=None)
def jit_apply(q):
  """Jitted apply: one compilation per test instead of many eager op dispatches."""
  return jax.jit(q.apply, static_argnames="train")


def state_at(q, params, step):
  _, state = q.init(jax.random.key(0), jax.ShapeDtypeStruct((1, D), jnp.float32))
  return state | {"step": jnp.asarray(step, jnp.int32)}


def x_and_mask(n=7, seed=0):
  x = np.random.default_rng(seed).normal(size=(n, D)).astype(np.float32)
  mask = np.ones(n, np.float32)
  mask[[1, 4]] = 0.0
  return jnp.asarray(x), jnp.asarray(mask)


# ---------------------------------------------------------------------------------------------
# temperature schedule
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("step", [0, 1, 1000, 250_000, 10**6, 2**30])
@pytest.mark.parametrize("schedule", [(2.0, 0.5, 0.999995), (2.0, 0.1, 0.999995)])
def test_temperature_schedule(step, schedule):
  tau_max, tau_min, decay = schedule
  expected = max(tau_max * decay ** step, tau_min)
  got = float(gumbel_temperature(jnp.asarray(step, jnp.int32), schedule))
  np.testing.assert_allclose(got, expected, rtol=2e-6)


def test_temperature_metric_follows_state_step():
  q = gumbel(V, num_groups=G, temperature=(2.0, 0.1, 0.999))
  params = fixed_params(0)
  x, _ = x_and_mask()
  for step in (0, 1, 700, 5000):
    out, new_state = jit_apply(q)(params, state_at(q, params, step), x, rng=jax.random.key(1),
                             train=True)
    np.testing.assert_allclose(float(out.metrics["temperature"]),
                               max(2.0 * 0.999 ** step, 0.1), rtol=2e-6)
    assert int(new_state["step"]) == step + 1


# ---------------------------------------------------------------------------------------------
# perplexities and losses on fixed logits
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("train", [False, True])
def test_perplexities_and_losses_match_numpy(train):
  q = gumbel(V, num_groups=G)
  params = fixed_params(3)
  x, mask = x_and_mask()
  out, _ = jit_apply(q)(params, state_at(q, params, 12345), x, rng=jax.random.key(2), mask=mask,
                   train=train)
  real = np.asarray(mask) > 0
  p = np_softmax(np_logits(params, x))[real]  # (R, G, V), no noise, no tau.

  prob_ppl = np_perplexity(p.mean(0))
  np.testing.assert_allclose(float(out.metrics["prob_perplexity"]), prob_ppl, rtol=1e-5)
  np.testing.assert_allclose(float(out.losses["diversity"]), (G * V - prob_ppl) / (G * V),
                             rtol=1e-5, atol=1e-7)
  kl = np.mean(np.sum(p * np.log(p * V + 1e-10), -1))
  np.testing.assert_allclose(float(out.losses["kl"]), kl, rtol=1e-5, atol=1e-7)

  codes = np.asarray(out.codes)
  assert (codes[~real] == -1).all()
  if not train:
    np.testing.assert_array_equal(codes[real], np.argmax(p, -1))
  hard = np.eye(V)[codes[real]]  # (R, G, V) one-hots of the emitted codes
  np.testing.assert_allclose(float(out.metrics["perplexity"]), np_perplexity(hard.mean(0)),
                             rtol=1e-5)
  book = np.asarray(params["codebook"]).reshape(G, V, -1)
  q_np = np.concatenate([book[g][codes[real][:, g]] for g in range(G)], -1)
  err = np.mean(np.sum((np.asarray(x)[real] - q_np) ** 2, -1))
  np.testing.assert_allclose(float(out.metrics["quantization_error"]), err, rtol=1e-5)
  probs = np.asarray(out.probs)
  np.testing.assert_allclose(probs[real], p, rtol=1e-5, atol=1e-7)
  assert (probs[~real] == 0).all()


def test_uniform_logits_give_maximal_prob_perplexity_and_zero_losses():
  q = gumbel(V, num_groups=G)
  params = fixed_params(0) | {"logits_w": jnp.zeros((D, G * V)), "logits_b": jnp.zeros(G * V)}
  x, _ = x_and_mask()
  out, _ = jit_apply(q)(params, state_at(q, params, 0), x)
  np.testing.assert_allclose(float(out.metrics["prob_perplexity"]), G * V, rtol=1e-5)
  assert abs(float(out.losses["diversity"])) < 1e-5
  assert abs(float(out.losses["kl"])) < 1e-5


# ---------------------------------------------------------------------------------------------
# Gumbel noise, straight-through estimator
# ---------------------------------------------------------------------------------------------

def test_soft_output_is_tempered_softmax_of_logits_plus_logistic_noise():
  """With an identity codebook the soft output is y; tau * log y recovers logits + Gumbel noise."""
  n = 4000
  q = gumbel(V, num_groups=G, hard=False, temperature=(2.0, 0.5, 0.999))
  logits = np.array([1.0, -0.5, 0.2, 0.0, 0.0, 2.0])
  params = fixed_params(0, identity=True) | {"logits_w": jnp.zeros((D, G * V)),
                                             "logits_b": jnp.asarray(logits, jnp.float32)}
  x = jnp.zeros((n, D))
  key = jax.random.key(7)
  recovered = []
  for step in (0, 600):
    out, _ = jit_apply(q)(params, state_at(q, params, step), x, rng=key, train=True)
    y = np.asarray(out.quantized, np.float64).reshape(n, G, V)
    np.testing.assert_allclose(y.sum(-1), 1.0, rtol=1e-5)
    tau = max(2.0 * 0.999 ** step, 0.5)
    np.testing.assert_array_equal(np.asarray(out.codes), np.argmax(y, -1))
    recovered.append(tau * (np.log(y) - np.log(y[..., :1])))
  # Same rng: the noise is the same at both steps, only tau changed.
  np.testing.assert_allclose(recovered[0], recovered[1], atol=2e-3)
  # g_v - g_0 is logistic(0, 1): mean 0, variance pi^2 / 3.
  diff = recovered[0][..., 1:] - (logits.reshape(G, V)[:, 1:] - logits.reshape(G, V)[:, :1])
  assert np.all(np.abs(diff.mean(0)) < 4.5 * math.sqrt(math.pi ** 2 / 3 / n))
  np.testing.assert_allclose(diff.var(0), math.pi ** 2 / 3, rtol=0.1)


def test_gumbel_max_codes_follow_softmax_of_logits():
  n = 6000
  q = gumbel(V, num_groups=G)
  logits = np.array([1.0, 0.0, -1.0, 0.3, 0.3, 0.3])
  params = fixed_params(0) | {"logits_w": jnp.zeros((D, G * V)),
                              "logits_b": jnp.asarray(logits, jnp.float32)}
  out, _ = jit_apply(q)(params, state_at(q, params, 0), jnp.zeros((n, D)), rng=jax.random.key(3),
                   train=True)
  codes = np.asarray(out.codes)
  expected = np_softmax(logits.reshape(G, V))
  freq = np.stack([np.bincount(codes[:, g], minlength=V) / n for g in range(G)])
  assert np.all(np.abs(freq - expected) < 4.5 * np.sqrt(expected * (1 - expected) / n))


def test_hard_straight_through_forward_one_hot_gradient_soft():
  n, tau = 9, 2.0
  x, mask = x_and_mask(n, seed=5)
  params = fixed_params(4, identity=True)
  key = jax.random.key(11)
  cot = jnp.asarray(np.random.default_rng(6).normal(size=(n, D)), jnp.float32)
  soft_q, hard_q = gumbel(V, num_groups=G, hard=False), gumbel(V, num_groups=G, hard=True)
  state = state_at(hard_q, params, 0)

  def run(q, p):
    out, _ = jit_apply(q)(p, state, x, rng=key, mask=mask, train=True)
    return jnp.sum(out.quantized * cot), out

  (_, hard_out), hard_grad = jax.value_and_grad(run, argnums=1, has_aux=True)(hard_q, params)
  (_, soft_out), soft_grad = jax.value_and_grad(run, argnums=1, has_aux=True)(soft_q, params)
  real = np.asarray(mask) > 0
  y = np.asarray(soft_out.quantized, np.float64).reshape(n, G, V)[real]  # identity codebook
  codes = np.asarray(hard_out.codes)
  np.testing.assert_array_equal(codes, np.asarray(soft_out.codes))
  np.testing.assert_array_equal(codes[real], np.argmax(y, -1))

  # Forward: exactly one-hot (identity codebook), zeros at padding.
  hard_y = np.asarray(hard_out.quantized).reshape(n, G, V)
  np.testing.assert_array_equal(hard_y[real], np.eye(V)[codes[real]])
  assert (hard_y[~real] == 0).all()

  # Backward to the logit head: softmax Jacobian of y = softmax((l + g) / tau).
  up = np.asarray(cot, np.float64).reshape(n, G, V)[real]  # dL/dy (codebook is identity)
  dl = y * (up - np.sum(y * up, -1, keepdims=True)) / tau
  xr = np.asarray(x, np.float64)[real]
  np.testing.assert_allclose(np.asarray(hard_grad["logits_w"]), xr.T @ dl.reshape(-1, G * V),
                             rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(np.asarray(hard_grad["logits_b"]), dl.reshape(-1, G * V).sum(0),
                             rtol=1e-4, atol=1e-6)
  for name in ("logits_w", "logits_b"):
    np.testing.assert_allclose(np.asarray(hard_grad[name]), np.asarray(soft_grad[name]),
                               rtol=1e-5, atol=1e-6)

  # Backward to the codebook: through the one-hot value, only the selected entries.
  book_grad = np.zeros((G * V, V))
  for row, c in zip(np.asarray(cot, np.float64).reshape(n, G, V)[real], codes[real]):
    for g in range(G):
      book_grad[g * V + c[g]] += row[g]
  np.testing.assert_allclose(np.asarray(hard_grad["codebook"]), book_grad, rtol=1e-5,
                             atol=1e-6)


def test_straight_through_mix_equals_the_one_hot_einsum_and_its_gradients():
  # The custom VJP against the formula it replaces, (one_hot + soft - sg(soft)) @ books, with a
  # random non-square codebook so that a transposed gradient cannot pass.
  n, groups, v, k = 7, 2, 5, 3
  keys = jax.random.split(jax.random.key(0), 4)
  soft = jax.nn.softmax(jax.random.normal(keys[0], (n, groups, v)), -1)
  codes = jax.random.randint(keys[1], (n, groups), 0, v)
  books = jax.random.normal(keys[2], (groups, v, k))
  cot = jax.random.normal(keys[3], (n, groups, k))

  def einsum_mix(soft, books):
    y = jax.nn.one_hot(codes, v) + (soft - jax.lax.stop_gradient(soft))
    return jnp.einsum("ngv,gvk->ngk", y, books, precision=jax.lax.Precision.HIGHEST)

  value, vjp = jax.vjp(lambda s, b: straight_through_mix(s, codes, b), soft, books)
  ref_value, ref_vjp = jax.vjp(einsum_mix, soft, books)
  np.testing.assert_array_equal(value, ref_value)  # exactly the gathered codewords
  for got, want in zip(vjp(cot), ref_vjp(cot)):
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# masks, evaluation, parameters, lookup
# ---------------------------------------------------------------------------------------------

def test_masked_rows_are_excluded_from_everything():
  q = gumbel(V, num_groups=G)
  params = fixed_params(8)
  x, mask = x_and_mask()
  real = np.asarray(mask) > 0
  state = state_at(q, params, 3)
  masked, _ = jit_apply(q)(params, state, x, mask=mask)
  alone, _ = jit_apply(q)(params, state, x[real])
  for k in masked.losses:
    np.testing.assert_allclose(masked.losses[k], alone.losses[k], rtol=1e-6)
  for k in masked.metrics:
    np.testing.assert_allclose(masked.metrics[k], alone.metrics[k], rtol=1e-6)
  # Padding appended to a batch (inf/nan included) is covered for every family by
  # tests/quantizers/test_contract.py::test_padding_changes_nothing_when_masked.


def test_eval_is_deterministic_noise_free_and_keeps_state():
  q = gumbel(V, num_groups=G)
  params = fixed_params(9)
  x, mask = x_and_mask()
  state = state_at(q, params, 5)
  outs = []
  for rng in (None, jax.random.key(0), jax.random.key(1)):
    out, new_state = q.apply(params, state, x, rng=rng, mask=mask, train=False)
    assert new_state is state
    outs.append(out)
  for out in outs[1:]:
    np.testing.assert_array_equal(out.codes, outs[0].codes)
    np.testing.assert_array_equal(out.quantized, outs[0].quantized)
  real = np.asarray(mask) > 0
  np.testing.assert_array_equal(np.asarray(outs[0].codes)[real],
                                np.argmax(np_logits(params, x), -1)[real])
  with pytest.raises(ValueError, match="rng"):
    q.apply(params, state, x, train=True)


@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize("depth", [1, 2])
def test_parameter_shapes_init_and_head(shared, depth):
  d, v, g = 8, 5, 2
  q = gumbel(v, num_groups=g, shared_codebook=shared, logit_depth=depth, logit_factor=2)
  assert q.spec == (g, v)
  x_spec = jax.ShapeDtypeStruct((3, 4, d), jnp.bfloat16)
  params, state = q.init(jax.random.key(0), x_spec)
  shapes = jax.eval_shape(q.init, jax.random.key(0), x_spec)
  assert jax.tree.map(lambda a: a.shape, shapes) == jax.tree.map(lambda a: a.shape,
                                                                   (params, state))
  assert params["codebook"].shape == ((1 if shared else g) * v, d // g)
  book = np.asarray(params["codebook"])
  assert book.min() >= 0.0 and book.max() < 1.0
  assert state["last_used"].shape == (g, v) and int(state["step"]) == 0
  if depth == 1:
    assert set(params) == {"codebook", "logits_w", "logits_b"}
    assert params["logits_w"].shape == (d, g * v)
    assert (np.asarray(params["logits_b"]) == 0).all()
  else:
    assert params["hidden0_w"].shape == (d, 2 * d) and params["hidden0_b"].shape == (2 * d,)
    assert params["logits_w"].shape == (2 * d, g * v)
    bound = 1 / math.sqrt(d)
    assert np.abs(np.asarray(params["hidden0_w"])).max() <= bound

  x = jax.random.normal(jax.random.key(1), (3, 4, d), jnp.bfloat16)
  out, _ = jit_apply(q)(params, state, x)
  assert out.quantized.shape == x.shape and out.quantized.dtype == jnp.bfloat16
  assert out.codes.shape == (3, 4, g) and out.codes.dtype == jnp.int32
  assert out.probs.shape == (3, 4, g, v)
  np.testing.assert_allclose(np.asarray(out.probs).reshape(-1, g, v),
                             np_softmax(np_logits(params, np.asarray(x, np.float32).reshape(-1, d), v)),
                             rtol=1e-4, atol=1e-6)
  for value in list(out.losses.values()) + list(out.metrics.values()):
    assert value.shape == () and value.dtype == jnp.float32
  assert set(out.losses) == {"diversity", "kl"}
  assert {"perplexity", "usage", "dead_codes", "quantization_error", "prob_perplexity",
          "temperature"} <= set(out.metrics)


def test_large_init_statistics():
  params, _ = gumbel(320).init(jax.random.key(0), jax.ShapeDtypeStruct((1, 64), jnp.float32))
  w = np.asarray(params["logits_w"])
  assert abs(w.mean()) < 0.02 and abs(w.std() - 1.0) < 0.02  # W ~ N(0, 1)
  assert abs(np.asarray(params["codebook"]).mean() - 0.5) < 0.02  # U(0, 1)


@pytest.mark.parametrize("shared", [False, True])
def test_lookup_matches_quantized_and_enumerates_codebook(shared):
  q = gumbel(V, num_groups=G, shared_codebook=shared)
  params, state = q.init(jax.random.key(0), jax.ShapeDtypeStruct((2, 5, D), jnp.float32))
  x = jax.random.normal(jax.random.key(1), (2, 5, D))
  mask = jnp.ones((2, 5)).at[1, 3:].set(0)
  for train in (True, False):
    out, _ = jit_apply(q)(params, state, x, rng=jax.random.key(2), mask=mask, train=train)
    np.testing.assert_array_equal(q.lookup(params, state, out.codes), out.quantized)
  book = np.asarray(params["codebook"]).reshape(1 if shared else G, V, -1)
  every = jnp.tile(jnp.arange(V, dtype=jnp.int32)[:, None], (1, G))
  vectors = np.asarray(q.lookup(params, state, every)).reshape(V, G, -1)
  for g in range(G):
    np.testing.assert_array_equal(vectors[:, g], book[0 if shared else g])
  zeros = q.lookup(params, state, jnp.full((4, G), -1, jnp.int32))
  assert zeros.shape == (4, D) and (np.asarray(zeros) == 0).all()


def test_argument_errors():
  with pytest.raises(ValueError, match="num_groups"):
    gumbel(V, num_groups=4).init(jax.random.key(0), jax.ShapeDtypeStruct((2, 6), jnp.float32))
  for kwargs, name in [({"codebook_size": 1}, "codebook_size"), ({"num_groups": 0}, "num_groups"),
                       ({"logit_depth": 0}, "logit_depth"), ({"logit_factor": 0}, "logit_factor"),
                       ({"temperature": (0.5, 2.0, 0.99)}, "temperature"),
                       ({"temperature": (2.0, 0.5, 1.5)}, "temperature"),
                       ({"temperature": (2.0, 0.5)}, "temperature"),
                       ({"usage_window": 0}, "usage_window")]:
    with pytest.raises(ValueError, match=name):
      gumbel(**kwargs)
  q = gumbel(V, num_groups=G)
  params, state = q.init(jax.random.key(0), jax.ShapeDtypeStruct((2, D), jnp.float32))
  with pytest.raises(ValueError, match="last-axis"):
    q.apply(params, state, jnp.zeros((2, D + 1)))
