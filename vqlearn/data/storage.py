"""Prepared-data storage: the shared TFDS builder, the data directory, safe preparation, reads.

Every dataset (a bundled UCR/UEA set or the user's own files) is a TFDS builder that writes
array_record files once and is read back through ``builder.as_data_source()``; TensorFlow is
not needed for either (shared/DATA.md). Layout under the data directory:

    <data_dir>/<builder name>/<config name>/<version>/
        dataset_info.json features.json metadata.json        (label names live in metadata)
        <builder>-train.array_record-00000-of-00001 and -test...
    <data_dir>/<builder name>/<config name>/.<version>.lock   (serialises preparation)

Each example is ``{'series': float32 (T, C), 'label': int32 (-1 = unlabelled), 'series_id':
int32 (position in the source split)}``. Preparation holds an exclusive ``fcntl`` lock, so
pytest-xdist workers or the processes of a multi-host job that prepare the same set at once
build it once; TFDS writes into an ``incomplete.*`` directory and renames it when done, so a
crashed preparation never leaves a dataset that later loads.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pathlib
import re
import shutil
from typing import Callable, Iterator, NamedTuple, Sequence

import numpy as np
import tensorflow_datasets as tfds

ENV_DATA_DIR = "VQLEARN_DATA_DIR"
DEFAULT_DATA_DIR = "~/.cache/vqlearn/tfds"
SPLITS = ("train", "test")


def resolve_data_dir(configured: str = "") -> pathlib.Path:
  """The prepared-data cache: ``configured``, else ``$VQLEARN_DATA_DIR``, else the default.

  Args:
    configured: ``config.data.dir``; empty means "not set".

  Returns:
    An absolute path (not created here).
  """
  path = configured or os.environ.get(ENV_DATA_DIR, "") or DEFAULT_DATA_DIR
  return pathlib.Path(path).expanduser().absolute()


class RawSplit(NamedTuple):
  """One split as stored: unpadded series, before any preprocessing.

  Attributes:
    series: one float32 (T_i, C) array per series.
    labels: int32 (n,), index into ``label_names``; -1 when unlabelled.
    series_id: int32 (n,), position of each series in its source split.
    label_names: class names, shared by the train and test splits.
  """
  series: list[np.ndarray]
  labels: np.ndarray
  series_id: np.ndarray
  label_names: tuple[str, ...]


def check_series(series: Sequence[np.ndarray], where: str) -> None:
  """Raises a ValueError naming ``where`` and the series index of a bad series.

  Args:
    series: (T_i, C) arrays.
    where: what to call the source in the message (dataset and split, or a file).
  """
  if not series:
    raise ValueError(f"{where}: contains no series")
  channels = series[0].shape[1]
  for i, x in enumerate(series):
    if x.ndim != 2 or x.shape[0] == 0:
      raise ValueError(f"{where}: series {i} is empty (shape {x.shape})")
    if x.shape[1] != channels:
      raise ValueError(f"{where}: series {i} has {x.shape[1]} channels, series 0 has {channels}")
    bad = ~np.isfinite(x)
    if bad.any():
      t, c = np.argwhere(bad)[0]
      raise ValueError(f"{where}: series {i} contains NaN or inf values (first at time step "
                       f"{t}, channel {c}); clean or drop it before training")


def label_names_of(values: Sequence[str]) -> tuple[str, ...]:
  """Sorted distinct class names; numerically when every name is a number ('2' before '10')."""
  names = sorted(set(str(v) for v in values))
  try:
    return tuple(sorted(names, key=float))
  except ValueError:
    return tuple(names)


def encode_labels(values: Sequence[str] | None, n: int,
                  label_names: tuple[str, ...]) -> np.ndarray:
  """Class indices into ``label_names`` (int32), or all -1 when ``values`` is None."""
  if values is None:
    return np.full((n,), -1, np.int32)
  index = {name: i for i, name in enumerate(label_names)}
  return np.asarray([index[str(v)] for v in values], np.int32)


class SeriesBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Shared TFDS builder: features, metadata, and the generator over already-checked series.

  Subclasses implement ``_load_splits()`` returning ``{split: (series, labels)}`` where series
  are float32 (T_i, C) arrays that passed ``check_series`` and labels are strings or None.
  """

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> None:
    # TFDS looks for download checksums next to a packaged builder's code through the
    # `importlib_resources` backport, which it does not install. Nothing here is downloaded.
    return None

  def _info(self) -> tfds.core.DatasetInfo:
    # DatasetInfo is built directly: `dataset_info_from_configs` needs a package (DATA.md).
    # Two unknown dimensions need an explicit encoding; "bytes" keeps float32 exact.
    return tfds.core.DatasetInfo(
        builder=self,
        description=getattr(self.builder_config, "description", None) or "",
        features=tfds.features.FeaturesDict({
            "series": tfds.features.Tensor(shape=(None, None), dtype=np.float32,
                                           encoding="bytes"),
            "label": tfds.features.Scalar(dtype=np.int32),
            "series_id": tfds.features.Scalar(dtype=np.int32),
        }),
        metadata=tfds.core.MetadataDict(),
        disable_shuffling=True,  # record i is series i of the source split
    )

  def _load_splits(self) -> dict[str, tuple[list[np.ndarray], Sequence[str] | None]]:
    raise NotImplementedError

  def _split_generators(self, dl_manager):
    del dl_manager  # nothing is downloaded: the data ships in packages or is the user's
    splits = self._load_splits()
    names = label_names_of([v for _, labels in splits.values() if labels is not None
                            for v in labels])
    # Written to metadata.json with the dataset, so readers never need the source again.
    self.info.metadata["label_names"] = list(names)
    return {split: self._generate_examples(series, encode_labels(labels, len(series), names))
            for split, (series, labels) in splits.items()}

  def _generate_examples(self, series, labels):
    for i, (x, label) in enumerate(zip(series, labels)):
      yield i, {"series": np.asarray(x, np.float32), "label": int(label), "series_id": i}


def is_prepared(builder: tfds.core.DatasetBuilder) -> bool:
  """Whether the builder's version directory is complete (TFDS renames it into place last)."""
  return (pathlib.Path(builder.data_dir) / "dataset_info.json").exists()


@contextlib.contextmanager
def _exclusive_lock(path: pathlib.Path) -> Iterator[None]:
  path.parent.mkdir(parents=True, exist_ok=True)
  with open(path, "a+") as f:
    fcntl.flock(f.fileno(), fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def prepare(make_builder: Callable[[], tfds.core.DatasetBuilder]) -> tfds.core.DatasetBuilder:
  """Prepares a dataset once, safely across processes, and returns a builder that reads it.

  Args:
    make_builder: constructs the builder (it reads its info from disk when already prepared,
      so it is called again after preparation).

  Returns:
    A builder whose ``as_data_source(split)`` reads the prepared array_record files.
  """
  builder = make_builder()
  if is_prepared(builder):
    return builder
  version_dir = pathlib.Path(builder.data_dir)
  with _exclusive_lock(version_dir.parent / f".{version_dir.name}.lock"):
    builder = make_builder()  # another process may have finished while we waited
    if not is_prepared(builder):
      # Leftovers of a killed preparation: nobody else can be writing while we hold the lock.
      pattern = re.compile(rf"incomplete\..*_{re.escape(version_dir.name)}$")
      if version_dir.parent.exists():
        for stale in version_dir.parent.iterdir():
          if stale.is_dir() and pattern.match(stale.name):
            shutil.rmtree(stale, ignore_errors=True)
      builder.download_and_prepare(file_format="array_record")
  return make_builder()


def read_split(builder: tfds.core.DatasetBuilder, split: str) -> RawSplit:
  """Reads every example of a prepared split into memory.

  Args:
    builder: a prepared builder (from ``prepare``).
    split: a split the builder has.

  Returns:
    The split's series in source order, with the dataset's label names.
  """
  source = builder.as_data_source(split=split)
  expected = builder.info.splits[split].num_examples
  if len(source) != expected:
    raise ValueError(f"{builder.data_dir}: split {split!r} holds {len(source)} examples but its "
                     f"metadata says {expected}; delete that directory to rebuild it")
  records = source.__getitems__(range(len(source))) if len(source) else []
  order = np.argsort([r["series_id"] for r in records], kind="stable")
  records = [records[i] for i in order]
  return RawSplit(
      series=[np.asarray(r["series"], np.float32) for r in records],
      labels=np.asarray([r["label"] for r in records], np.int32),
      series_id=np.asarray([r["series_id"] for r in records], np.int32),
      label_names=tuple(builder.info.metadata.get("label_names", ())),
  )
