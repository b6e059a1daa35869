"""The UCR/UEA classification sets that aeon ships, as one TFDS builder with a config per set.

aeon 1.6.0 bundles these sets in its wheel, so they load offline (shared/DATA.md); any other
name would make aeon try to download. Values are stored as float32 (aeon returns float64),
channels last, one example per series, in aeon's order; labels are indices into the sorted
class names, which are kept in the dataset's metadata.
"""

from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

from vqlearn.data import storage

# name: what aeon ships (shared/DATA.md); the text becomes the config's description.
_SETS = {
    "GunPoint": "2 classes, 50+150 univariate series of length 150",
    "ArrowHead": "3 classes, 36+175 univariate series of length 251",
    "BasicMotions": "4 classes, 40+40 series of 6 channels, length 100",
    "ItalyPowerDemand": "2 classes, 67+1029 univariate series of length 24",
    "JapaneseVowels": "9 classes, 270+370 series of 12 channels, lengths 7 to 29",
    "OSULeaf": "6 classes, 200+242 univariate series of length 427",
    "ACSF1": "10 classes, 100+100 univariate series of length 1460",
    "PickupGestureWiimoteZ": "10 classes, 50+50 univariate series, lengths 29 to 361",
}
BUNDLED: tuple[str, ...] = tuple(_SETS)


def load_aeon(name: str, split: str) -> tuple[list[np.ndarray], np.ndarray]:
  """One split of a bundled set as aeon returns it, channels last.

  Args:
    name: one of ``BUNDLED``.
    split: "train" or "test".

  Returns:
    (series, labels): float64 (T_i, C) arrays and aeon's string labels.
  """
  if name not in _SETS:  # aeon would try to download anything else
    raise ValueError(f"unknown bundled dataset {name!r}; bundled: {', '.join(BUNDLED)}")
  from aeon.datasets import load_classification  # slow import, only when preparing

  x, y = load_classification(name, split=split)
  # Equal-length sets come as one (n, C, T) array, variable-length ones as a list of (C, T_i).
  return [np.asarray(s).T for s in x], np.asarray(y)


class UcrUea(storage.SeriesBuilder):
  """UCR/UEA sets bundled with aeon; ``config`` is the set's name (e.g. "GunPoint").

  Bump ``VERSION`` whenever what is written changes: a new version is prepared into a new
  directory next to the old one.
  """

  name = "ucr_uea"
  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "float32 (T, C) series, class index, series id."}
  BUILDER_CONFIGS = [tfds.core.BuilderConfig(name=n, description=d) for n, d in _SETS.items()]

  def _load_splits(self):
    name = self.builder_config.name
    splits = {}
    for split in storage.SPLITS:
      series, labels = load_aeon(name, split)
      series = [x.astype(np.float32) for x in series]
      storage.check_series(series, f"bundled dataset {name} ({split} split)")
      splits[split] = (series, labels)
    return splits


def builder(name: str, data_dir: str) -> tfds.core.DatasetBuilder:
  """The prepared builder of a bundled set, preparing it on first use.

  Args:
    name: one of ``BUNDLED``.
    data_dir: the prepared-data cache (``storage.resolve_data_dir``).

  Returns:
    A builder whose ``as_data_source`` reads the set.
  """
  if name not in _SETS:
    raise ValueError(f"unknown bundled dataset {name!r}; bundled: {', '.join(BUNDLED)}")
  return storage.prepare(lambda: UcrUea(config=name, data_dir=data_dir))
