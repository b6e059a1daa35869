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


# ----------------------------------------------------------------------------------------------
# EEG: BrainOmni's tokenizer loss (OpenTSLab/BrainOmni, braintokenizer/model_utils/loss.py).
# ----------------------------------------------------------------------------------------------

def _per_channel_mean(values: Array, channel_mask: Array) -> Array:
  """Mean of (B, C) values over the real channels (channel_mask 1)."""
  real = channel_mask > 0
  return jnp.sum(jnp.where(real, values, 0.0)) / jnp.maximum(jnp.sum(real.astype(F32)), 1.0)


def pearson_per_channel(target: Array, prediction: Array) -> Array:
  """(B, T, C) -> (B, C) Pearson correlation over time, as BrainOmni's ``get_pcc``:
  unbiased covariance over the product of unbiased standard deviations plus 1e-6."""
  t = target.astype(F32) - jnp.mean(target.astype(F32), axis=1, keepdims=True)
  p = prediction.astype(F32) - jnp.mean(prediction.astype(F32), axis=1, keepdims=True)
  n = target.shape[1]
  covariance = jnp.sum(t * p, axis=1) / (n - 1)
  # sqrt(sum of squares) has an infinite gradient at 0 (a flat window); its square does not.
  std = lambda x: jnp.sqrt(jnp.maximum(jnp.sum(jnp.square(x), axis=1) / (n - 1), 1e-20))
  return covariance / (std(t) * std(p) + 1e-6)


def hamming_spectrum(x: Array) -> Array:
  """rfft over axis 1 of (B, T, C) after torch's periodic Hamming window, ``norm='ortho'``."""
  n = x.shape[1]
  window = 0.54 - 0.46 * jnp.cos(2 * jnp.pi * jnp.arange(n, dtype=F32) / n)
  return jnp.fft.rfft(x.astype(F32) * window[None, :, None], axis=1, norm="ortho")


def _safe_angle(z: Array) -> Array:
  # angle's gradient is 0/0 at z = 0; such bins carry no phase, so give them a fixed one.
  tiny = jnp.square(jnp.abs(z)) < 1e-20
  return jnp.angle(jnp.where(tiny, jnp.ones_like(z), z))


def brainomni_loss(target: Array, prediction: Array, channel_mask: Array | None = None
                   ) -> dict[str, Array]:
  """BrainOmni's reconstruction loss: L1 + exp(-PCC) + FFT amplitude L1 + 0.5 * phase L1.

  As its reference code (``get_time_loss``, ``get_pcc``, ``get_frequency_domain_loss`` and the
  sum in ``BrainTokenizer.forward``): PCC is averaged over (window, channel) before the exp;
  the spectra use a periodic Hamming window and an orthonormal rfft; the phase error is the
  plain |angle difference| (not wrapped), as there. Windows are complete (no time padding);
  padded channels (``channel_mask`` 0) are excluded from every term.

  Args:
    target: (B, T, C), the normalised signal.
    prediction: the reconstruction, same shape.
    channel_mask: (B, C), 1 = real channel; None = all real.

  Returns:
    float32 scalars ``{'total', 'l1', 'pcc', 'amplitude', 'phase'}``; ``total`` is the loss.
  """
  if tuple(target.shape) != tuple(prediction.shape) or target.ndim != 3:
    raise ValueError(f"target and prediction must both be (B, T, C), got "
                     f"{tuple(target.shape)} and {tuple(prediction.shape)}")
  if channel_mask is None:
    channel_mask = jnp.ones((target.shape[0], target.shape[2]), F32)
  if tuple(channel_mask.shape) != (target.shape[0], target.shape[2]):
    raise ValueError(f"channel_mask must have shape (B, C) = "
                     f"{(target.shape[0], target.shape[2])}, got {tuple(channel_mask.shape)}")
  real = channel_mask[:, None, :] > 0
  target = jnp.where(real, target.astype(F32), 0.0)
  prediction = jnp.where(real, prediction.astype(F32), 0.0)
  l1 = _per_channel_mean(jnp.mean(jnp.abs(prediction - target), axis=1), channel_mask)
  pcc = _per_channel_mean(pearson_per_channel(target, prediction), channel_mask)
  spectrum_t, spectrum_p = hamming_spectrum(target), hamming_spectrum(prediction)
  amplitude = _per_channel_mean(
      jnp.mean(jnp.abs(jnp.abs(spectrum_p) - jnp.abs(spectrum_t)), axis=1), channel_mask)
  phase = _per_channel_mean(
      jnp.mean(jnp.abs(_safe_angle(spectrum_p) - _safe_angle(spectrum_t)), axis=1),
      channel_mask)
  total = l1 + jnp.exp(-pcc) + amplitude + 0.5 * phase
  return {"total": total, "l1": l1, "pcc": pcc, "amplitude": amplitude, "phase": phase}


# ----------------------------------------------------------------------------------------------
# Speech: L1 + multi-resolution STFT on waveforms (Parallel WaveGAN, Yamamoto et al. 2020).
# ----------------------------------------------------------------------------------------------

# (fft size, hop, window length) in samples: Parallel WaveGAN's three resolutions.
STFT_RESOLUTIONS = ((1024, 120, 600), (2048, 240, 1200), (512, 50, 240))
_STFT_FLOOR = 1e-7  # Parallel WaveGAN clamps |STFT|^2 here before the square root


def stft_magnitude(x: Array, fft: int, hop: int, window: int) -> Array:
  """|STFT| of (B, T) signals, frames centred on samples 0, hop, 2 hop, ... (zero-padded).

  A periodic Hann window of ``window`` samples sits in the middle of each ``fft``-sample frame
  (torch.stft's convention for win_length < n_fft).

  Returns:
    float32 (B, T // hop + 1, fft // 2 + 1).
  """
  x = x.astype(F32)
  frames = x.shape[1] // hop + 1
  padded = jnp.pad(x, ((0, 0), (fft // 2, fft // 2)))
  index = (jnp.arange(frames) * hop)[:, None] + jnp.arange(fft)[None, :]
  hann = 0.5 - 0.5 * jnp.cos(2 * jnp.pi * jnp.arange(window) / window)
  left = (fft - window) // 2
  taper = jnp.zeros((fft,), F32).at[left:left + window].set(hann)
  spectrum = jnp.fft.rfft(padded[:, index] * taper[None, None, :], axis=-1)
  return jnp.sqrt(jnp.maximum(jnp.real(spectrum) ** 2 + jnp.imag(spectrum) ** 2, _STFT_FLOOR))


def multi_resolution_stft(target: Array, prediction: Array, mask: Array | None = None,
                          resolutions=STFT_RESOLUTIONS) -> Array:
  """Mean over resolutions of spectral convergence + log-magnitude L1 (Yamamoto et al. 2020,
  eqs. 4-6), over the frames centred on real samples.

  Spectral convergence is ||S - S_hat||_F / ||S||_F over the whole batch; the log term is the
  mean |log S - log S_hat| over real frames and bins. Padded samples are zeroed in both signals
  first.

  Args:
    target, prediction: (B, T, 1) or (B, T) waveforms.
    mask: (B, T), 1 = real sample; None = all real.
    resolutions: (fft, hop, window) triples.

  Returns:
    A float32 scalar.
  """
  if tuple(target.shape) != tuple(prediction.shape):
    raise ValueError(f"prediction must have target's shape {tuple(target.shape)}, "
                     f"got {tuple(prediction.shape)}")
  if target.ndim == 3:
    if target.shape[-1] != 1:
      raise ValueError(f"waveforms must be (B, T) or (B, T, 1), got {tuple(target.shape)}")
    target, prediction = target[..., 0], prediction[..., 0]
  mask = jnp.ones(target.shape, F32) if mask is None else mask.astype(F32)
  target = jnp.where(mask > 0, target.astype(F32), 0.0)
  prediction = jnp.where(mask > 0, prediction.astype(F32), 0.0)
  total = 0.0
  for fft, hop, window in resolutions:
    s, s_hat = (stft_magnitude(v, fft, hop, window) for v in (target, prediction))
    centres = jnp.minimum(jnp.arange(s.shape[1]) * hop, target.shape[1] - 1)
    real = (mask[:, centres] > 0)[..., None]
    convergence = (jnp.sqrt(jnp.sum(jnp.where(real, jnp.square(s - s_hat), 0.0)))
                   / jnp.maximum(jnp.sqrt(jnp.sum(jnp.where(real, jnp.square(s), 0.0))), 1e-12))
    log_l1 = (jnp.sum(jnp.where(real, jnp.abs(jnp.log(s) - jnp.log(s_hat)), 0.0))
              / jnp.maximum(jnp.sum(real) * s.shape[-1], 1.0))
    total = total + convergence + log_l1
  return total / len(resolutions)
