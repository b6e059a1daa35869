"""EEG reconstruction metrics against hand-derived values."""

import numpy as np
import pytest

from vqlearn.evaluators import eeg

RATE = 128.0


def sines(shift=0.0, n=3, length=128):
  """(n, T, 2): a 10 Hz (alpha) sine and a 20 Hz (beta) sine, on exact rfft bins of 1 s."""
  t = np.arange(length) / RATE
  x = np.stack([np.sin(2 * np.pi * 10 * t + shift), np.sin(2 * np.pi * 20 * t + shift)], -1)
  return np.broadcast_to(x, (n, length, 2)).copy()


def test_pearson_matches_numpy():
  rng = np.random.default_rng(0)
  a, b = rng.normal(size=(4, 50, 3)), rng.normal(size=(4, 50, 3))
  b[..., 0] += a[..., 0]
  expected = [[np.corrcoef(a[i, :, c], b[i, :, c])[0, 1] for c in range(3)] for i in range(4)]
  np.testing.assert_allclose(eeg.pearson(a, b), expected, rtol=1e-12)
  assert (eeg.pearson(a, np.ones_like(a)) == 0).all()  # constant side: 0, not NaN


def test_perfect_scaled_and_phase_shifted_reconstructions():
  x = sines()
  perfect = eeg.signal_metrics(x, x, sample_rate=RATE, channel_names=["Oz", "Cz"])
  for key in ("mae", "mse", "amplitude_error", "phase_error", "mse/Oz", "phase_error/alpha"):
    assert perfect[key] == pytest.approx(0.0, abs=1e-12)
  assert perfect["pcc"] == pytest.approx(1.0) and perfect["pcc/Cz"] == pytest.approx(1.0)
  doubled = eeg.signal_metrics(x, 2 * x, sample_rate=RATE)
  assert doubled["pcc"] == pytest.approx(1.0)
  assert doubled["mse"] == pytest.approx(np.mean(x ** 2))  # (2x - x)^2
  assert doubled["amplitude_error"] == pytest.approx(np.abs(eeg.spectrum(x)).mean())  # |2A - A|
  assert doubled["phase_error"] == pytest.approx(0.0, abs=1e-9)
  # A quarter-period shift: orthogonal over whole cycles, every bin's phase off by pi/2.
  shifted = eeg.signal_metrics(x, sines(np.pi / 2), sample_rate=RATE)
  assert shifted["pcc"] == pytest.approx(0.0, abs=1e-9)
  assert shifted["mse"] == pytest.approx(1.0)  # mean (sin - cos)^2 = 1
  assert shifted["amplitude_error"] == pytest.approx(0.0, abs=1e-9)
  assert shifted["phase_error/alpha"] == pytest.approx(np.pi / 2, abs=1e-6)
  assert shifted["pcc/alpha"] == pytest.approx(0.0, abs=1e-6)
  assert set(b for b in eeg.BANDS) <= {k.split("/")[1] for k in shifted if k.startswith("pcc/")}


def test_phase_error_is_wrapped():
  x = sines()
  flipped = eeg.signal_metrics(x, -x, sample_rate=RATE)
  assert flipped["pcc"] == pytest.approx(-1.0)
  assert flipped["phase_error"] == pytest.approx(np.pi)  # |angle(-1)| = pi, never 2 pi - ...
  # A shift of 3 pi / 2 is a distance of pi / 2.
  late = eeg.signal_metrics(x, sines(3 * np.pi / 2), sample_rate=RATE)
  assert late["phase_error/alpha"] == pytest.approx(np.pi / 2, abs=1e-6)


def test_masked_channels_do_not_count():
  x = sines()
  y = x.copy()
  y[1, :, 1] = np.nan  # a padded channel's reconstruction may hold anything
  mask = np.ones((3, 2))
  mask[1, 1] = 0
  got = eeg.signal_metrics(x, y, mask, sample_rate=RATE)
  assert got["mse"] == 0.0 and got["pcc"] == pytest.approx(1.0)
  assert got["mse/ch1"] == 0.0  # mean over the two windows where channel 1 is real


def test_shapes_are_checked():
  x = sines()
  with pytest.raises(ValueError, match=r"\(n, T, C\)"):
    eeg.signal_metrics(x, x[:, :10], sample_rate=RATE)
  with pytest.raises(ValueError, match="channel_mask"):
    eeg.signal_metrics(x, x, np.ones((3, 3)), sample_rate=RATE)
  with pytest.raises(ValueError, match="channel_names"):
    eeg.signal_metrics(x, x, sample_rate=RATE, channel_names=["a"])
