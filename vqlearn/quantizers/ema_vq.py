"""VQ with an EMA codebook (haiku ``VectorQuantizerEMA``; van den Oord et al. 2017, appendix)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from vqlearn.quantizers import base, codebook as cb, metrics
from vqlearn.quantizers.base import F32, CodeSpec, Quantizer, QuantizerOutput

sg = jax.lax.stop_gradient


def ema_vq(codebook_size: int = 512, *, decay: float = 0.99, epsilon: float = 1e-5,
           cosine: bool = False, kmeans_init: bool = False, kmeans_iters: int = 10,
           revive_dead: bool = False, dead_threshold: float = 1.0, usage_window: int = 100,
           axis_name: str | None = None) -> Quantizer:
  """Nearest-neighbour VQ whose codebook is the zero-debiased EMA of assigned means.

  Per training batch (REFERENCE.md §1), with global masked sums n_k = sum onehot_k and
  s_k = sum onehot_k x: N <- EMA(n), M <- EMA(s), both zero-debiased; Laplace smoothing
  N'_k = (N_k + eps) / (sum N + K eps) * sum N; codebook e_k = M_k / N'_k. The batch is quantised
  with the codebook from before the update, as in haiku.

  Losses: ``commitment`` = mean ||sg(q) - x||^2 (unweighted; the reference weight is 0.25).

  Args:
    codebook_size: entries K (>= 2).
    decay: EMA decay in (0, 1); 0.99 as haiku (VQGraph uses 0.8).
    epsilon: Laplace smoothing constant.
    cosine: assign and average l2-normalised vectors, re-normalise the codebook (VQGraph).
    kmeans_init: the first training batch with real rows sets the EMA to k-means centroids and
      cluster sizes (vector-quantize-pytorch), then the usual update follows on that batch.
    kmeans_iters: Lloyd iterations for ``kmeans_init``.
    revive_dead: after each update, split the most-used entry into any entry whose EMA count is
      below ``dead_threshold`` (big_vision UViM): global statistics, a ``lax.while_loop`` and the
      caller's rng make every replica identical by construction.
    dead_threshold: EMA count under which an entry is revived.
    usage_window: training steps over which ``window_usage``/``dead_codes`` are measured.
    axis_name: mapped axis to ``psum`` statistics over inside ``shard_map``/``pmap``.

  Params: ``{}``. State: ``codebook`` (K, d); ``ema_counts`` (K,), ``ema_sums`` (K, d) and
  ``ema_weight`` () — the biased EMAs and the debiasing denominator 1 - decay^t (set to 1 by
  k-means init); ``initialized`` (only with k-means init); ``step``; ``last_used``. Training
  needs ``rng`` when k-means init or revival is on.
  """
  k = base.check_positive_int("codebook_size", codebook_size, 2)
  decay = base.check_unit_interval("decay", decay)
  if not epsilon > 0:
    raise ValueError(f"epsilon must be > 0, got {epsilon!r}")
  base.check_positive_int("kmeans_iters", kmeans_iters)
  window = base.check_positive_int("usage_window", usage_window)
  spec = CodeSpec(1, k)

  def init(rng, x_spec):
    d = base.feature_dim(x_spec)
    limit = math.sqrt(6.0 / (d + k))  # haiku's VarianceScaling(1, fan_avg, uniform)
    state = metrics.init_tracking(1, k) | {
        "codebook": jax.random.uniform(rng, (k, d), F32, -limit, limit),
        "ema_counts": jnp.zeros((k,), F32),
        "ema_sums": jnp.zeros((k, d), F32),
        "ema_weight": jnp.zeros((), F32),
    }
    if kmeans_init:
      state["initialized"] = jnp.zeros((), bool)
    return {}, state

  def codebook_from(counts, sums, weight):
    n = counts / weight
    total = jnp.sum(n)
    smoothed = (n + epsilon) / (total + k * epsilon) * total
    e = (sums / weight) / smoothed[:, None]
    return cb.l2_normalize(e) if cosine else e

  def apply(params, state, x, *, rng=None, mask=None, train=False):
    del params
    d = state["codebook"].shape[-1]
    rows, m = base.check_input(x, d, mask)
    if train and (kmeans_init or revive_dead):
      rng = base.require_rng(rng, "ema_vq with kmeans_init or revive_dead draws random numbers")
      init_key, revive_key = jax.random.split(rng)
    target = cb.l2_normalize(rows) if cosine else rows
    new_state = dict(state)

    if train and kmeans_init:
      all_rows = sg(base.gather_rows(target, axis_name))
      all_mask = base.gather_rows(m, axis_name)
      start = (~state["initialized"]) & (jnp.sum(all_mask) > 0)

      def fit():
        centroids, sizes = cb.kmeans(init_key, all_rows, all_mask, k,
                                     kmeans_iters)
        centroids = cb.l2_normalize(centroids) if cosine else centroids
        return centroids, sizes, centroids * sizes[:, None], jnp.ones((), F32)

      keep = lambda: (state["codebook"], state["ema_counts"], state["ema_sums"],
                      state["ema_weight"])
      (new_state["codebook"], new_state["ema_counts"], new_state["ema_sums"],
       new_state["ema_weight"]) = jax.lax.cond(start, fit, keep)
      new_state["initialized"] = state["initialized"] | start

    e = new_state["codebook"]
    codes, _ = cb.nearest(sg(target)[:, None], e[None])
    q = e[codes[:, 0]]
    losses = {"commitment": base.mse(sg(q), target, m, axis_name)}
    quantized = base.straight_through(target, q)

    counts, tracking, out_metrics = metrics.observe(state, codes, k, window,
                                                    target, q, m, axis_name)
    if train:
      sums, _ = cb.cluster_sums(sg(target), codes[:, 0], m, k)
      sums = base.psum(sums, axis_name)
      ema = lambda old, new: decay * old + (1.0 - decay) * new
      ema_counts = ema(new_state["ema_counts"], counts[0])
      ema_sums = ema(new_state["ema_sums"], sums)
      ema_weight = ema(new_state["ema_weight"], 1.0)
      if revive_dead:
        # Thresholds apply to debiased counts; splitting the biased ones keeps every ratio.
        ema_sums, ema_counts = cb.split_most_used(revive_key, ema_sums, ema_counts,
                                                  dead_threshold * ema_weight, k)
      new_state |= tracking | {
          "ema_counts": ema_counts, "ema_sums": ema_sums, "ema_weight": ema_weight,
          "codebook": codebook_from(ema_counts, ema_sums, ema_weight)}
    out = QuantizerOutput(quantized=base.finish_quantized(x, quantized, m),
                          codes=base.finish_codes(x, codes, m), probs=None,
                          losses=losses, metrics=out_metrics)
    return out, (new_state if train else state)

  def lookup(params, state, codes):
    del params
    e = state["codebook"][None]
    return cb.gather_codewords(e, codes.reshape(-1, 1)).reshape(codes.shape[:-1] + (-1,))

  return Quantizer(init, apply, lookup, spec)
