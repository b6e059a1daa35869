"""Golden and behaviour tests for the Bernoulli binary quantizer (REFERENCE.md §5).

Expected values are re-derived here in numpy (float64) from the reference formulas.
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vqlearn.quantizers.binary import binary, bits_to_index, index_to_bits

B, D = 5, 6  # bits, features


@functools.lru_cache(maxsize=None)
def jit_apply(q):
  """Jitted apply: one compilation per test instead of many eager op dispatches."""
  return jax.jit(q.apply, static_argnames="train")


def np_sigmoid(z):
  return 1.0 / (1.0 + np.exp(-z))


def fixed_params(seed, num_bits=B, d=D):
  rng = np.random.default_rng(seed)
  return {"proj_w": jnp.asarray(rng.normal(size=(d, num_bits)), jnp.float32),
          "proj_b": jnp.asarray(rng.normal(size=(num_bits,)) * 0.3, jnp.float32),
          "embed": jnp.asarray(rng.normal(size=(num_bits, d)), jnp.float32)}


def np_probs(params, x):
  x = np.asarray(x, np.float64).reshape(-1, np.asarray(params["proj_w"]).shape[0])
  return np_sigmoid(x @ np.asarray(params["proj_w"], np.float64)
                    + np.asarray(params["proj_b"], np.float64))


def fresh_state(q, num_bits=B):
  return q.init(jax.random.key(0), jax.ShapeDtypeStruct((1, D), jnp.float32))[1]


def x_and_mask(n=9, seed=0):
  x = np.random.default_rng(seed).normal(size=(n, D)).astype(np.float32)
  mask = np.ones(n, np.float32)
  mask[[2, 7]] = 0.0
  return jnp.asarray(x), jnp.asarray(mask)


def np_binary_entropy(f):
  with np.errstate(divide="ignore", invalid="ignore"):
    h = -(f * np.log2(f) + (1 - f) * np.log2(1 - f))
  return np.where((f == 0) | (f == 1), 0.0, h)


# ---------------------------------------------------------------------------------------------
# straight-through estimator
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("train", [False, True])
def test_ste_gradient_matches_sigmoid_derivative(train):
  q = binary(B)
  params = fixed_params(1)
  x, mask = x_and_mask()
  cot = jnp.asarray(np.random.default_rng(2).normal(size=(x.shape[0], D)), jnp.float32)

  def loss(p, x_):
    out, _ = q.apply(p, fresh_state(q), x_, rng=jax.random.key(3), mask=mask, train=train)
    return jnp.sum(out.quantized * cot), out

  (_, out), (g_params, g_x) = jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))(
      params, x)
  real = np.asarray(mask) > 0
  bits = np.asarray(out.codes, np.float64)
  assert set(np.unique(bits[real])) <= {0.0, 1.0} and (bits[~real] == -1).all()
  bits = np.where(real[:, None], bits, 0.0)
  embed = np.asarray(params["embed"], np.float64)
  xr = np.asarray(x, np.float64) * real[:, None]

  # Forward: the bit vector times the embedding, zero at padding.
  np.testing.assert_allclose(np.asarray(out.quantized), bits @ embed, rtol=1e-5, atol=1e-6)
  # Backward: d b_st / d logits = sigmoid'(z) = p (1 - p); padding rows get nothing.
  p = np_probs(params, x)
  dz = (np.asarray(cot, np.float64) @ embed.T) * p * (1 - p) * real[:, None]
  np.testing.assert_allclose(np.asarray(g_params["proj_w"]), xr.T @ dz, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(np.asarray(g_params["proj_b"]), dz.sum(0), rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(np.asarray(g_x), dz @ np.asarray(params["proj_w"], np.float64).T,
                             rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(np.asarray(g_params["embed"]),
                             bits.T @ np.asarray(cot, np.float64), rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# evaluation and sampling
# ---------------------------------------------------------------------------------------------

def test_eval_thresholds_deterministically_and_keeps_state():
  q = binary(B)
  params = fixed_params(4)
  x, mask = x_and_mask()
  state = fresh_state(q)
  outs = []
  for rng in (None, jax.random.key(0), jax.random.key(1)):
    out, new_state = q.apply(params, state, x, rng=rng, mask=mask)
    assert new_state is state
    outs.append(out)
  for out in outs[1:]:
    np.testing.assert_array_equal(out.codes, outs[0].codes)
    np.testing.assert_array_equal(out.quantized, outs[0].quantized)
  real = np.asarray(mask) > 0
  p = np_probs(params, x)
  np.testing.assert_array_equal(np.asarray(outs[0].codes)[real], (p > 0.5)[real].astype(int))
  probs = np.asarray(outs[0].probs)
  assert probs.shape == (x.shape[0], B, 2)
  np.testing.assert_allclose(probs[real], np.stack([1 - p, p], -1)[real], rtol=1e-5, atol=1e-7)
  assert (probs[~real] == 0).all()

  # The threshold is p > 0.5 exactly (p = 0.5 gives 0), right next to it on both sides.
  near = np.array([0.45, 0.55, 0.5, 0.501, 0.499])
  params = {"proj_w": jnp.zeros((D, B)), "proj_b": jnp.asarray(np.log(near / (1 - near))),
            "embed": params["embed"]}
  out, _ = q.apply(params, state, jnp.zeros((1, D)))
  np.testing.assert_array_equal(out.codes, [[0, 1, 0, 1, 0]])


@pytest.mark.parametrize("train", [True, False])
def test_sampling_frequency_approaches_p(train):
  n = 8000
  target = np.array([0.02, 0.1, 0.5, 0.75, 0.97])
  q = binary(B, sample_at_eval=True)
  params = {"proj_w": jnp.zeros((D, B)),
            "proj_b": jnp.asarray(np.log(target / (1 - target)), jnp.float32),
            "embed": jnp.zeros((B, D))}
  state = fresh_state(q)
  out, new_state = jit_apply(q)(params, state, jnp.zeros((n, D)), rng=jax.random.key(5),
                                train=train)
  assert int(new_state["step"]) == (1 if train else 0)
  freq = np.asarray(out.codes).mean(0)
  assert np.all(np.abs(freq - target) < 4.5 * np.sqrt(target * (1 - target) / n)), freq
  # Each row draws its own noise: a p = 0.5 bit is not constant across rows.
  assert 0 < np.asarray(out.codes)[:, 2].sum() < n
  # Evaluation with sampling is a function of rng: the same key gives the same bits.
  again, _ = jit_apply(q)(params, state, jnp.zeros((n, D)), rng=jax.random.key(5), train=train)
  np.testing.assert_array_equal(out.codes, again.codes)


def test_rng_errors():
  q = binary(B)
  params = fixed_params(0)
  x, _ = x_and_mask()
  with pytest.raises(ValueError, match="rng"):
    q.apply(params, fresh_state(q), x, train=True)
  q_sample = binary(B, sample_at_eval=True)
  with pytest.raises(ValueError, match="rng.*sample_at_eval"):
    q_sample.apply(params, fresh_state(q_sample), x)
  state = fresh_state(q_sample)
  _, new_state = q_sample.apply(params, state, x, rng=jax.random.key(0))
  assert new_state is state


# ---------------------------------------------------------------------------------------------
# bits <-> index
# ---------------------------------------------------------------------------------------------

def test_bits_index_known_values_and_round_trip():
  np.testing.assert_array_equal(bits_to_index(jnp.array([[0, 0, 0], [1, 0, 0], [0, 1, 1],
                                                         [1, 1, 1], [-1, -1, -1]])),
                                [0, 1, 6, 7, -1])
  np.testing.assert_array_equal(index_to_bits(jnp.array([0, 1, 6, 13, -1]), 4),
                                [[0, 0, 0, 0], [1, 0, 0, 0], [0, 1, 1, 0], [1, 0, 1, 1],
                                 [-1, -1, -1, -1]])
  every = jnp.arange(2 ** 7)
  bits = index_to_bits(every, 7)
  assert bits.dtype == jnp.int32 and bits.shape == (128, 7)
  np.testing.assert_array_equal(bits, (np.arange(128)[:, None] >> np.arange(7)) & 1)
  np.testing.assert_array_equal(bits_to_index(bits), every)
  top = 2 ** 31 - 1  # all 31 bits set
  np.testing.assert_array_equal(index_to_bits(jnp.array([top, 2 ** 30]), 31)[:, [0, 30]],
                                [[1, 1], [0, 1]])
  assert int(bits_to_index(jnp.ones((31,), jnp.int32))) == top
  # Leading axes are kept, with no implicit rank promotion.
  assert index_to_bits(jnp.zeros((2, 3), jnp.int32), 4).shape == (2, 3, 4)
  assert bits_to_index(jnp.zeros((2, 3, 4), jnp.int32)).shape == (2, 3)


def test_bits_index_limits():
  with pytest.raises(ValueError, match="num_bits"):
    index_to_bits(jnp.array([1]), 32)
  with pytest.raises(ValueError, match="num_bits"):
    bits_to_index(jnp.zeros((2, 32), jnp.int32))
  with pytest.raises(ValueError, match="num_bits"):
    index_to_bits(jnp.array([1]), 0)


# ---------------------------------------------------------------------------------------------
# losses and metrics
# ---------------------------------------------------------------------------------------------

def test_code_loss_and_metrics_match_numpy():
  q = binary(B)
  params = fixed_params(6)
  x, mask = x_and_mask(11, seed=3)
  out, _ = jit_apply(q)(params, fresh_state(q), x, mask=mask)
  real = np.asarray(mask) > 0
  p = np_probs(params, x)[real]
  np.testing.assert_allclose(float(out.losses["code"]), np.mean(p * (1 - p)), rtol=1e-5)

  bits = (p > 0.5).astype(np.float64)
  f = bits.mean(0)
  np.testing.assert_allclose(float(out.metrics["bit_entropy"]), np_binary_entropy(f).mean(),
                             rtol=1e-5, atol=1e-7)
  dist = np.stack([1 - f, f], -1)  # (bits, 2)
  ppl = np.sum(np.exp(-np.sum(dist * np.log(dist + 1e-7), -1)))
  np.testing.assert_allclose(float(out.metrics["perplexity"]), ppl, rtol=1e-5)
  np.testing.assert_allclose(float(out.metrics["usage"]), np.mean(dist > 0), rtol=1e-6)
  q_np = bits @ np.asarray(params["embed"], np.float64)
  err = np.mean(np.sum((np.asarray(x, np.float64)[real] - q_np) ** 2, -1))
  np.testing.assert_allclose(float(out.metrics["quantization_error"]), err, rtol=1e-5)
  for value in list(out.losses.values()) + list(out.metrics.values()):
    assert value.shape == () and value.dtype == jnp.float32


def test_bit_entropy_extremes():
  q = binary(2)
  # Bit 0 always on, bit 1 half on: entropies 0 and 1 bit.
  params = {"proj_w": jnp.array([[0.0, 1.0]]), "proj_b": jnp.array([5.0, 0.0]),
            "embed": jnp.zeros((2, 1))}
  _, state = q.init(jax.random.key(0), jax.ShapeDtypeStruct((1, 1), jnp.float32))
  x = jnp.array([[1.0], [-1.0], [2.0], [-2.0]])
  out, _ = q.apply(params, state, x)
  np.testing.assert_array_equal(out.codes, [[1, 1], [1, 0], [1, 1], [1, 0]])
  np.testing.assert_allclose(float(out.metrics["bit_entropy"]), 0.5, rtol=1e-6)
  np.testing.assert_allclose(float(out.metrics["perplexity"]), 1.0 + 2.0, rtol=1e-5)


# ---------------------------------------------------------------------------------------------
# masks, parameters, lookup, sharding
# ---------------------------------------------------------------------------------------------

def test_masking_rows_equals_dropping_them():
  q = binary(B)
  params = fixed_params(7)
  x, mask = x_and_mask()
  real = np.asarray(mask) > 0
  state = fresh_state(q)
  masked, _ = jit_apply(q)(params, state, x, mask=mask)
  alone, _ = jit_apply(q)(params, state, x[real])
  for k in masked.losses:
    np.testing.assert_allclose(masked.losses[k], alone.losses[k], rtol=1e-6)
  for k in masked.metrics:
    np.testing.assert_allclose(masked.metrics[k], alone.metrics[k], rtol=1e-6)
  # Padding appended to a batch (inf/nan included) is covered for every family by
  # tests/quantizers/test_contract.py::test_padding_changes_nothing_when_masked.


def test_init_shapes_and_statistics():
  q = binary(64)
  assert q.spec == (64, 2) and q.spec.bits == 64
  x_spec = jax.ShapeDtypeStruct((2, 3, 32), jnp.bfloat16)
  params, state = q.init(jax.random.key(0), x_spec)
  shapes = jax.eval_shape(q.init, jax.random.key(0), x_spec)
  assert jax.tree.map(lambda a: a.shape, shapes) == jax.tree.map(lambda a: a.shape,
                                                                   (params, state))
  assert params["proj_w"].shape == (32, 64) and params["proj_b"].shape == (64,)
  assert params["embed"].shape == (64, 32)
  assert np.abs(np.asarray(params["proj_w"])).max() <= 1 / math.sqrt(32)
  assert abs(np.asarray(params["embed"]).std() - 1.0) < 0.05  # nn.Embedding ~ N(0, 1)
  assert state["last_used"].shape == (64, 2) and int(state["step"]) == 0
  x = jax.random.normal(jax.random.key(1), (2, 3, 32), jnp.bfloat16)
  out, _ = jit_apply(q)(params, state, x)
  assert out.quantized.shape == x.shape and out.quantized.dtype == jnp.bfloat16
  assert out.codes.shape == (2, 3, 64) and out.codes.dtype == jnp.int32
  assert set(out.losses) == {"code"}
  assert {"perplexity", "usage", "dead_codes", "quantization_error",
          "bit_entropy"} <= set(out.metrics)


def test_lookup_matches_quantized():
  q = binary(B)
  params, state = q.init(jax.random.key(0), jax.ShapeDtypeStruct((2, 4, D), jnp.float32))
  x = jax.random.normal(jax.random.key(1), (2, 4, D))
  mask = jnp.ones((2, 4)).at[1, 2:].set(0)
  for train in (True, False):
    out, _ = jit_apply(q)(params, state, x, rng=jax.random.key(2), mask=mask, train=train)
    np.testing.assert_array_equal(q.lookup(params, state, out.codes), out.quantized)
  unit = q.lookup(params, state, jnp.eye(B, dtype=jnp.int32))
  np.testing.assert_array_equal(unit, params["embed"])
  both = q.lookup(params, state, jnp.array([[1, 1, 0, 0, 0]]))
  np.testing.assert_allclose(both[0], params["embed"][0] + params["embed"][1], rtol=1e-6)
  zeros = q.lookup(params, state, jnp.full((3, B), -1, jnp.int32))
  assert zeros.shape == (3, D) and (np.asarray(zeros) == 0).all()


def test_argument_errors():
  with pytest.raises(ValueError, match="num_bits"):
    binary(0)
  with pytest.raises(ValueError, match="usage_window"):
    binary(B, usage_window=0)
  q = binary(B)
  params, state = q.init(jax.random.key(0), jax.ShapeDtypeStruct((2, D), jnp.float32))
  with pytest.raises(ValueError, match="mask"):
    q.apply(params, state, jnp.zeros((2, D)), mask=jnp.ones(3))
