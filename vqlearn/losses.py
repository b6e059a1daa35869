"""Reconstruction losses (pure functions), masked so that padding never counts.

Every loss is a float32 mean over the real samples and all channels: with x (B, T, C) and mask
(B, T) the denominator is C times the number of real samples. Padded positions are excluded
with ``where`` (not multiplied by 0), so NaN or inf there cannot leak into the value or the
gradient.
"""

from __future__ import annotations

import jax.numpy as jnp

from vqlearn.types import Array

F32 = jnp.float32


def _masked_mean(error, target: Array, prediction: Array, mask: Array | None) -> Array:
  """Mean of ``error(prediction - target)`` over the real entries, in float32."""
  if tuple(target.shape) != tuple(prediction.shape):
    raise ValueError(f"prediction must have target's shape {tuple(target.shape)}, "
                     f"got {tuple(prediction.shape)}")
  diff = prediction.astype(F32) - target.astype(F32)
  if mask is None:
    return jnp.mean(error(diff))
  if tuple(mask.shape) != tuple(target.shape[:-1]):
    raise ValueError(f"mask must have shape target.shape[:-1] = {tuple(target.shape[:-1])}, "
                     f"got {tuple(mask.shape)}")
  real = mask[..., None] > 0
  # Zero the difference before the error, not after: where(real, error(d), 0) would still
  # send NaN gradients (0 * d error/dd at NaN) to the padded entries.
  diff = jnp.where(real, diff, 0.0)
  count = jnp.sum(real.astype(F32)) * target.shape[-1]
  return jnp.sum(error(diff)) / jnp.maximum(count, 1.0)


def masked_mse(target: Array, prediction: Array, mask: Array | None = None) -> Array:
  """Mean squared error over real samples and channels.

  Args:
    target: (..., C), e.g. (B, T, C).
    prediction: target's shape.
    mask: target.shape[:-1], 1 = real sample; None = all real.

  Returns:
    A float32 scalar (0 when no sample is real).
  """
  return _masked_mean(jnp.square, target, prediction, mask)


def masked_mae(target: Array, prediction: Array, mask: Array | None = None) -> Array:
  """Mean absolute error over real samples and channels; arguments as ``masked_mse``."""
  return _masked_mean(jnp.abs, target, prediction, mask)
