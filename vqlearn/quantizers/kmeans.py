"""k-means quantizers: vq-wav2vec's ``KmeansVectorQuantizer`` and DinoSR's online clustering.

- ``kmeans``: a codebook trained by gradient with a k-means style loss on a grouped 1x1
  projection + GroupNorm of the input (Baevski et al. 2020, fairseq ``KmeansVectorQuantizer``).
- ``online_kmeans``: centroids kept as decayed float32 sums and counts, updated from each
  training batch, no gradient-trained parameters (Liu et al. 2023, DinoSR).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from vqlearn.quantizers import base, codebook as cb, metrics
from vqlearn.quantizers.base import F32, CodeSpec, Quantizer, QuantizerOutput

sg = jax.lax.stop_gradient

GROUP_NORM_EPS = 1e-5  # torch.nn.GroupNorm's default, used by fairseq's Fp32GroupNorm.
INSTANCE_NORM_EPS = 1e-5  # torch.nn.functional.instance_norm's default (DinoSR codebook init).


def _check_nonnegative(name: str, value) -> float:
  if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
    raise ValueError(f"{name} must be a number >= 0, got {value!r}")
  return float(value)


# ----------------------------------------------------------------------------------------------
# vq-wav2vec k-means quantizer.
# ----------------------------------------------------------------------------------------------

def _examples(x: jax.Array) -> tuple[int, int]:
  """(examples, positions per example) for GroupNorm statistics.

  x is (batch, *positions, d): each leading index is one example whose positions share the
  statistics, as fairseq's GroupNorm over (C, T) of a (B, C, T) input. For x of rank <= 2 there
  are no position axes, so every row is its own example.
  """
  if x.ndim <= 2:
    return math.prod(x.shape[:-1]), 1
  return x.shape[0], math.prod(x.shape[1:-1])


def _group_norm(z: jax.Array, mask: jax.Array, scale: jax.Array, bias: jax.Array) -> jax.Array:
  """GroupNorm of z (B, P, G, c) with statistics per (example, group) over real positions.

  Masked positions do not enter the mean/variance (fairseq includes padding; vqlearn excludes
  it so padding never changes real outputs). Variance is the biased one, as torch's GroupNorm.
  """
  b, p, g, c = z.shape
  w = mask.reshape(b, p, 1, 1)
  count = jnp.maximum(jnp.sum(w, axis=1, keepdims=True) * c, 1.0)  # (B, 1, 1, 1)
  mean = jnp.sum(w * z, axis=(1, 3), keepdims=True) / count
  var = jnp.sum(w * jnp.square(z - mean), axis=(1, 3), keepdims=True) / count
  normed = (z - mean) * jax.lax.rsqrt(var + GROUP_NORM_EPS)
  return normed * scale.reshape(1, 1, g, c) + bias.reshape(1, 1, g, c)


def _project(params: dict, x: jax.Array, mask: jax.Array, groups: int) -> jax.Array:
  """z = GroupNorm(Conv1x1_grouped(x)) as rows (N, G, c), float32 (fairseq ``projection``)."""
  b, p = _examples(x)
  d = x.shape[-1]
  xg = x.astype(F32).reshape(b, p, groups, d // groups)
  # A grouped 1x1 convolution: group g's output channels see only group g's input channels.
  z = jnp.einsum("bpgi,gio->bpgo", xg, params["projection"].astype(F32),
                 precision=jax.lax.Precision.HIGHEST)
  z = _group_norm(z, mask.reshape(b, p), params["norm_scale"].astype(F32),
                  params["norm_bias"].astype(F32))
  return z.reshape(b * p, groups, d // groups)


def kmeans(codebook_size: int = 320, *, num_groups: int = 2, shared_codebook: bool = False,
           gamma: float = 0.25, projection: bool = True, usage_window: int = 100,
           axis_name: str | None = None) -> Quantizer:
  """vq-wav2vec k-means quantizer (fairseq ``KmeansVectorQuantizer``, REFERENCE.md §3).

  z = GroupNorm(grouped 1x1 projection of x) is split into ``num_groups`` groups of d/G
  features; each group takes its nearest codeword; the output is the concatenation zq with the
  gradient copied to z: ``sg(zq) + (z - sg(z))``. The output, the codes and every metric live in
  the projected space z, not in x's space (``quantization_error`` is ||z - zq||^2).

  GroupNorm statistics are per example: x is (batch, *positions, d) and each group is
  normalised over its d/G channels and all real positions of one example; for x of rank <= 2
  every row is its own example. Masked positions are excluded from the statistics. Under
  ``shard_map``/``pmap`` the leading (batch) axis must be the sharded one, so that no example
  is split across devices.

  Losses (unweighted as a whole; gamma is part of vq-wav2vec's definition of the term):
    ``kmeans`` = mean ||zq - sg(z)||^2 + gamma * mean ||z - sg(zq)||^2 over real rows and
    features. The first term trains the codebook, the second the projection and encoder.

  Args:
    codebook_size: entries V per codebook (>= 2); vq-wav2vec uses 320.
    num_groups: groups G; d must be divisible by G (checked at ``init``).
    shared_codebook: one codebook for all groups (fairseq ``combine_groups``).
    gamma: weight of the commitment part of the ``kmeans`` loss (0.25 in vq-wav2vec).
    projection: apply the grouped projection + GroupNorm; if False, z = x.
    usage_window: training steps over which ``window_usage``/``dead_codes`` are measured.
    axis_name: mapped axis to ``psum`` statistics over inside ``shard_map``/``pmap``.

  Params: ``codebook`` (G', V, d/G) init 0.01 N(0, 1), G' = 1 when shared; with projection
  also ``projection`` (G, d/G, d/G) (input channel, output channel per group; torch's Conv1d
  default init U(-1/sqrt(d/G), 1/sqrt(d/G)), no bias), ``norm_scale`` (d,) = 1 and
  ``norm_bias`` (d,) = 0. State: ``step``, ``last_used`` (G, V).
  """
  v = base.check_positive_int("codebook_size", codebook_size, 2)
  g = base.check_positive_int("num_groups", num_groups)
  gamma = _check_nonnegative("gamma", gamma)
  window = base.check_positive_int("usage_window", usage_window)
  spec = CodeSpec(g, v)

  def init(rng, x_spec):
    d = base.feature_dim(x_spec)
    if d % g:
      raise ValueError(f"num_groups={g} must divide the feature size d={d}")
    c = d // g
    codebook_key, projection_key = jax.random.split(rng)
    params = {"codebook": 0.01 * jax.random.normal(
        codebook_key, (1 if shared_codebook else g, v, c), F32)}
    if projection:
      bound = 1.0 / math.sqrt(c)  # kaiming_uniform(a=sqrt(5)) with fan_in = d/G.
      params |= {"projection": jax.random.uniform(projection_key, (g, c, c), F32, -bound, bound),
                 "norm_scale": jnp.ones((d,), F32), "norm_bias": jnp.zeros((d,), F32)}
    return params, metrics.init_tracking(g, v)

  def codebooks(params):
    e = params["codebook"].astype(F32)
    return jnp.broadcast_to(e, (g,) + e.shape[1:])

  def apply(params, state, x, *, rng=None, mask=None, train=False):
    del rng  # Deterministic.
    e = codebooks(params)
    d = g * e.shape[-1]
    rows, m = base.check_input(x, d, mask)
    if projection:
      z = _project(params, rows.reshape(x.shape), m, g)
    else:
      z = rows.reshape(-1, g, d // g)

    codes, _ = cb.nearest(sg(z), sg(e))
    zq = cb.gather_codewords(e, codes).reshape(-1, d)
    z = z.reshape(-1, d)
    losses = {"kmeans": base.mse(zq, sg(z), m, axis_name)
                        + gamma * base.mse(z, sg(zq), m, axis_name)}
    # fairseq's _pass_grad: value zq, gradient d out / d z = identity.
    quantized = sg(zq) + (z - sg(z))

    counts, tracking, out_metrics = metrics.observe(state, codes, v, window,
                                                    z, zq, m, axis_name)
    out = QuantizerOutput(quantized=base.finish_quantized(x, quantized, m),
                          codes=base.finish_codes(x, codes, m), probs=None,
                          losses=losses, metrics=out_metrics)
    return out, (dict(state) | tracking if train else state)

  def lookup(params, state, codes):
    del state
    e = codebooks(params)
    vectors = cb.gather_codewords(e, codes.reshape(-1, g))
    return vectors.reshape(codes.shape[:-1] + (g * e.shape[-1],))

  return Quantizer(init, apply, lookup, spec)


# ----------------------------------------------------------------------------------------------
# DinoSR online clustering.
# ----------------------------------------------------------------------------------------------

def _standardized_normal(rng, num_codes: int, d: int) -> jax.Array:
  """N(0, 1) codewords with each feature standardised across the K entries.

  DinoSR draws randn(d, K) and instance-normalises it (mean 0, biased variance 1 per feature
  over the K entries) before transposing to (K, d); its targets are instance-normalised too.
  """
  e = jax.random.normal(rng, (num_codes, d), F32)
  mean = jnp.mean(e, axis=0, keepdims=True)
  var = jnp.mean(jnp.square(e - mean), axis=0, keepdims=True)
  return (e - mean) * jax.lax.rsqrt(var + INSTANCE_NORM_EPS)


def online_kmeans(codebook_size: int = 256, *, decay: float = 0.9, usage_window: int = 100,
                  axis_name: str | None = None) -> Quantizer:
  """DinoSR online clustering (REFERENCE.md §3): centroids from decayed sums and counts.

  Each row goes to the nearest centroid M_k / c_k of the state it is given (assignment before
  the update, as DinoSR). In training, with global masked batch statistics n_k (rows assigned)
  and S_k (their sum), alpha_k = decay if n_k > 0 else 1, so absent codes stay untouched
  (avoiding the praxis-ngrammer pitfall of dragging dead centroids to the origin):
  c <- alpha c + (1 - alpha) n and M <- alpha M + (1 - alpha) S, all in float32.

  The output is the centroid with a straight-through gradient to x, so the quantizer can sit
  inside an autoencoder.

  Losses (unweighted): ``commitment`` = mean ||sg(centroid) - x||^2 (the centroids themselves
  are learned by the online update, not by a loss).

  Args:
    codebook_size: clusters K (>= 2); DinoSR uses 256.
    decay: EMA decay in [0, 1] of present clusters (0.9 in DinoSR); 1 freezes the centroids.
    usage_window: training steps over which ``window_usage``/``dead_codes`` are measured.
    axis_name: mapped axis to ``psum`` statistics over inside ``shard_map``/``pmap``.

  Params: ``{}``. State: ``sums`` M (K, d) float32, initialised as DinoSR does (N(0, 1) draws
  standardised per feature across the K entries), ``counts`` c (K,) float32 initialised to 1,
  and the tracking fields ``step``, ``last_used`` (1, K).
  """
  k = base.check_positive_int("codebook_size", codebook_size, 2)
  decay = base.check_unit_interval("decay", decay, closed=True)
  window = base.check_positive_int("usage_window", usage_window)
  spec = CodeSpec(1, k)

  def init(rng, x_spec):
    d = base.feature_dim(x_spec)
    state = {"sums": _standardized_normal(rng, k, d), "counts": jnp.ones((k,), F32)}
    return {}, state | metrics.init_tracking(1, k)

  def centroids(state):
    return state["sums"] / state["counts"][:, None]

  def apply(params, state, x, *, rng=None, mask=None, train=False):
    del params, rng  # No trained parameters; deterministic.
    d = state["sums"].shape[-1]
    rows, m = base.check_input(x, d, mask)
    e = centroids(state)

    codes, _ = cb.nearest(sg(rows)[:, None], e[None])
    q = e[codes[:, 0]]
    losses = {"commitment": base.mse(sg(q), rows, m, axis_name)}
    quantized = base.straight_through(rows, q)

    counts, tracking, out_metrics = metrics.observe(state, codes, k, window,
                                                    rows, q, m, axis_name)
    out = QuantizerOutput(quantized=base.finish_quantized(x, quantized, m),
                          codes=base.finish_codes(x, codes, m), probs=None,
                          losses=losses, metrics=out_metrics)
    if not train:
      return out, state

    # DinoSR: n_k and S_k are summed over all devices before the update.
    sums, _ = cb.cluster_sums(sg(rows), codes[:, 0], m, k)
    batch_sums = base.psum(sums, axis_name)
    batch_counts = counts[0]
    alpha = jnp.where(batch_counts > 0, decay, 1.0).astype(F32)
    new_state = dict(state) | tracking
    new_state["counts"] = alpha * state["counts"] + (1.0 - alpha) * batch_counts
    new_state["sums"] = alpha[:, None] * state["sums"] + (1.0 - alpha)[:, None] * batch_sums
    return out, new_state

  def lookup(params, state, codes):
    del params
    e = centroids(state)
    return cb.gather_codewords(e[None], codes.reshape(-1, 1)).reshape(codes.shape[:-1] + (-1,))

  return Quantizer(init, apply, lookup, spec)
