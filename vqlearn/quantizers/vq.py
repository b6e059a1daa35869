"""Nearest-neighbour VQ with a gradient-trained codebook (VQ-VAE, van den Oord et al. 2017)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from vqlearn.quantizers import base, codebook as cb, metrics
from vqlearn.quantizers.base import F32, CodeSpec, Quantizer, QuantizerOutput

sg = jax.lax.stop_gradient


def vq(codebook_size: int = 512, *, cosine: bool = False, estimator: str = "ste",
       kmeans_init: bool = False, kmeans_iters: int = 10, revive_dead: bool = False,
       init_scale: float | None = None, usage_window: int = 100,
       axis_name: str | None = None) -> Quantizer:
  """VQ-VAE quantizer: nearest codeword, codebook trained by its loss.

  Losses (unweighted; haiku ``VectorQuantizer``, REFERENCE.md §1):
    ``codebook`` = mean ||q - sg(x)||^2 and ``commitment`` = mean ||sg(q) - x||^2; the paper's
    total is codebook + 0.25 * commitment.

  Args:
    codebook_size: entries K (>= 2).
    cosine: l2-normalise inputs and codewords before distances; the output is then the unit
      codeword and losses compare it with the unit input (VQGraph, big_vision).
    estimator: ``"ste"`` (straight-through) or ``"rotation"`` (rotation trick, Fifty et al. 2024).
    kmeans_init: on the first training batch with real rows, set the codebook to
      ``kmeans_iters`` Lloyd iterations from random batch rows (vector-quantize-pytorch).
    revive_dead: entries unused for ``usage_window`` training steps become random batch rows.
    init_scale: codebook init U(-s, s); default 1/K (TOTEM and the original VQ-VAE code).
    usage_window: training steps over which ``window_usage``/``dead_codes`` are measured.
    axis_name: mapped axis to ``psum`` statistics over inside ``shard_map``/``pmap``.

  Params ``{"codebook": (K, d)}``. State: ``step``, ``last_used`` (1, K) and, when k-means
  init or revival is on, ``offset`` (K, d) added to the trained codebook (how init/revival
  write a parameter from a pure apply; the gradient reaches ``codebook`` unchanged) and
  ``initialized``. Training needs ``rng`` when k-means init or revival is on.
  """
  k = base.check_positive_int("codebook_size", codebook_size, 2)
  base.check_choice("estimator", estimator, ("ste", "rotation"))
  base.check_positive_int("kmeans_iters", kmeans_iters)
  window = base.check_positive_int("usage_window", usage_window)
  scale = 1.0 / k if init_scale is None else float(init_scale)
  rewrites = kmeans_init or revive_dead
  estimate = base.straight_through if estimator == "ste" else base.rotation_trick
  spec = CodeSpec(1, k)

  def init(rng, x_spec):
    d = base.feature_dim(x_spec)
    params = {"codebook": jax.random.uniform(rng, (k, d), F32, -scale, scale)}
    state = metrics.init_tracking(1, k)
    if rewrites:
      state |= {"offset": jnp.zeros((k, d), F32), "initialized": jnp.zeros((), bool)}
    return params, state

  def effective_codebook(params, state):
    e = params["codebook"].astype(F32)
    e = e + state["offset"] if rewrites else e
    return cb.l2_normalize(e) if cosine else e

  def apply(params, state, x, *, rng=None, mask=None, train=False):
    d = params["codebook"].shape[-1]
    rows, m = base.check_input(x, d, mask)
    if train and rewrites:
      rng = base.require_rng(rng, "vq with kmeans_init or revive_dead samples batch rows")
    target = cb.l2_normalize(rows) if cosine else rows
    new_state = dict(state)

    if train and rewrites:
      init_key, revive_key = jax.random.split(rng)
      all_rows = sg(base.gather_rows(target, axis_name))
      all_mask = base.gather_rows(m, axis_name)
    if train and kmeans_init:
      start = (~state["initialized"]) & (jnp.sum(all_mask) > 0)
      current = sg(params["codebook"].astype(F32) + state["offset"])
      fitted = jax.lax.cond(
          start, lambda: cb.kmeans(init_key, all_rows, all_mask, k, kmeans_iters)[0],
          lambda: current)
      new_state["offset"] = state["offset"] + fitted - current
      new_state["initialized"] = state["initialized"] | start
    e = effective_codebook(params, new_state)

    codes, _ = cb.nearest(sg(target)[:, None], sg(e)[None])
    q = e[codes[:, 0]]
    losses = {"codebook": base.mse(q, sg(target), m, axis_name),
              "commitment": base.mse(sg(q), target, m, axis_name)}
    quantized = estimate(target, q)

    counts, tracking, out_metrics = metrics.observe(state, codes, k, window,
                                                    target, q, m, axis_name)
    new_state |= tracking
    if train and revive_dead:
      # Revived entries count as used now, so they get a whole window to be picked.
      dead = ~metrics.alive(tracking["last_used"], state["step"], window)[0]
      dead &= state["step"] + 1 >= window
      current = sg(params["codebook"].astype(F32) + new_state["offset"])
      revived = cb.replace_with_rows(revive_key, current, dead, all_rows, all_mask)
      new_state["offset"] = new_state["offset"] + revived - current
      new_state["last_used"] = jnp.where(dead[None], state["step"], new_state["last_used"])
    out = QuantizerOutput(quantized=base.finish_quantized(x, quantized, m),
                          codes=base.finish_codes(x, codes, m), probs=None,
                          losses=losses, metrics=out_metrics)
    return out, (new_state if train else state)

  def lookup(params, state, codes):
    e = effective_codebook(params, state)
    return cb.gather_codewords(e[None], codes.reshape(-1, 1)).reshape(codes.shape[:-1] + (-1,))

  return Quantizer(init, apply, lookup, spec)
