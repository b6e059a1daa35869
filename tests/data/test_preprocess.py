"""Normalisation, windows, masks, channel splitting, validation split and config checks."""

import numpy as np
import pytest
import scipy.stats

from tests.data.helpers import config, write_npz
from vqlearn import data
from vqlearn.data import preprocess


def _set(lengths, channels=1, seed=0):
  """A SeriesSet of random rows with these lengths; series_index 100 + row."""
  series = [np.random.default_rng(seed + i).normal(size=(n, channels)).astype(np.float32)
            for i, n in enumerate(lengths)]
  padded, mask = preprocess.pad(series)
  n = len(lengths)
  return preprocess.SeriesSet(padded, mask, np.arange(n, dtype=np.int32) % 2, ("a", "b"),
                              100 + np.arange(n, dtype=np.int32), "synthetic"), series


def test_windows_by_hand():
  s, raw = _set([10, 3])
  w = data.windows(s, 4, 3)
  # Row 0 (length 10): starts 0, 3, 6 (9 + 4 > 10). Row 1 (length 3 < 4): one padded window.
  assert w.series.shape == (4, 4, 1)
  for k, start in enumerate([0, 3, 6]):
    np.testing.assert_array_equal(w.series[k], raw[0][start:start + 4])
  np.testing.assert_array_equal(w.series[3, :3], raw[1])
  np.testing.assert_array_equal(w.mask, [[1, 1, 1, 1]] * 3 + [[1, 1, 1, 0]])
  assert w.series[3, 3, 0] == 0.0
  np.testing.assert_array_equal(w.series_index, [100, 100, 100, 101])
  np.testing.assert_array_equal(w.labels, [0, 0, 0, 1])


def test_windows_never_start_in_padding_and_round_up_to_pad_multiple():
  lengths = np.random.default_rng(1).integers(1, 30, size=20)
  s, raw = _set(lengths, channels=2)
  w = data.windows(s, 5, 2, pad_multiple=4)
  assert w.series.shape[1:] == (8, 2)
  assert (w.mask[:, 0] == 1).all() and not w.mask[:, 5:].any()
  assert not w.series[w.mask == 0].any()
  # Count per row: (L - 5) // 2 + 1 windows when L >= 5, else one.
  expected = np.where(lengths >= 5, (lengths - 5) // 2 + 1, 1)
  np.testing.assert_array_equal(np.bincount(w.series_index - 100, minlength=20), expected)
  # Each window is a contiguous slice of its row.
  starts = np.concatenate([np.arange(c) * 2 for c in expected])
  for k in range(len(starts)):
    row, length = w.series_index[k] - 100, int(w.mask[k].sum())
    np.testing.assert_array_equal(w.series[k, :length], raw[row][starts[k]:starts[k] + length])


def test_window_zero_keeps_whole_rows_padded_to_the_multiple():
  s, _ = _set([7, 2])
  w = data.windows(s, 0, 1, pad_multiple=4)
  assert w.series.shape == (2, 8, 1)
  np.testing.assert_array_equal(w.series[:, :7], s.series)
  np.testing.assert_array_equal(w.mask.sum(1), [7, 2])


@pytest.mark.filterwarnings("ignore:Precision loss")  # scipy on the constant channel
def test_zscore_matches_scipy_on_real_samples_and_keeps_padding_zero(tmp_path):
  path, x, lengths, _ = write_npz(tmp_path / "d.npz", n=5, length=9, min_length=2)
  x[4, 1, :] = 3.0  # a constant channel normalises to zeros, not NaN
  np.savez(path, X=x, lengths=lengths)
  got = data.load_split(config(tmp_path, train_path=str(path), normalize="zscore"), "train")
  for i, length in enumerate(lengths):
    expected = scipy.stats.zscore(x[i, :, :length].astype(np.float64), axis=1).T
    if i == 4:
      expected[:, 1] = 0.0
    np.testing.assert_allclose(got.series[i, :length], expected, rtol=1e-5, atol=1e-6)
    assert not got.series[i, length:].any()
  assert np.isfinite(got.series).all()


def test_split_channels_and_pad_multiple(tmp_path):
  path, x, lengths, labels = write_npz(tmp_path / "d.npz", n=3, length=6, channels=2)
  got = data.load_split(config(tmp_path, train_path=str(path), split_channels=True), "train",
                        pad_multiple=4)
  assert got.series.shape == (6, 8, 1)
  np.testing.assert_array_equal(got.series_index, [0, 0, 1, 1, 2, 2])
  for row in range(6):
    i, c = divmod(row, 2)
    np.testing.assert_array_equal(got.series[row, :lengths[i], 0], x[i, c, :lengths[i]])
    assert got.label_names[got.labels[row]] == labels[i]


def test_stratified_split_holds_out_each_class_in_proportion():
  labels = np.repeat([0, 1, 2, -1], [10, 20, 1, 5])
  kept, held = preprocess.stratified_split(labels, 0.3, seed=0)
  assert np.array_equal(np.sort(np.concatenate([kept, held])), np.arange(36))
  assert len(held) == round(0.3 * 36)
  counts = {c: int(np.sum(labels[held] == c)) for c in (0, 1, 2, -1)}
  assert counts[0] in (3, 4) and counts[1] == 6 and counts[2] == 0 and counts[-1] in (1, 2)
  again = preprocess.stratified_split(labels, 0.3, seed=0)
  np.testing.assert_array_equal(held, again[1])


def test_validation_is_carved_from_train_with_a_fixed_seed(tmp_path):
  path, *_ = write_npz(tmp_path / "d.npz", n=12)
  cfg = config(tmp_path, train_path=str(path), validation_fraction=0.25)
  train, val = data.load_split(cfg, "train"), data.load_split(cfg, "validation")
  assert len(val.series_index) == 3 and len(train.series_index) == 9
  assert sorted(np.concatenate([train.series_index, val.series_index])) == list(range(12))
  assert sorted(val.labels.tolist()) == [0, 1, 2]  # one of each of the three classes
  np.testing.assert_array_equal(data.load_split(cfg, "validation").series_index,
                                val.series_index)


BAD_CONFIGS = {
    "window": (dict(window=-1), "config.data.window must be an integer >= 0"),
    "stride": (dict(stride=0), "config.data.stride must be an integer >= 1"),
    "stride_float": (dict(stride=1.5), "config.data.stride must be an integer"),
    "normalize": (dict(normalize="minmax"), r"config.data.normalize must be one of \('none'"),
    "fraction": (dict(validation_fraction=1.0), "config.data.validation_fraction must be"),
    "split_channels": (dict(split_channels="yes"), "config.data.split_channels must be"),
    "unknown_name": (dict(name="Nope"), "unknown dataset 'Nope'; bundled: GunPoint, ArrowHead"),
    "unknown_in_mixture": (dict(name="GunPoint+files"), "unknown dataset 'files'"),
    "repeat_in_mixture": (dict(name="GunPoint+GunPoint"), "without repeats"),
    "empty_name": (dict(name=""), "config.data.name must be a bundled dataset"),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_bad_config_names_the_field(tmp_path, case):
  fields, message = BAD_CONFIGS[case]
  with pytest.raises(ValueError, match=message):
    data.load_split(config(tmp_path, **fields), "train")
  assert not (tmp_path / "ucr_uea").exists()  # checked before anything is prepared


def test_bad_split_and_arguments(tmp_path):
  path, *_ = write_npz(tmp_path / "d.npz")
  cfg = config(tmp_path, train_path=str(path))
  with pytest.raises(ValueError, match=r"split must be one of \('train', 'validation', 'test'\)"):
    data.load_split(cfg, "valid")
  with pytest.raises(ValueError, match="config.data.validation_fraction > 0"):
    data.load_split(cfg, "validation")
  s = data.load_split(cfg, "train")
  with pytest.raises(ValueError, match="stride must be an integer >= 1"):
    data.windows(s, 4, 0)
  with pytest.raises(ValueError, match="pad_multiple must be an integer >= 1"):
    data.load_split(cfg, "train", pad_multiple=0)
