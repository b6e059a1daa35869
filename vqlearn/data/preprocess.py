"""Preprocessing on in-memory series: normalisation, channel splitting, padding, windows.

All functions are pure numpy. Series arrive unpadded, as lists of (T_i, C) arrays, and leave
as a ``SeriesSet``: zero-padded at the end to a common length with a mask (1 = real sample),
so variable-length sets, short series and the model's compression factor all reduce to
"padding that every loss and statistic ignores".
"""

from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import numpy as np

NORMALIZE = ("none", "zscore")
_MIN_STD = 1e-8  # a constant channel has no scale; it z-normalises to zeros, not to NaN


class SeriesSet(NamedTuple):
  """A padded set of series (or windows, or single channels of series).

  Attributes:
    series: float32 (n, T, C), zero where ``mask`` is 0 (never NaN).
    mask: float32 (n, T), 1 = real sample; real samples always come first.
    labels: int32 (n,), index into ``label_names``; -1 when unlabelled.
    label_names: class names.
    series_index: int32 (n,), the original series (its position in the source split) that
      each row (a whole series, a window or a channel) comes from.
    name: the dataset's name.
  """
  series: np.ndarray
  mask: np.ndarray
  labels: np.ndarray
  label_names: tuple[str, ...]
  series_index: np.ndarray
  name: str

  @property
  def lengths(self) -> np.ndarray:
    """int (n,): number of real samples in each row."""
    return self.mask.sum(axis=1).astype(np.int64)


def _round_up(n: int, multiple: int) -> int:
  return int(math.ceil(n / multiple) * multiple)


def check_int(name: str, value, minimum: int) -> int:
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
    raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
  return int(value)


def normalize(series: Sequence[np.ndarray], mode: str) -> list[np.ndarray]:
  """Per-series, per-channel normalisation over the series' own samples.

  Args:
    series: (T_i, C) arrays (unpadded, so statistics see real samples only).
    mode: "none" or "zscore" (subtract the mean, divide by the population standard
      deviation, as in the UCR archive's z-normalisation; constant channels become 0).

  Returns:
    float32 arrays of the same shapes.
  """
  if mode not in NORMALIZE:
    raise ValueError(f"normalize must be one of {NORMALIZE}, got {mode!r}")
  if mode == "none":
    return [np.asarray(x, np.float32) for x in series]
  out = []
  for x in series:
    x = np.asarray(x, np.float64)  # statistics in float64, stored as float32
    std = x.std(axis=0)
    out.append(((x - x.mean(axis=0)) / np.where(std > _MIN_STD, std, 1.0)).astype(np.float32))
  return out


def split_channels(series: Sequence[np.ndarray], labels: np.ndarray, series_index: np.ndarray
                   ) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
  """Each channel of each series becomes a univariate series (TOTEM's channel independence).

  Returns:
    (series, labels, series_index) with the channels of series i in consecutive rows.
  """
  counts = np.asarray([x.shape[1] for x in series], np.int64)
  out = [x[:, c:c + 1] for x in series for c in range(x.shape[1])]
  return out, np.repeat(labels, counts), np.repeat(series_index, counts)


def pad(series: Sequence[np.ndarray], pad_multiple: int = 1) -> tuple[np.ndarray, np.ndarray]:
  """Zero-pads series at the end to the longest length, rounded up to ``pad_multiple``.

  Returns:
    (series float32 (n, T, C), mask float32 (n, T)).
  """
  pad_multiple = check_int("pad_multiple", pad_multiple, 1)
  length = _round_up(max(x.shape[0] for x in series), pad_multiple)
  channels = series[0].shape[1]
  out = np.zeros((len(series), length, channels), np.float32)
  mask = np.zeros((len(series), length), np.float32)
  for i, x in enumerate(series):
    out[i, :x.shape[0]] = x
    mask[i, :x.shape[0]] = 1.0
  return out, mask


def stratified_split(labels: np.ndarray, fraction: float, seed: int = 0
                     ) -> tuple[np.ndarray, np.ndarray]:
  """Indices (kept, held out) with ``fraction`` of each class held out, reproducibly.

  Each class gives ``floor(fraction * n_c)`` examples, then the classes with the largest
  remainders give one more each until ``round(fraction * n)`` (at least 1) are held out. A
  class never gives its last example, so every class stays in training. Unlabelled (-1)
  examples form one class.

  Returns:
    Sorted int64 index arrays that partition ``range(len(labels))``; the held-out one is
    empty only when every class has a single example.
  """
  n = len(labels)
  classes, counts = np.unique(labels, return_counts=True)
  cap = np.maximum(counts - 1, 0)
  exact = fraction * counts
  take = np.minimum(np.floor(exact).astype(np.int64), cap)
  target = min(max(1, round(fraction * n)), int(cap.sum()))
  order = np.argsort(-(exact - np.floor(exact)), kind="stable")
  while take.sum() < target:  # terminates: target <= cap.sum()
    for c in order:
      if take.sum() < target and take[c] < cap[c]:
        take[c] += 1
  rng = np.random.default_rng(seed)
  held = [rng.permutation(np.flatnonzero(labels == cls))[:k] for cls, k in zip(classes, take)]
  held = np.sort(np.concatenate(held)) if held else np.zeros((0,), np.int64)
  return np.setdiff1d(np.arange(n), held), held


def windows(series_set: SeriesSet, window: int, stride: int, *, pad_multiple: int = 1
            ) -> SeriesSet:
  """Cuts every row into windows of ``window`` samples, ``stride`` apart.

  Windows start at 0, stride, 2*stride, ... and lie entirely within the real samples, so they
  never start (or run) into padding; the last ``(L - window) % stride`` samples of a row are
  not covered. A row shorter than ``window`` gives one window at 0, padded with mask 0.
  Window length is rounded up to ``pad_multiple`` with mask-0 samples.

  Args:
    series_set: padded rows with their mask.
    window: samples per window; 0 keeps whole rows (only re-padded to ``pad_multiple``).
    stride: samples between the starts of consecutive windows of a row (>= 1).
    pad_multiple: the output length is a multiple of it (the model's compression).

  Returns:
    The windows in row order, then start order, with labels and series_index of their row.
  """
  window = check_int("window", window, 0)
  stride = check_int("stride", stride, 1)
  pad_multiple = check_int("pad_multiple", pad_multiple, 1)
  lengths = series_set.lengths
  n, t, c = series_set.series.shape
  if window == 0:
    width = _round_up(max(int(lengths.max(initial=1)), 1), pad_multiple)
    rows, starts = np.arange(n), np.zeros((n,), np.int64)
  else:
    width = _round_up(window, pad_multiple)
    count = np.where(lengths >= window, (lengths - window) // stride + 1, 1)
    rows = np.repeat(np.arange(n), count)
    first = np.repeat(np.cumsum(count) - count, count)  # flat index of each row's 1st window
    starts = (np.arange(rows.size) - first) * stride
  steps = starts[:, None] + np.arange(width)[None, :]
  real = steps < lengths[rows][:, None]
  if window:
    real &= np.arange(width)[None, :] < window  # the rounding-up samples are padding
  # Out-of-range steps are padding: clip them to a valid index, then mask them out.
  safe = np.minimum(steps, t - 1)
  series = np.where(real[..., None], series_set.series[rows[:, None], safe], 0.0)
  return series_set._replace(
      series=series.astype(np.float32).reshape(rows.size, width, c),
      mask=real.astype(np.float32),
      labels=series_set.labels[rows],
      series_index=series_set.series_index[rows])
