"""Shared helpers for the data tests: configs on a temporary data dir, synthetic files."""

from __future__ import annotations

import pathlib

import ml_collections
import numpy as np


def config(data_dir: pathlib.Path, **fields) -> ml_collections.ConfigDict:
  """A complete ``config.data`` (every field the plan lists) on ``data_dir``."""
  base = dict(name="files", train_path="", test_path="", window=0, stride=1,
              split_channels=False, normalize="none", validation_fraction=0.0,
              dir=str(data_dir))
  base.update(fields)
  return ml_collections.ConfigDict(base)


def synthetic(n: int, length: int, channels: int, seed: int = 0, min_length: int = 1):
  """Random float32 series (n, C, T), per-series lengths in [min_length, T], string labels."""
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n, channels, length)).astype(np.float32)
  lengths = rng.integers(min_length, length + 1, size=n)
  labels = np.asarray(["cat", "dog", "eel"])[np.arange(n) % 3]
  return x, lengths, labels


def write_npz(path: pathlib.Path, n=7, length=12, channels=2, seed=0, min_length=1):
  """Writes a synthetic NPZ file; returns (path, x (n, C, T), lengths, labels)."""
  x, lengths, labels = synthetic(n, length, channels, seed, min_length)
  np.savez(path, X=x, y=labels, lengths=lengths)
  return path, x, lengths, labels
