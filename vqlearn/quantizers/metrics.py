"""Codebook-health metrics, all masked and all computed from global sums.

Every family reports at least (REFERENCE.md §6, DESIGN.md "Metric keys"):
- ``perplexity``: hard perplexity exp(H(mean one-hot)), summed over symbols (groups, levels,
  bits) as fairseq does, so its maximum is ``num_symbols * vocab_size``;
- ``usage``: fraction of (symbol, entry) pairs selected at least once in the batch;
- ``window_usage``: the same fraction over the last ``usage_window`` training steps (kept in
  state as the step at which each entry was last selected);
- ``dead_codes``: entries not selected in any of the last ``usage_window`` training steps;
- ``max_code_ratio``: share of the batch taken by the most-used entry (big_vision's
  ``codebook_max_ratio``), averaged over symbols;
- ``quantization_error``: mean over real rows of ||x - quantized||^2 (summed over features).
Families with soft assignments add ``prob_perplexity``.

``nmi`` and ``purity`` score codes against labels on the host (numpy), for evaluation.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from vqlearn.quantizers.base import F32, NEVER, CodeSpec, global_sum, masked_mean, psum
from vqlearn.types import Array, Metrics

PERPLEXITY_EPS = 1e-7  # fairseq's constant inside the log.


def code_counts(codes: Array, mask: Array, vocab_size: int, axis_name: str | None) -> Array:
  """Global (num_symbols, vocab_size) float32 counts of codes (N, S) over real rows."""
  n, s = codes.shape
  flat = (jnp.clip(codes, 0, vocab_size - 1) + vocab_size * jnp.arange(s)[None, :]).reshape(-1)
  weights = jnp.broadcast_to(mask[:, None], (n, s)).reshape(-1).astype(F32)
  counts = jax.ops.segment_sum(weights, flat, num_segments=s * vocab_size)
  return psum(counts.reshape(s, vocab_size), axis_name)


def perplexity(counts: Array) -> Array:
  """Sum over symbols of exp(-sum_v p log(p + 1e-7)), p = counts / total (fairseq)."""
  p = counts / jnp.maximum(jnp.sum(counts, axis=-1, keepdims=True), 1e-12)
  return jnp.sum(jnp.exp(-jnp.sum(p * jnp.log(p + PERPLEXITY_EPS), axis=-1)))


def soft_counts(probs: Array, mask: Array, axis_name: str | None) -> Array:
  """Global (S, V) sums of soft assignments probs (N, S, V) over real rows."""
  return global_sum(probs.astype(F32) * mask[:, None, None], axis_name)


def usage(counts: Array) -> Array:
  return jnp.mean((counts > 0).astype(F32))


def max_code_ratio(counts: Array) -> Array:
  total = jnp.maximum(jnp.sum(counts, axis=-1), 1e-12)
  return jnp.mean(jnp.max(counts, axis=-1) / total)


def quantization_error(x: Array, quantized: Array, mask: Array,
                       axis_name: str | None) -> Array:
  """Mean over real rows of ||x - quantized||^2; x, quantized are (N, d)."""
  sq = jnp.sum(jnp.square(x.astype(F32) - quantized.astype(F32)), axis=-1)
  return masked_mean(sq, mask, axis_name)


def bits_per_vector(spec: CodeSpec) -> float:
  return spec.bits


# ----------------------------------------------------------------------------------------------
# Rolling-window usage, kept in state as `last_used` (S, V) int32 and a `step` counter.
# ----------------------------------------------------------------------------------------------

def init_tracking(num_symbols: int, vocab_size: int) -> dict[str, Array]:
  return {"step": jnp.zeros((), jnp.int32),
          "last_used": jnp.full((num_symbols, vocab_size), NEVER, jnp.int32)}


def mark_used(last_used: Array, counts: Array, step: Array) -> Array:
  return jnp.where(counts > 0, step, last_used).astype(jnp.int32)


def alive(last_used: Array, step: Array, window: int) -> Array:
  """Entries selected in at least one of the training steps (step - window, step]."""
  return (last_used != NEVER) & (last_used > step - window)


def observe(state: dict, codes: Array, vocab_size: int, window: int, x: Array,
            quantized: Array, mask: Array, axis_name: str | None) -> tuple[Array, dict, Metrics]:
  """One batch's codes (N, S) -> (global counts (S, V), advanced tracking fields, metrics).

  The tracking fields (``step`` + 1, ``last_used`` marked at this step) belong in the new
  state of a training call; an evaluation call returns its input state and drops them, while
  its metrics still see this batch's usage. x and quantized are the (N, d) rows compared by
  ``quantization_error``.
  """
  counts = code_counts(codes, mask, vocab_size, axis_name)
  step = state["step"]
  last_used = mark_used(state["last_used"], counts, step)
  live = alive(last_used, step, window)
  return counts, {"step": step + 1, "last_used": last_used}, {
      "perplexity": perplexity(counts),
      "usage": usage(counts),
      "window_usage": jnp.mean(live.astype(F32)),
      "dead_codes": jnp.sum(~live).astype(F32),
      "max_code_ratio": max_code_ratio(counts),
      "quantization_error": quantization_error(x, quantized, mask, axis_name),
  }


# ----------------------------------------------------------------------------------------------
# Codes against labels (host-side evaluation).
# ----------------------------------------------------------------------------------------------

def _contingency(codes, labels, mask):
  codes = np.asarray(codes)
  labels = np.asarray(labels).reshape(-1)
  codes = codes.reshape(labels.shape[0], -1)  # several symbols per row -> one joint cluster id
  keep = np.ones(labels.shape[0], bool) if mask is None else np.asarray(mask).reshape(-1) > 0
  keep &= np.all(codes >= 0, axis=1)
  _, cluster = np.unique(codes[keep], axis=0, return_inverse=True)
  _, label = np.unique(labels[keep], return_inverse=True)
  table = np.zeros((cluster.max() + 1, label.max() + 1), np.float64)
  np.add.at(table, (cluster.reshape(-1), label.reshape(-1)), 1.0)
  return table


def _entropy(p):
  p = p[p > 0]
  return float(-np.sum(p * np.log(p)))


def nmi(codes, labels, mask=None) -> float:
  """Normalised mutual information, I(C; Y) / mean(H(C), H(Y)) (arithmetic normalisation)."""
  table = _contingency(codes, labels, mask)
  joint = table / table.sum()
  pc, py = joint.sum(1), joint.sum(0)
  h_c, h_y = _entropy(pc), _entropy(py)
  nz = joint > 0
  mi = float(np.sum(joint[nz] * np.log(joint[nz] / np.outer(pc, py)[nz])))
  denom = 0.5 * (h_c + h_y)
  return 1.0 if denom == 0 else mi / denom


def purity(codes, labels, mask=None) -> float:
  """Fraction of rows whose label is the majority label of their code."""
  table = _contingency(codes, labels, mask)
  return float(table.max(axis=1).sum() / table.sum())
