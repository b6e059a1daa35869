"""Tests for vqlearn.train.plots: valid PNGs written atomically, padding never drawn."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import scipy.stats

from vqlearn.train import plots, writers


def _read_png(path):
  import matplotlib.image
  with open(path, "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  image = matplotlib.image.imread(path)
  assert image.ndim == 3 and image.shape[2] == 4 and min(image.shape[:2]) >= 100
  return image


def _series(rng, n=5, t=24, c=3):
  inputs = rng.normal(size=(n, t, c)).astype(np.float32)
  lengths = np.array([t, 17, 9, 0, t])[:n]  # Padding at the end; series 3 is all padding.
  mask = (np.arange(t)[None] < lengths[:, None]).astype(np.float32)
  inputs *= mask[..., None]
  reconstructions = (inputs + 0.1 * rng.normal(size=inputs.shape)) * mask[..., None]
  return inputs, reconstructions, mask


def test_reconstructions_png_and_padding_is_not_drawn(tmp_path):
  inputs, reconstructions, mask = _series(np.random.default_rng(0))
  path = plots.plot_reconstructions(tmp_path / "a.png", inputs, reconstructions, mask,
                                    max_series=4, title="GunPoint")
  assert path == os.fspath(tmp_path / "a.png")
  clean = _read_png(path)
  assert os.listdir(tmp_path) == ["a.png"]  # No temporary file left behind.

  # Whatever sits in the padding, the picture is the same.
  junk = np.where(mask[..., None] > 0, 0.0, 1e6).astype(np.float32)
  plots.plot_reconstructions(tmp_path / "b.png", inputs + junk, reconstructions - junk, mask,
                             max_series=4, title="GunPoint")
  np.testing.assert_array_equal(_read_png(tmp_path / "b.png"), clean)


def test_reconstructions_shape_errors(tmp_path):
  inputs, reconstructions, mask = _series(np.random.default_rng(0))
  with pytest.raises(ValueError, match="inputs"):
    plots.plot_reconstructions(tmp_path / "x.png", inputs[0], reconstructions[0], mask[0])
  with pytest.raises(ValueError, match="reconstructions"):
    plots.plot_reconstructions(tmp_path / "x.png", inputs, reconstructions[:, :-1], mask)
  with pytest.raises(ValueError, match="mask"):
    plots.plot_reconstructions(tmp_path / "x.png", inputs, reconstructions, mask[:, :-1])
  assert not os.listdir(tmp_path)


def test_code_usage(tmp_path):
  counts = np.array([[0, 5, 1, 0, 9, 2, 0, 3], [1, 1, 1, 1, 1, 1, 1, 1]])
  _read_png(plots.plot_code_usage(tmp_path / "usage.png", counts))
  _read_png(plots.plot_code_usage(tmp_path / "one.png", counts[0]))  # (V,): one symbol.
  _read_png(plots.plot_code_usage(tmp_path / "none.png", np.zeros((2, 8))))
  with pytest.raises(ValueError, match="counts"):
    plots.plot_code_usage(tmp_path / "bad.png", -counts)
  for row in counts:
    assert math.isclose(plots._perplexity(row / row.sum()),
                        math.exp(scipy.stats.entropy(row)), rel_tol=1e-12)


def test_curves_from_metrics(tmp_path):
  with writers.MetricWriter(tmp_path / "run") as writer:
    for step in range(1, 30):
      writer.write(step, "train", {"loss": 1.0 / step, "perplexity": float(step)})
      if step % 10 == 0:
        writer.write(step, "eval", {"perplexity": math.nan if step == 20 else 5.0})
  records = writers.read_metrics(tmp_path / "run")
  keys = ["train/loss", "train/perplexity", "eval/perplexity", "eval/missing"]
  _read_png(plots.plot_curves(tmp_path / "curves.png", records, keys, title="run"))
  _read_png(plots.plot_curves(tmp_path / "nothing.png", records, ["eval/missing"]))
  _read_png(plots.plot_curves(tmp_path / "no_keys.png", records, []))
  _read_png(plots.plot_curves(tmp_path / "no_records.png", [], "train/loss"))


def test_png_is_replaced_atomically(tmp_path):
  path = tmp_path / "plots" / "curves.png"  # The directory is created.
  records = [{"step": s, "kind": "train", "time": 0.0, "loss": float(s)} for s in range(3)]
  plots.plot_curves(path, records, ["train/loss"])
  first = path.read_bytes()
  plots.plot_curves(path, records, ["train/loss", "train/missing"], title="again")
  assert path.read_bytes() != first
  assert os.listdir(path.parent) == ["curves.png"]
  _read_png(path)
