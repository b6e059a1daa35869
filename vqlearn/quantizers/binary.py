"""Bernoulli binary latents (Binary Latent Diffusion, Wang et al. CVPR 2023)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from vqlearn.quantizers import base, metrics
from vqlearn.quantizers.base import F32, CodeSpec, Quantizer, QuantizerOutput
from vqlearn.types import Array

sg = jax.lax.stop_gradient
HIGHEST = jax.lax.Precision.HIGHEST
MAX_INDEX_BITS = 31  # bit vectors <-> int32 indices.


def _check_index_bits(num_bits) -> int:
  base.check_positive_int("num_bits", num_bits)
  if num_bits > MAX_INDEX_BITS:
    raise ValueError(f"num_bits must be <= {MAX_INDEX_BITS} to convert bits to an int32 index, "
                     f"got {num_bits}")
  return num_bits


def _bit_weights(num_bits: int, ndim: int) -> Array:
  """2**i for bit i, shaped (1, ..., 1, num_bits) to rank ``ndim`` (no implicit promotion)."""
  return (2 ** jnp.arange(num_bits, dtype=jnp.int32)).reshape((1,) * (ndim - 1) + (num_bits,))


def bits_to_index(bits: Array) -> Array:
  """(..., n) bits, n <= 31, to int32 indices sum_i bits_i 2**i; rows with a -1 bit give -1."""
  bits = jnp.asarray(bits)
  _check_index_bits(bits.shape[-1])
  bits = bits.astype(jnp.int32)
  index = jnp.sum(jnp.clip(bits, 0, 1) * _bit_weights(bits.shape[-1], bits.ndim), axis=-1)
  return jnp.where(jnp.any(bits < 0, axis=-1), -1, index).astype(jnp.int32)


def index_to_bits(index: Array, num_bits: int) -> Array:
  """int indices (...) to int32 bits (..., num_bits), bit i of weight 2**i; -1 gives all -1."""
  _check_index_bits(num_bits)
  index = jnp.asarray(index).astype(jnp.int32)[..., None]
  bits = (index // _bit_weights(num_bits, index.ndim)) % 2
  return jnp.where(index < 0, -1, bits).astype(jnp.int32)


def bit_entropy(counts: Array) -> Array:
  """Mean over bits of the binary entropy (in bits) of the frequency of ones; counts (n, 2)."""
  ones = counts[:, 1] / jnp.maximum(jnp.sum(counts, axis=-1), 1e-12)
  nats = -(jax.scipy.special.xlogy(ones, ones) + jax.scipy.special.xlogy(1 - ones, 1 - ones))
  return jnp.mean(nats / math.log(2.0)).astype(F32)


def binary(num_bits: int = 16, *, sample_at_eval: bool = False, usage_window: int = 100,
           axis_name: str | None = None) -> Quantizer:
  """Bernoulli bit quantizer with a straight-through estimator (REFERENCE.md §5).

  p = sigmoid(x W + b) in float32; training samples b ~ Bernoulli(p), evaluation thresholds
  p > 0.5 (the reference samples at evaluation too; ask for that with ``sample_at_eval``).
  b_st = sg(b) + p - sg(p) and quantized = b_st @ embed, a linear map of the bit vector.
  Codes are the bits themselves (``bits_to_index``/``index_to_bits`` convert, <= 31 bits).

  Losses (unweighted): ``code`` = mean over real rows and bits of p (1 - p), the reference's
  optional code loss (weight 0 by default there).
  Metrics: the shared codebook metrics over the (num_bits, 2) bit counts (``perplexity``
  summed over bits, at most 2 * num_bits) and ``bit_entropy``, the mean over bits of the binary
  entropy in bits of the batch frequency of ones (1 = every bit balanced).

  Args:
    num_bits: bits per vector (64 or 128 in the released models).
    sample_at_eval: also sample when ``train=False``; ``rng`` is then required at evaluation.
    usage_window: training steps over which ``window_usage``/``dead_codes`` are measured.
    axis_name: mapped axis to ``psum`` statistics over inside ``shard_map``/``pmap``.

  Params ``proj_w`` (d, num_bits), ``proj_b`` (num_bits,) with PyTorch's default Linear init
  and ``embed`` (num_bits, d) ~ N(0, 1) (the reference's ``nn.Embedding``). State: ``step``,
  ``last_used`` (num_bits, 2).
  """
  n_bits = base.check_positive_int("num_bits", num_bits)
  window = base.check_positive_int("usage_window", usage_window)
  spec = CodeSpec(n_bits, 2)

  def init(rng, x_spec):
    d = base.feature_dim(x_spec)
    w_key, b_key, e_key = jax.random.split(rng, 3)
    bound = 1.0 / math.sqrt(d)
    params = {"proj_w": jax.random.uniform(w_key, (d, n_bits), F32, -bound, bound),
              "proj_b": jax.random.uniform(b_key, (n_bits,), F32, -bound, bound),
              "embed": jax.random.normal(e_key, (n_bits, d), F32)}
    return params, metrics.init_tracking(n_bits, 2)

  def apply(params, state, x, *, rng=None, mask=None, train=False):
    d = params["embed"].shape[-1]
    rows, m = base.check_input(x, d, mask)
    sample = train or sample_at_eval
    if sample:
      rng = base.require_rng(rng, "binary samples Bernoulli bits in training" if train else
                             "binary(sample_at_eval=True) samples bits at evaluation")
    n = rows.shape[0]
    # HIGHEST: the logits decide the bits, which must not depend on the backend's matmul.
    logits = (jnp.matmul(rows, params["proj_w"].astype(F32), precision=HIGHEST)
              + params["proj_b"].astype(F32)[None, :])
    p = jax.nn.sigmoid(logits)
    if sample:
      u = base.row_noise(rng, base.global_row_ids(n, axis_name),
                         lambda key: jax.random.uniform(key, (n_bits,), F32))
      bits = (u < p).astype(F32)  # P(u < p) = p for u ~ U[0, 1).
    else:
      bits = (p > 0.5).astype(F32)
    # Parenthesised so the forward value is exactly the bits (lookup equals quantized).
    b_st = bits + (p - sg(p))
    q = jnp.matmul(b_st, params["embed"].astype(F32), precision=HIGHEST)
    codes = bits.astype(jnp.int32)

    losses = {"code": base.masked_mean(p * (1.0 - p), m, axis_name)}
    counts, tracking, out_metrics = metrics.observe(state, codes, 2, window,
                                                    rows, q, m, axis_name)
    out_metrics["bit_entropy"] = bit_entropy(counts)
    probs = jnp.stack([1.0 - p, p], axis=-1) * m[:, None, None]
    out = QuantizerOutput(quantized=base.finish_quantized(x, q, m),
                          codes=base.finish_codes(x, codes, m),
                          probs=probs.reshape(x.shape[:-1] + (n_bits, 2)),
                          losses=losses, metrics=out_metrics)
    return out, (dict(state) | tracking if train else state)

  def lookup(params, state, codes):
    del state
    flat = codes.reshape(-1, n_bits)
    real = jnp.all(flat >= 0, axis=-1, keepdims=True)
    bits = jnp.where(real, jnp.clip(flat, 0, 1), 0).astype(F32)
    vectors = jnp.matmul(bits, params["embed"].astype(F32), precision=HIGHEST)
    return vectors.reshape(codes.shape[:-1] + (-1,))

  return Quantizer(init, apply, lookup, spec)
