"""Codebook health over a whole evaluation set.

The quantizers report the same statistics per training batch (``quantizers.metrics``); here
they are computed once over every real token of a split, so that a rare code counts as used if
it appears anywhere in the set. The formulas are the batch metrics' own (fairseq's perplexity
summed over symbols, big_vision's max-code ratio), applied to exact integer counts, so a set
that fits in one batch gives the batch metric's values.

Codes have shape ``mask.shape + (num_symbols,)`` -- for a time-series tokenizer
``(n, C, T', S)`` with a token mask ``(n, C, T')`` -- and are -1 at padding. For binary
quantizers the S symbols are bits (vocab 2), and every bit position counts as one symbol.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

from vqlearn.quantizers import metrics
from vqlearn.quantizers.base import CodeSpec


def _vocab_size(spec: CodeSpec | int) -> int:
  vocab = spec.vocab_size if isinstance(spec, CodeSpec) else spec
  if isinstance(vocab, bool) or not isinstance(vocab, (int, np.integer)) or vocab < 1:
    raise ValueError(f"vocab_size must be a positive integer or a CodeSpec, got {spec!r}")
  return int(vocab)


def real_codes(codes, mask) -> np.ndarray:
  """The (N, S) codes of the real tokens, after checking shapes and ranges.

  Args:
    codes: int array ``mask.shape + (S,)``, -1 at padding.
    mask: array of the leading shape (1 = real token), or None when every token is real.

  Returns:
    int64 array (number of real tokens, S).
  """
  codes = np.asarray(codes)
  if codes.ndim < 1 or not np.issubdtype(codes.dtype, np.integer):
    raise ValueError(f"codes must be an integer array with a trailing symbol axis, "
                     f"got dtype {codes.dtype} and shape {codes.shape}")
  if mask is None:
    keep = np.ones(codes.shape[:-1], bool)
  else:
    keep = np.asarray(mask) > 0
    if keep.shape != codes.shape[:-1]:
      raise ValueError(f"mask must have shape codes.shape[:-1] = {codes.shape[:-1]}, "
                       f"got {keep.shape}")
  return codes[keep].astype(np.int64)


def code_counts_per_symbol(codes, mask, vocab_size: CodeSpec | int) -> np.ndarray:
  """How often each entry of each symbol's codebook is used by the real tokens of a set.

  Args:
    codes: int array ``mask.shape + (S,)`` (e.g. ``(n, C, T', S)``), -1 at padding.
    mask: token mask (1 = real), e.g. ``(n, C, T')``; None when every token is real.
    vocab_size: entries per symbol, or the quantizer's ``CodeSpec``.

  Returns:
    int64 array (S, V): ``counts[s, v]`` = number of real tokens whose symbol s is v.
  """
  vocab = _vocab_size(vocab_size)
  rows = real_codes(codes, mask)
  num_symbols = rows.shape[1]
  if isinstance(vocab_size, CodeSpec) and vocab_size.num_symbols != num_symbols:
    raise ValueError(f"codes have {num_symbols} symbols per token but the CodeSpec says "
                     f"{vocab_size.num_symbols}")
  if rows.size and (rows.min() < 0 or rows.max() >= vocab):
    raise ValueError(f"codes at real tokens must lie in [0, {vocab}), found values in "
                     f"[{rows.min()}, {rows.max()}]; is the mask the codes' token mask?")
  flat = (rows + vocab * np.arange(num_symbols)[None, :]).reshape(-1)
  return np.bincount(flat, minlength=num_symbols * vocab).reshape(num_symbols, vocab)


def codebook_health(codes, mask, spec: CodeSpec | int) -> dict[str, float]:
  """Codebook statistics of an evaluation set (REFERENCE.md §6).

  Args:
    codes: int array ``mask.shape + (S,)`` (e.g. ``(n, C, T', S)``), -1 at padding.
    mask: token mask (1 = real), e.g. ``(n, C, T')``; None when every token is real.
    spec: the quantizer's ``CodeSpec`` (its symbol count is checked) or the vocab size.

  Returns:
    Floats:
    - ``perplexity``: sum over symbols of exp(H) of the code distribution, with fairseq's
      1e-7 inside the log (``quantizers.metrics.perplexity``); at most S * V.
    - ``usage``: fraction of the S * V (symbol, entry) pairs used at least once.
    - ``dead_codes``: number of (symbol, entry) pairs never used in the set.
    - ``max_code_ratio``: share of the tokens taken by the most-used entry, mean over symbols.
    - ``entropy_bits``: sum over symbols of the entropy of the code distribution, in bits
      (the bits per token the codes actually carry if symbols were independent).
    - ``bits_per_token``: the capacity S * log2(V), for comparison with ``entropy_bits``.
    - ``num_tokens``: number of real tokens counted.
  """
  counts = code_counts_per_symbol(codes, mask, spec)
  vocab = counts.shape[1]
  total = counts.sum(axis=1, keepdims=True)
  p = counts / np.maximum(total, 1)
  with np.errstate(divide="ignore", invalid="ignore"):
    entropy_bits = float(-np.sum(np.where(p > 0, p * np.log2(p), 0.0)))
  # Reuse the batch metrics' formulas on exact counts, so both report the same quantity.
  counts32 = jnp.asarray(counts, jnp.float32)
  return {
      "perplexity": float(metrics.perplexity(counts32)),
      "usage": float(metrics.usage(counts32)),
      "dead_codes": float(np.sum(counts == 0)),
      "max_code_ratio": float(metrics.max_code_ratio(counts32)),
      "entropy_bits": entropy_bits,
      "bits_per_token": counts.shape[0] * math.log2(vocab),
      "num_tokens": float(total[0, 0]) if total.size else 0.0,
  }


def token_statistics(codes: np.ndarray, mask: np.ndarray) -> dict[str, float]:
  """Perplexity and count of distinct whole tokens (all S symbols of a token together).

  Comparable across families at equal bits: one 256-entry codebook, 8 bits and 2 x 16 groups
  all have at most 256 distinct tokens, where ``perplexity`` sums per-symbol perplexities.
  """
  real = codes[mask > 0].reshape(-1, codes.shape[-1])
  if not len(real):
    return {"token_perplexity": 0.0, "distinct_tokens": 0.0}
  _, counts = np.unique(real, axis=0, return_counts=True)
  p = counts / counts.sum()
  return {"token_perplexity": float(np.exp(-np.sum(p * np.log(p)))),
          "distinct_tokens": float(len(counts))}
