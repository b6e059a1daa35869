"""Reconstruction errors of a tokenizer over a whole evaluation set.

Errors are taken in the space the model is trained in (its normalised series, e.g. after
RevIN), so numbers are comparable across data sets of different scales, and only over real
samples: padding appended to reach a common length is excluded from numerator and
denominator alike. The means match ``vqlearn.losses.masked_mse`` / ``masked_mae`` (mean over
real samples x channels), accumulated in float64 on the host.
"""

from __future__ import annotations

import numpy as np


def reconstruction_errors(target, reconstruction, mask=None, *,
                          per_channel: bool = False) -> dict[str, float]:
  """Mean squared and absolute error over the real samples of a set.

  Args:
    target: (n, T, C) normalised series (what the model reconstructs).
    reconstruction: (n, T, C) the model's reconstruction, same space.
    mask: (n, T), 1 = real sample; None when every sample is real. Values at padding are
      ignored, even non-finite ones.
    per_channel: also return ``mse_ch{c}`` and ``mae_ch{c}``, the means over real samples of
      channel c alone.

  Returns:
    ``{'mse', 'mae'}`` (plus per-channel keys) as Python floats; NaN when no sample is real.
  """
  target = np.asarray(target, np.float64)
  reconstruction = np.asarray(reconstruction, np.float64)
  if target.ndim != 3 or reconstruction.shape != target.shape:
    raise ValueError(f"target and reconstruction must both have shape (n, T, C), got "
                     f"{target.shape} and {reconstruction.shape}")
  if mask is None:
    mask = np.ones(target.shape[:2])
  keep = np.asarray(mask) > 0
  if keep.shape != target.shape[:2]:
    raise ValueError(f"mask must have shape (n, T) = {target.shape[:2]}, got {keep.shape}")
  diff = np.where(keep[..., None], target - reconstruction, 0.0)
  count = keep.sum()
  per_c_sq = np.sum(np.square(diff), axis=(0, 1))  # (C,)
  per_c_abs = np.sum(np.abs(diff), axis=(0, 1))
  with np.errstate(invalid="ignore", divide="ignore"):
    out = {"mse": float(per_c_sq.sum() / (count * target.shape[2])),
           "mae": float(per_c_abs.sum() / (count * target.shape[2]))}
    if per_channel:
      for c in range(target.shape[2]):
        out[f"mse_ch{c}"] = float(per_c_sq[c] / count)
        out[f"mae_ch{c}"] = float(per_c_abs[c] / count)
  return out
