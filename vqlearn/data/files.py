"""Importer for the user's own time series: CSV, NPZ and .ts files, through a TFDS builder.

``config.data.name = "files"`` with ``train_path`` (and optionally ``test_path``) pointing at:

- CSV: one univariate series per row. An optional header row (any non-numeric cell makes the
  first row a header); a header column named ``label`` holds the class. Series of different
  lengths end in empty cells.
- NPZ: key ``X`` of shape (n, T) or (n, C, T); optional ``y`` (n,) class labels; optional
  ``lengths`` (n,) integers, the real length of each series (samples after it are ignored).
- .ts: the UCR/UEA text format, read with aeon's ``load_from_ts_file``.

The files are checked before anything is written, with errors that name the file and what is
wrong. The builder's config name is a content hash of the files, so editing a file prepares a
new dataset rather than reusing a stale one.
"""

from __future__ import annotations

import csv
import hashlib
import pathlib
import re
from typing import Sequence

import numpy as np
import tensorflow_datasets as tfds

from vqlearn.data import storage

SUFFIXES = (".csv", ".npz", ".ts")

Parsed = tuple[list[np.ndarray], list[str] | None]  # float32 (T_i, C) series, labels or None


def _is_number(cell: str) -> bool:
  try:
    float(cell)
    return True
  except ValueError:
    return False


def read_csv(path: pathlib.Path) -> Parsed:
  """One univariate series per row; see the module docstring for the format."""
  with open(path, newline="", encoding="utf-8-sig") as f:
    rows = [(line, [cell.strip() for cell in row])
            for line, row in enumerate(csv.reader(f), start=1)]
  rows = [(line, row) for line, row in rows if any(row)]  # blank lines separate nothing
  if not rows:
    raise ValueError(f"{path}: the CSV file has no rows")
  label_column = None
  if any(cell and not _is_number(cell) for cell in rows[0][1]):
    header = [cell.lower() for cell in rows[0][1]]
    if header.count("label") > 1:
      raise ValueError(f"{path}: the header names more than one 'label' column")
    label_column = header.index("label") if "label" in header else None
    rows = rows[1:]
  series, labels = [], []
  for line, row in rows:
    if label_column is not None:
      label = row[label_column] if label_column < len(row) else ""
      if not label:
        raise ValueError(f"{path}: line {line} has no value in the 'label' column")
      labels.append(label)
      row = row[:label_column] + row[label_column + 1:]
    while row and not row[-1]:  # variable length: trailing empty cells
      row = row[:-1]
    values = []
    for column, cell in enumerate(row, start=1):
      if not cell:
        raise ValueError(f"{path}: line {line}, value {column} is empty inside the series "
                         f"(only trailing cells may be empty)")
      if not _is_number(cell):
        raise ValueError(f"{path}: line {line}, value {column} is {cell!r}, not a number")
      values.append(float(cell))
    with np.errstate(over="ignore"):  # beyond float32 becomes inf, rejected by check_series
      series.append(np.asarray(values, np.float32)[:, None])
  return series, (labels if label_column is not None else None)


def read_npz(path: pathlib.Path) -> Parsed:
  """Keys ``X`` (n, T) or (n, C, T), optional ``y`` (n,) and ``lengths`` (n,)."""
  with np.load(path, allow_pickle=False) as z:
    if "X" not in z.files:
      raise ValueError(f"{path}: the NPZ file needs key 'X' of shape (n, T) or (n, C, T); "
                       f"found keys {sorted(z.files)}")
    arrays = {}
    for key in ("X", "y", "lengths"):
      if key in z.files:
        try:
          arrays[key] = z[key]
        except ValueError as e:  # object arrays need pickle, which we never allow
          raise ValueError(f"{path}: key {key!r} must be a plain numeric or string array "
                           f"({e})") from e
  x = arrays["X"]
  if x.ndim not in (2, 3) or not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
    raise ValueError(f"{path}: key 'X' must be a numeric array of shape (n, T) or (n, C, T), "
                     f"got {x.dtype} of shape {x.shape}")
  with np.errstate(over="ignore"):  # values beyond float32 become inf and are rejected later
    x = (x[:, :, None] if x.ndim == 2 else np.swapaxes(x, 1, 2)).astype(np.float32)
  n, t = x.shape[:2]
  labels = None
  if "y" in arrays:
    y = arrays["y"]
    if y.shape != (n,):
      raise ValueError(f"{path}: key 'y' must have shape (n,) = ({n},) to match 'X', "
                       f"got {y.shape}")
    labels = [str(v) for v in y.tolist()]
  lengths = np.full((n,), t)
  if "lengths" in arrays:
    lengths = arrays["lengths"]
    if lengths.shape != (n,) or not np.issubdtype(lengths.dtype, np.integer):
      raise ValueError(f"{path}: key 'lengths' must be integers of shape (n,) = ({n},), "
                       f"got {lengths.dtype} of shape {lengths.shape}")
    if lengths.size and (lengths.min() < 1 or lengths.max() > t):
      raise ValueError(f"{path}: key 'lengths' must lie in [1, T] = [1, {t}], got values "
                       f"from {lengths.min()} to {lengths.max()}")
  return [x[i, :int(lengths[i])] for i in range(n)], labels


def read_ts(path: pathlib.Path) -> Parsed:
  """The UCR/UEA .ts format via aeon; missing values ('?') become NaN and are then rejected."""
  from aeon.datasets import load_from_ts_file  # slow import, only when importing .ts files

  try:
    x, y = load_from_ts_file(str(path))
  except Exception as e:  # aeon raises several types for malformed files
    raise ValueError(f"{path}: could not read it as a .ts file: {e}") from e
  series = [np.asarray(s, np.float32).T for s in x]  # (C, T_i) -> (T_i, C)
  labels = [str(v) for v in np.asarray(y).tolist()] if len(y) else None
  return series, labels


_READERS = {".csv": read_csv, ".npz": read_npz, ".ts": read_ts}


def check_path(path: str, field: str) -> pathlib.Path:
  """The file ``field`` names, checked to exist and to have a known suffix."""
  p = pathlib.Path(path).expanduser()
  if not p.is_file():
    raise FileNotFoundError(f"{field} = {path!r}: no such file")
  if p.suffix.lower() not in SUFFIXES:
    raise ValueError(f"{field} = {path!r}: unknown suffix {p.suffix!r}; expected one of "
                     f"{', '.join(SUFFIXES)}")
  return p


def read_file(path: pathlib.Path) -> Parsed:
  """Reads and checks one file (finite values, consistent channels, labels per series)."""
  series, labels = _READERS[path.suffix.lower()](path)
  storage.check_series(series, str(path))
  return series, labels


def content_name(paths: Sequence[pathlib.Path | None]) -> str:
  """A builder config name that changes whenever any file's content or format changes."""
  digest = hashlib.sha256()
  for role, path in zip(storage.SPLITS, paths):
    digest.update(role.encode() + b"\0")
    if path is not None:
      digest.update(path.suffix.lower().encode() + b"\0" + path.read_bytes())
  stem = re.sub(r"[^A-Za-z0-9]+", "_", paths[0].stem).strip("_")[:40] or "files"
  return f"{stem}_{digest.hexdigest()[:16]}"


class UserFiles(storage.SeriesBuilder, skip_registration=True):
  """The user's files; one config per content hash, made by ``builder`` (not registered)."""

  name = "user_files"
  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "float32 (T, C) series, class index, series id."}
  # Configs made by `builder`, by name: known configs keep TFDS from warning about "custom"
  # ones each time a builder is constructed.
  _CONFIGS: dict[str, tfds.core.BuilderConfig] = {}

  @classmethod
  def get_builder_config(cls, name, version=None):
    del version
    return cls._CONFIGS.get(name)

  def __init__(self, *, parsed: dict[str, Parsed] | None = None, **kwargs):
    self._parsed = parsed
    super().__init__(**kwargs)

  def _load_splits(self):
    if self._parsed is None:
      raise RuntimeError("UserFiles is prepared through vqlearn.data.files.builder")
    return self._parsed


def builder(train_path: str, test_path: str, data_dir: str) -> tfds.core.DatasetBuilder:
  """The prepared builder over the user's files, checking and preparing them on first use.

  Args:
    train_path: ``config.data.train_path`` (required).
    test_path: ``config.data.test_path``; "" means no test split.
    data_dir: the prepared-data cache.

  Returns:
    A builder with a "train" split and, when ``test_path`` is set, a "test" split.
  """
  if not train_path:
    raise ValueError("config.data.train_path must name a CSV, NPZ or .ts file when "
                     "config.data.name is 'files'")
  train = check_path(train_path, "config.data.train_path")
  test = check_path(test_path, "config.data.test_path") if test_path else None
  name = content_name([train, test])
  UserFiles._CONFIGS.setdefault(name, tfds.core.BuilderConfig(  # pylint: disable=protected-access
      name=name,
      description=f"train: {train.absolute()}; test: {test.absolute() if test else 'none'}"))
  make = lambda parsed=None: UserFiles(config=name, data_dir=data_dir, parsed=parsed)
  if storage.is_prepared(make()):
    return make()
  # Everything is read and checked here, before the (locked) preparation writes anything.
  parsed = {"train": read_file(train)}
  if test is not None:
    parsed["test"] = read_file(test)
    c_train, c_test = parsed["train"][0][0].shape[1], parsed["test"][0][0].shape[1]
    if c_train != c_test:
      raise ValueError(f"config.data.test_path = {test_path!r} has {c_test} channels but "
                       f"config.data.train_path = {train_path!r} has {c_train}")
  return storage.prepare(lambda: make(parsed))
