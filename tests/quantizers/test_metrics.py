"""Codebook metrics against hand-derived values, and the combinators' composition rules."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.metrics import normalized_mutual_info_score

from vqlearn import quantizers
from vqlearn.quantizers import metrics

KEY = jax.random.PRNGKey(0)


def test_masked_counts_and_perplexity():
  codes = jnp.array([[0, 1], [0, 1], [2, 1], [3, 0]])  # (N=4, S=2), K=4
  mask = jnp.array([1.0, 1.0, 1.0, 0.0])
  counts = metrics.code_counts(codes, mask, 4, None)
  np.testing.assert_array_equal(counts, [[2, 0, 1, 0], [0, 3, 0, 0]])
  p0 = np.array([2, 0, 1, 0]) / 3
  expected = np.exp(-np.sum(p0 * np.log(p0 + 1e-7))) + np.exp(-np.log(1 + 1e-7))
  np.testing.assert_allclose(metrics.perplexity(counts), expected, rtol=1e-6)
  np.testing.assert_allclose(metrics.usage(counts), 3 / 8)
  np.testing.assert_allclose(metrics.max_code_ratio(counts), (2 / 3 + 1) / 2, rtol=1e-6)


def test_rolling_window_usage_and_dead_codes():
  window = 3
  state = metrics.init_tracking(1, 4)
  used_per_step = [[0], [1], [1], [2], [2]]
  alive_expected = [{0}, {0, 1}, {0, 1}, {1, 2}, {1, 2}]
  rows = jnp.zeros((1, 2))
  for step, (used, expected) in enumerate(zip(used_per_step, alive_expected)):
    codes = jnp.array(used, jnp.int32)[:, None]
    _, state, out = metrics.observe(state, codes, 4, window, rows, rows, jnp.ones(1), None)
    live = metrics.alive(state["last_used"], jnp.int32(step), window)[0]
    assert set(np.flatnonzero(live)) == expected, step
    assert float(out["window_usage"]) == len(expected) / 4, step
    assert float(out["dead_codes"]) == 4 - len(expected), step
  assert int(state["step"]) == len(used_per_step)


def test_nmi_and_purity_against_hand_values_and_sklearn():
  codes = np.array([0, 0, 1, 1, 2, 2, 2, -1])
  labels = np.array([0, 0, 1, 1, 1, 0, 1, 0])
  # Purity: clusters {0:[0,0]}, {1:[1,1]}, {2:[1,0,1]} -> (2 + 2 + 2) / 7; -1 is padding.
  assert metrics.purity(codes, labels) == pytest.approx(6 / 7)
  expected = normalized_mutual_info_score(labels[:-1], codes[:-1])
  assert metrics.nmi(codes, labels) == pytest.approx(expected)
  mask = np.array([1, 1, 1, 1, 0, 0, 0, 0])
  assert metrics.nmi(codes, labels, mask) == pytest.approx(1.0)
  # Several symbols per row count as one joint cluster.
  joint = np.stack([codes[:-1] % 2, codes[:-1] // 2], axis=1)
  assert metrics.nmi(joint, labels[:-1]) == pytest.approx(expected)


def test_bits_per_vector_from_spec():
  assert metrics.bits_per_vector(quantizers.get("gumbel").spec) == pytest.approx(2 * np.log2(320))
  assert metrics.bits_per_vector(quantizers.get("binary", num_bits=12).spec) == 12
  assert metrics.bits_per_vector(
      quantizers.get("residual", levels=4, codebook_size=512).spec) == 36


def test_residual_quantizes_what_earlier_levels_left():
  x = jax.random.normal(KEY, (32, 4))
  inner = quantizers.vq(8, init_scale=1.0)
  q = quantizers.residual(inner, 3)
  params, state = q.init(KEY, x)
  out, _ = q.apply(params, state, x)
  remainder, total = x, 0.0
  for level in range(3):
    part, _ = inner.apply(params[level], state[level], remainder)
    np.testing.assert_array_equal(out.codes[:, level], part.codes[:, 0])
    remainder, total = remainder - part.quantized, total + part.quantized
  np.testing.assert_allclose(out.quantized, total, atol=1e-6)
  np.testing.assert_allclose(out.metrics["quantization_error"],
                             np.mean(np.sum((np.asarray(x) - total) ** 2, -1)), rtol=1e-5)
  # Losses add over levels; perplexities add (fairseq's convention for several symbols).
  parts = [out.metrics[f"level{i}/perplexity"] for i in range(3)]
  np.testing.assert_allclose(out.metrics["perplexity"], sum(parts), rtol=1e-6)
  # No stop-gradient on the residual: the straight-through output's gradient to x is I.
  g = jax.random.normal(jax.random.PRNGKey(1), x.shape)
  grad = jax.grad(lambda x: jnp.sum(q.apply(params, state, x)[0].quantized * g))(x)
  np.testing.assert_allclose(grad, g, atol=1e-5)


def test_residual_error_shrinks_with_levels():
  x = jax.random.normal(KEY, (256, 4))
  errors = []
  for levels in (1, 2, 4):
    q = quantizers.get("residual", base="ema_vq", levels=levels, codebook_size=16,
                       kmeans_init=True)
    params, state = q.init(KEY, x)
    step = jax.jit(functools.partial(q.apply, train=True))
    for i in range(5):
      out, state = step(params, state, x, rng=jax.random.fold_in(KEY, i))
    errors.append(float(out.metrics["quantization_error"]))
  assert errors[0] > errors[1] > errors[2]


def test_product_quantizes_slices_independently():
  x = jax.random.normal(KEY, (16, 6))
  inner = quantizers.vq(4, init_scale=1.0)
  q = quantizers.product(inner, 3)
  params, state = q.init(KEY, x)
  assert params[0]["codebook"].shape == (4, 2)
  out, _ = q.apply(params, state, x)
  for g in range(3):
    part, _ = inner.apply(params[g], state[g], x[:, 2 * g:2 * g + 2])
    np.testing.assert_array_equal(out.codes[:, g], part.codes[:, 0])
    np.testing.assert_allclose(out.quantized[:, 2 * g:2 * g + 2], part.quantized)
    np.testing.assert_allclose(out.metrics[f"group{g}/usage"], part.metrics["usage"])
  # Averaging the per-slice MSE gives the MSE over the whole vector.
  np.testing.assert_allclose(out.losses["commitment"],
                             np.mean((np.asarray(x) - np.asarray(out.quantized)) ** 2),
                             rtol=1e-5)
  assert q.spec == quantizers.CodeSpec(3, 4)


def test_combinators_nest():
  x = jax.random.normal(KEY, (4, 6, 8))
  q = quantizers.product(quantizers.residual(quantizers.vq(8, init_scale=1.0), 2), 2)
  assert q.spec == quantizers.CodeSpec(4, 8)
  params, state = q.init(KEY, jax.ShapeDtypeStruct(x.shape, x.dtype))
  out, new_state = jax.jit(functools.partial(q.apply, train=True))(params, state, x)
  assert out.codes.shape == (4, 6, 4)
  assert jax.tree.structure(new_state) == jax.tree.structure(state)
  np.testing.assert_allclose(q.lookup(params, state, out.codes), out.quantized, atol=1e-5)
  assert set(out.metrics) >= {"group0/perplexity", "group1/usage", "quantization_error"}
