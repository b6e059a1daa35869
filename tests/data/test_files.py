"""Importer for the user's CSV/NPZ/.ts files: round trips, rebuilds on edit, clear errors."""

import numpy as np
import pytest

from tests.data.helpers import config, synthetic, write_npz
from vqlearn import data


def _check_round_trip(got, x, lengths, labels):
  """``got`` (a SeriesSet) holds x (n, C, T) cut at lengths, zero-padded, with these labels."""
  assert got.series.shape == (len(x), lengths.max(), x.shape[1])
  for i, length in enumerate(lengths):
    np.testing.assert_array_equal(got.series[i, :length], x[i, :, :length].T)
    assert not got.series[i, length:].any()
  np.testing.assert_array_equal(got.mask.sum(1), lengths)
  if labels is None:
    assert (got.labels == -1).all()
  else:
    assert [got.label_names[k] for k in got.labels] == list(labels)


def test_npz_round_trip_multivariate_variable_length(tmp_path):
  path, x, lengths, labels = write_npz(tmp_path / "train.npz")
  test_path, x2, lengths2, labels2 = write_npz(tmp_path / "test.npz", n=4, seed=1)
  cfg = config(tmp_path, train_path=str(path), test_path=str(test_path))
  _check_round_trip(data.load_split(cfg, "train"), x, lengths, labels)
  _check_round_trip(data.load_split(cfg, "test"), x2, lengths2, labels2)


def test_npz_two_dimensional_without_labels(tmp_path):
  x = np.random.default_rng(0).normal(size=(5, 9)).astype(np.float32)
  np.savez(tmp_path / "u.npz", X=x)
  got = data.load_split(config(tmp_path, train_path=str(tmp_path / "u.npz")), "train")
  _check_round_trip(got, x[:, None, :], np.full(5, 9), None)
  assert got.label_names == ()


def test_csv_round_trip_with_header_label_and_ragged_rows(tmp_path):
  x, lengths, labels = synthetic(6, 8, 1, seed=2)
  lines = ["t0,t1,label," + ",".join(f"t{k}" for k in range(2, 8))]
  for xi, length, label in zip(x[:, 0], lengths, labels):
    cells = [repr(float(v)) for v in xi[:length]] + [""] * (8 - length)
    lines.append(",".join(cells[:2] + [label] + cells[2:]))  # label column in the middle
  (tmp_path / "s.csv").write_text("\n".join(lines) + "\n")
  got = data.load_split(config(tmp_path, train_path=str(tmp_path / "s.csv")), "train")
  _check_round_trip(got, x, lengths, labels)


def test_csv_without_header_is_unlabelled(tmp_path):
  (tmp_path / "s.csv").write_text("1,2,3\n4,5\n\n6,7,8\n")
  got = data.load_split(config(tmp_path, train_path=str(tmp_path / "s.csv")), "train")
  np.testing.assert_array_equal(got.series[..., 0], [[1, 2, 3], [4, 5, 0], [6, 7, 8]])
  np.testing.assert_array_equal(got.labels, [-1, -1, -1])


def test_ts_round_trip_multivariate_unequal_length(tmp_path):
  x, lengths, labels = synthetic(5, 6, 2, seed=3)
  rows = [":".join(",".join(repr(float(v)) for v in xi[c, :length]) for c in range(2)) + f":{lab}"
          for xi, length, lab in zip(x, lengths, labels)]
  header = ["@problemName synthetic", "@timeStamps false", "@missing false",
            "@univariate false", "@dimensions 2", "@equalLength false",
            "@classLabel true cat dog eel", "@data"]
  (tmp_path / "s.ts").write_text("\n".join(header + rows) + "\n")
  got = data.load_split(config(tmp_path, train_path=str(tmp_path / "s.ts")), "train")
  _check_round_trip(got, x, lengths, labels)


def test_edited_file_is_prepared_again(tmp_path):
  path, x, _, _ = write_npz(tmp_path / "d.npz", min_length=12)
  cfg = config(tmp_path, train_path=str(path))
  first = data.load_split(cfg, "train")
  assert data.load_split(cfg, "train").series.tobytes() == first.series.tobytes()  # cached
  np.savez(path, X=x + 1.0)
  second = data.load_split(cfg, "train")
  np.testing.assert_allclose(second.series, first.series + 1.0)
  assert len(list((tmp_path / "user_files").glob("d_*"))) == 2


def _npz(tmp_path, **arrays):
  np.savez(tmp_path / "bad.npz", **arrays)
  return str(tmp_path / "bad.npz")


def _file(tmp_path, name, text):
  (tmp_path / name).write_text(text)
  return str(tmp_path / name)


X = np.zeros((3, 4), np.float32)
BAD_FILES = {
    "unknown_suffix": (lambda p: _file(p, "d.txt", "1,2\n"), ValueError, r"unknown suffix '.txt'"),
    "npz_no_X": (lambda p: _npz(p, Y=X), ValueError, r"needs key 'X'.*\['Y'\]"),
    "npz_rank": (lambda p: _npz(p, X=np.zeros((2, 1, 3, 4))), ValueError,
                 r"key 'X' must be .*\(n, T\) or \(n, C, T\), got .*\(2, 1, 3, 4\)"),
    "npz_y_shape": (lambda p: _npz(p, X=X, y=np.zeros((3, 1))), ValueError,
                    r"key 'y' must have shape \(n,\) = \(3,\)"),
    "npz_lengths": (lambda p: _npz(p, X=X, lengths=np.array([1, 5, 2])), ValueError,
                    r"key 'lengths' must lie in \[1, T\] = \[1, 4\]"),
    "npz_nan": (lambda p: _npz(p, X=np.where(np.arange(12).reshape(3, 4) == 9, np.nan, 0.0)),
                ValueError, r"bad.npz: series 2 contains NaN or inf .*time step 1"),
    "npz_inf_beyond_float32": (lambda p: _npz(p, X=np.full((2, 3), 1e300)), ValueError,
                               r"series 0 contains NaN or inf"),
    "csv_inf": (lambda p: _file(p, "d.csv", "1,2\n3,inf\n"), ValueError,
                r"d.csv: series 1 contains NaN or inf"),
    "csv_hole": (lambda p: _file(p, "d.csv", "1,,3\n"), ValueError,
                 r"line 1, value 2 is empty inside the series"),
    "csv_text": (lambda p: _file(p, "d.csv", "label,a,b\nx,1,b2\n"), ValueError,
                 r"line 2, value 2 is 'b2', not a number"),
    "csv_no_label": (lambda p: _file(p, "d.csv", "label,a\n,1\n"), ValueError,
                     r"line 2 has no value in the 'label' column"),
    "ts_missing_value": (lambda p: _file(p, "d.ts", "@problemName x\n@missing true\n"
                                         "@univariate true\n@equalLength true\n@seriesLength 3\n"
                                         "@classLabel true a\n@data\n1,?,3:a\n"), ValueError,
                         r"d.ts: series 0 contains NaN"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_file_gives_a_clear_error(tmp_path, case):
  make, error, message = BAD_FILES[case]
  with pytest.raises(error, match=message):
    data.load_split(config(tmp_path, train_path=make(tmp_path)), "train")
  assert not (tmp_path / "user_files").exists() or not any(
      (tmp_path / "user_files").rglob("dataset_info.json"))


def test_missing_files_and_splits_are_named(tmp_path):
  with pytest.raises(FileNotFoundError, match=r"config.data.train_path = '.*nope.csv'"):
    data.load_split(config(tmp_path, train_path=str(tmp_path / "nope.csv")), "train")
  path, *_ = write_npz(tmp_path / "d.npz")
  with pytest.raises(FileNotFoundError, match=r"config.data.test_path = '.*gone.ts'"):
    data.load_split(config(tmp_path, train_path=str(path), test_path="gone.ts"), "train")
  with pytest.raises(ValueError, match="config.data.train_path must name"):
    data.load_split(config(tmp_path), "train")
  with pytest.raises(ValueError, match="config.data.test_path"):
    data.load_split(config(tmp_path, train_path=str(path)), "test")
  other, *_ = write_npz(tmp_path / "e.npz", channels=3)
  with pytest.raises(ValueError, match="has 3 channels but config.data.train_path"):
    data.load_split(config(tmp_path, train_path=str(path), test_path=str(other)), "test")
