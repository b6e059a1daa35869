"""Reconstruction errors by hand, with padding excluded."""

import numpy as np
import pytest

from vqlearn.evaluators import reconstruction_errors


def test_errors_by_hand_exclude_padding():
  target = np.array([[[1.0, 0.0], [2.0, 0.0], [np.nan, 5.0]],
                     [[0.0, 1.0], [0.0, 0.0], [0.0, 0.0]]])
  recon = np.array([[[0.0, 0.0], [2.0, 2.0], [9.0, 9.0]],
                    [[0.0, 3.0], [1.0, 0.0], [9.0, 9.0]]])
  mask = np.array([[1, 1, 0], [1, 1, 0]])
  # Real differences, channel 0: 1, 0, 0, -1; channel 1: 0, -2, -2, 0.
  out = reconstruction_errors(target, recon, mask, per_channel=True)
  assert out["mse"] == pytest.approx((1 + 1 + 4 + 4) / 8)
  assert out["mae"] == pytest.approx((1 + 1 + 2 + 2) / 8)
  assert out["mse_ch0"] == pytest.approx(2 / 4) and out["mse_ch1"] == pytest.approx(8 / 4)
  assert out["mae_ch0"] == pytest.approx(2 / 4) and out["mae_ch1"] == pytest.approx(4 / 4)
  assert set(reconstruction_errors(target, recon, mask)) == {"mse", "mae"}


def test_no_mask_means_every_sample_and_shapes_are_checked():
  rng = np.random.default_rng(0)
  a, b = rng.normal(size=(3, 4, 2)), rng.normal(size=(3, 4, 2))
  assert reconstruction_errors(a, b)["mse"] == pytest.approx(np.mean((a - b) ** 2))
  with pytest.raises(ValueError, match="mask"):
    reconstruction_errors(a, b, np.ones((3, 5)))
  with pytest.raises(ValueError, match="reconstruction"):
    reconstruction_errors(a, b[:, :3])
