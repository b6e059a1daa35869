"""Compose quantizers like ``optax.chain``: residual levels and product groups.

Both combinators return a ``Quantizer``; params and state are tuples of the parts' params and
states, so they nest (a product of residual quantizers is fine) and checkpoint like any pytree.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from vqlearn.quantizers import base, metrics
from vqlearn.quantizers.base import CodeSpec, Quantizer, QuantizerOutput

# Metrics that add up across parts (fairseq sums perplexities over groups); the rest average.
_SUMMED = ("perplexity", "dead_codes")


def _split_keys(rng, n):
  return [None] * n if rng is None else list(jax.random.split(rng, n))


def _combine(outs: list[QuantizerOutput], x_rows, quantized_rows, mask, axis_name,
             loss_reduce, part_name: str) -> tuple[dict, dict]:
  losses = {name: loss_reduce(jnp.stack([o.losses[name] for o in outs]))
            for name in outs[0].losses}
  combined = {}
  for name in outs[0].metrics:
    values = jnp.stack([o.metrics[name] for o in outs])
    combined[name] = values.sum() if name.endswith(_SUMMED) else values.mean()
  combined["quantization_error"] = metrics.quantization_error(x_rows, quantized_rows, mask,
                                                              axis_name)
  for i, o in enumerate(outs):
    for name in ("perplexity", "usage", "quantization_error"):
      combined[f"{part_name}{i}/{name}"] = o.metrics[name]
  return losses, combined


def _probs(outs):
  if any(o.probs is None for o in outs):
    return None
  return jnp.concatenate([o.probs for o in outs], axis=-2)


def residual(q: Quantizer, levels: int, *, axis_name: str | None = None) -> Quantizer:
  """Residual quantization: level l quantizes what levels < l left unexplained.

  r_0 = x, q_l = Q_l(r_{l-1}), r_l = r_{l-1} - q_l, output sum_l q_l. As in EnCodec and DAC the
  residual is not stop-gradiented, so with straight-through levels the output's gradient to x is
  the identity (not ``levels`` times it). Losses are summed over levels; codes concatenate the
  levels' codes on the last axis. Every level is an independent instance of ``q``.
  """
  levels = base.check_positive_int("levels", levels)
  spec = CodeSpec(levels * q.spec.num_symbols, q.spec.vocab_size)

  def init(rng, x_spec):
    parts = [q.init(key, x_spec) for key in jax.random.split(rng, levels)]
    return tuple(p for p, _ in parts), tuple(s for _, s in parts)

  def apply(params, state, x, *, rng=None, mask=None, train=False):
    d = x.shape[-1]
    rows, m = base.check_input(x, d, mask)
    remainder, outs, states = x, [], []
    for level, key in enumerate(_split_keys(rng, levels)):
      out, new = q.apply(params[level], state[level], remainder, rng=key, mask=mask,
                         train=train)
      remainder = remainder - out.quantized
      outs.append(out)
      states.append(new)
    quantized = sum(o.quantized for o in outs)
    losses, out_metrics = _combine(outs, rows, quantized.reshape(-1, d), m,
                                   axis_name, jnp.sum, "level")
    out = QuantizerOutput(quantized=quantized,
                          codes=jnp.concatenate([o.codes for o in outs], axis=-1),
                          probs=_probs(outs), losses=losses, metrics=out_metrics)
    return out, (tuple(states) if train else state)

  def lookup(params, state, codes):
    parts = jnp.split(codes, levels, axis=-1)
    return sum(q.lookup(p, s, c) for p, s, c in zip(params, state, parts))

  return Quantizer(init, apply, lookup, spec)


def product(q: Quantizer, groups: int, *, axis_name: str | None = None) -> Quantizer:
  """Product quantization: the feature axis is cut into ``groups`` equal slices, each quantized
  by its own instance of ``q``; outputs and codes concatenate. Losses are averaged over groups,
  so a mean-squared loss keeps the scale of the same loss over the whole vector.
  """
  groups = base.check_positive_int("groups", groups)
  spec = CodeSpec(groups * q.spec.num_symbols, q.spec.vocab_size)

  def init(rng, x_spec):
    d = base.feature_dim(x_spec)
    if d % groups:
      raise ValueError(f"groups={groups} must divide the feature size d={d}")
    part_spec = jax.ShapeDtypeStruct(tuple(x_spec.shape[:-1]) + (d // groups,), x_spec.dtype)
    parts = [q.init(key, part_spec) for key in jax.random.split(rng, groups)]
    return tuple(p for p, _ in parts), tuple(s for _, s in parts)

  def apply(params, state, x, *, rng=None, mask=None, train=False):
    d = x.shape[-1]
    if d % groups:
      raise ValueError(f"x must have a last axis divisible by groups={groups}, "
                       f"got shape {tuple(x.shape)}")
    rows, m = base.check_input(x, d, mask)
    outs, states = [], []
    for g, (chunk, key) in enumerate(zip(jnp.split(x, groups, axis=-1),
                                         _split_keys(rng, groups))):
      out, new = q.apply(params[g], state[g], chunk, rng=key, mask=mask, train=train)
      outs.append(out)
      states.append(new)
    quantized = jnp.concatenate([o.quantized for o in outs], axis=-1)
    losses, out_metrics = _combine(outs, rows, quantized.reshape(-1, d), m,
                                   axis_name, jnp.mean, "group")
    out = QuantizerOutput(quantized=quantized,
                          codes=jnp.concatenate([o.codes for o in outs], axis=-1),
                          probs=_probs(outs), losses=losses, metrics=out_metrics)
    return out, (tuple(states) if train else state)

  def lookup(params, state, codes):
    parts = jnp.split(codes, groups, axis=-1)
    return jnp.concatenate([q.lookup(p, s, c) for p, s, c in zip(params, state, parts)], -1)

  return Quantizer(init, apply, lookup, spec)
