"""EEG reconstruction quality: PCC, MAE, MSE, spectral amplitude and phase errors, overall, per
channel and per frequency band.

Everything runs on the host in float64 over a whole evaluation set of windows ``(n, T, C)``
with a channel mask ``(n, C)`` (1 = a real channel; windows have no time padding). Spectra are
``losses.hamming_spectrum``'s (periodic Hamming window, orthonormal rfft), so the amplitude
error is the loss's amplitude term measured on held-out data. Unlike the loss, the phase error
is wrapped, |angle(e^{i(phi_p - phi_t)})| in [0, pi] (the angular distance, where the loss keeps
BrainOmni's unwrapped difference), and averaged over bins weighted by the target's amplitude:
the phase of a bin without energy is rounding noise (a sine on a bin of a periodic Hamming window
fills exactly three bins; the others hold ~1e-16 with any phase). PCC is Pearson's r per
(window, channel) over time, averaged (BrainOmni's reconstruction metric).

Codebook health comes from ``evaluators.codebook`` on the codes.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

# Conventional EEG bands in Hz, [low, high); gamma stops at the band-pass edge used here.
BANDS: dict[str, tuple[float, float]] = {
    "delta": (1.0, 4.0), "theta": (4.0, 8.0), "alpha": (8.0, 13.0), "beta": (13.0, 30.0),
    "gamma": (30.0, 45.0),
}


def _check(target, reconstruction, channel_mask):
  target = np.asarray(target, np.float64)
  reconstruction = np.asarray(reconstruction, np.float64)
  if target.ndim != 3 or reconstruction.shape != target.shape:
    raise ValueError(f"target and reconstruction must both be (n, T, C), got {target.shape} "
                     f"and {reconstruction.shape}")
  if channel_mask is None:
    channel_mask = np.ones((target.shape[0], target.shape[2]))
  real = np.asarray(channel_mask) > 0
  if real.shape != (target.shape[0], target.shape[2]):
    raise ValueError(f"channel_mask must be (n, C) = {(target.shape[0], target.shape[2])}, "
                     f"got {real.shape}")
  return target, reconstruction, real


def pearson(target, reconstruction) -> np.ndarray:
  """(n, T, C) -> (n, C) Pearson r over time; 0 where either side is constant."""
  t = target - target.mean(axis=1, keepdims=True)
  p = reconstruction - reconstruction.mean(axis=1, keepdims=True)
  denominator = np.sqrt(np.sum(t * t, axis=1) * np.sum(p * p, axis=1))
  with np.errstate(invalid="ignore", divide="ignore"):
    return np.where(denominator > 0, np.sum(t * p, axis=1) / denominator, 0.0)


def spectrum(x) -> np.ndarray:
  """(n, T, C) -> (n, T // 2 + 1, C): periodic Hamming window, orthonormal rfft."""
  n = x.shape[1]
  window = 0.54 - 0.46 * np.cos(2 * np.pi * np.arange(n) / n)
  return np.fft.rfft(x * window[None, :, None], axis=1, norm="ortho")


def spectral_errors(target, reconstruction) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Per (window, bin, channel): |amplitude difference|, wrapped phase distance, and the
  target's amplitude (the phase error's weight)."""
  st, sp = spectrum(target), spectrum(reconstruction)
  amplitude = np.abs(np.abs(sp) - np.abs(st))
  phase = np.abs(np.angle(sp * np.conj(st)))  # angle of the ratio: the wrapped difference
  return amplitude, phase, np.abs(st)


def _weighted_phase(phase, weight) -> np.ndarray:
  """(n, bins, C) -> (n, C): amplitude-weighted mean phase error (0 without target energy)."""
  total = weight.sum(axis=1)
  with np.errstate(invalid="ignore", divide="ignore"):
    return np.where(total > 0, np.sum(phase * weight, axis=1) / total, 0.0)


def _mean(values, real) -> float:
  count = real.sum()
  return float(np.sum(np.where(real, values, 0.0)) / count) if count else float("nan")


def signal_metrics(target, reconstruction, channel_mask=None, *, sample_rate: float,
                   channel_names: Sequence[str] | None = None,
                   bands: dict[str, tuple[float, float]] | None = None) -> dict[str, float]:
  """Reconstruction metrics of a set of EEG windows.

  Args:
    target: (n, T, C) the normalised signal.
    reconstruction: (n, T, C) in the same space.
    channel_mask: (n, C), 1 = real channel; None = all real.
    sample_rate: Hz, to place the frequency bins in bands.
    channel_names: C names for the per-channel keys (default ``ch{c}``); all windows must share
      one channel layout for per-channel keys to mean anything.
    bands: name -> [low, high) Hz (default ``BANDS``; bands above Nyquist are skipped).

  Returns:
    ``pcc``, ``mae``, ``mse``, ``amplitude_error``, ``phase_error`` over every real (window,
    channel); the same five as ``<metric>/<channel>`` for channels real in some window;
    ``amplitude_error/<band>``, ``phase_error/<band>`` and ``pcc/<band>`` (Pearson r of the two
    Hamming-windowed signals band-passed by zeroing every other rfft bin) per band; the last two
    only over the (window, channel) pairs whose target has energy in the band (> 1e-8 of its
    total amplitude).
  """
  target, reconstruction, real = _check(target, reconstruction, channel_mask)
  c = target.shape[2]
  names = list(channel_names) if channel_names is not None else [f"ch{i}" for i in range(c)]
  if len(names) != c:
    raise ValueError(f"channel_names has {len(names)} names for {c} channels")
  per_window = {
      "pcc": pearson(target, reconstruction),
      "mae": np.mean(np.abs(reconstruction - target), axis=1),
      "mse": np.mean(np.square(reconstruction - target), axis=1),
  }
  amplitude, phase, weight = spectral_errors(target, reconstruction)
  per_window["amplitude_error"] = amplitude.mean(axis=1)
  per_window["phase_error"] = _weighted_phase(phase, weight)
  out = {}
  for key, values in per_window.items():
    out[key] = _mean(values, real)
    for i, name in enumerate(names):
      if real[:, i].any():  # a channel absent from every window has no score, not NaN
        out[f"{key}/{name}"] = _mean(values[:, i], real[:, i])
  frequencies = np.fft.rfftfreq(target.shape[1], 1.0 / sample_rate)
  st, sp = spectrum(target), spectrum(reconstruction)
  for band, (low, high) in (BANDS if bands is None else bands).items():
    bins = (frequencies >= low) & (frequencies < high)
    if not bins.any():
      continue
    out[f"amplitude_error/{band}"] = _mean(amplitude[:, bins].mean(axis=1), real)
    # Only (window, channel) pairs with energy in the band have a phase there to get wrong.
    energetic = weight[:, bins].sum(axis=1) > 1e-8 * weight.sum(axis=1)
    out[f"phase_error/{band}"] = _mean(_weighted_phase(phase[:, bins], weight[:, bins]),
                                       real & energetic)
    # Band-limited signals: inverse transform of the spectra with other bins zeroed.
    keep = bins[None, :, None]
    band_t = np.fft.irfft(np.where(keep, st, 0), n=target.shape[1], axis=1)
    band_p = np.fft.irfft(np.where(keep, sp, 0), n=target.shape[1], axis=1)
    out[f"pcc/{band}"] = _mean(pearson(band_t, band_p), real & energetic)
  return out
