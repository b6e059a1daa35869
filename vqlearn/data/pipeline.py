"""From ``config.data`` to arrays and to a deterministic, checkpointable training iterator.

``load_split`` reads a prepared split (preparing it on first use), carves the validation split,
normalises, optionally splits channels and pads. ``train_iterator`` cuts the training split into
windows, keeps them in memory and serves batches through grain.

Determinism contract of ``train_iterator``: one endless stream of example indices, a fresh
permutation of all N windows per epoch drawn from (seed, epoch). Global batch s is
``stream[s*B:(s+1)*B]`` and process p of P reads its slice ``[p*B/P:(p+1)*B/P]``. So the
concatenation of the local batches is the same global batch for every process count, and
depends only on (data config, seed, s). The iterator's state is just the step count, which is
the same on every process.
"""

from __future__ import annotations

import dataclasses
import sys
import threading
from typing import Any, Callable

import grain
import numpy as np

from vqlearn.data import files, preprocess, storage, ucr

SPLITS = ("train", "validation", "test")
VALIDATION_SEED = 0  # fixed: the validation split must not move with config.seed
_DEFAULTS = {"name": "", "train_path": "", "test_path": "", "window": 0, "stride": 1,
             "split_channels": False, "normalize": "none", "validation_fraction": 0.0,
             "dir": ""}


@dataclasses.dataclass(frozen=True)
class DataOptions:
  """``config.data`` after checking (field names and meanings as in the config)."""
  name: str
  train_path: str
  test_path: str
  window: int
  stride: int
  split_channels: bool
  normalize: str
  validation_fraction: float
  dir: str

  @property
  def sets(self) -> tuple[str, ...]:
    return tuple(self.name.split("+"))


def check_config(data_config: Any) -> DataOptions:
  """Checks ``config.data`` (a ConfigDict or mapping); missing fields take their defaults.

  Raises:
    ValueError naming the field and what was expected.
  """
  if hasattr(data_config, "get"):  # ConfigDict or dict
    values = {k: data_config.get(k, d) for k, d in _DEFAULTS.items()}
  else:  # any object with attributes, e.g. a dataclass
    values = {k: getattr(data_config, k, d) for k, d in _DEFAULTS.items()}

  def fail(field, expected):
    raise ValueError(f"config.data.{field} must be {expected}, got {values[field]!r}")

  name = values["name"]
  if not isinstance(name, str) or not name:
    fail("name", f"a bundled dataset ({', '.join(ucr.BUNDLED)}), several joined by '+', "
                 f"or 'files'")
  sets = name.split("+")
  if name != "files":
    for s in sets:
      if s not in ucr.BUNDLED:
        raise ValueError(f"config.data.name: unknown dataset {s!r}; bundled: "
                         f"{', '.join(ucr.BUNDLED)}; or 'files' for your own CSV/NPZ/.ts files")
    if len(set(sets)) != len(sets):
      fail("name", "a '+'-joined list without repeats")
  for field in ("train_path", "test_path", "dir"):
    if not isinstance(values[field], str):
      fail(field, "a string")
  for field, minimum in (("window", 0), ("stride", 1)):
    v = values[field]
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < minimum:
      fail(field, f"an integer >= {minimum}")
  if not isinstance(values["split_channels"], (bool, np.bool_)):
    fail("split_channels", "True or False")
  if values["normalize"] not in preprocess.NORMALIZE:
    fail("normalize", f"one of {preprocess.NORMALIZE}")
  v = values["validation_fraction"]
  if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v < 1.0:
    fail("validation_fraction", "a number in [0, 1)")
  return DataOptions(**{**values, "window": int(values["window"]),
                        "stride": int(values["stride"]),
                        "split_channels": bool(values["split_channels"]),
                        "validation_fraction": float(values["validation_fraction"])})


def _read(options: DataOptions, split: str) -> tuple[storage.RawSplit, str]:
  """The stored split ("train" or "test"), for a mixture concatenated set after set."""
  data_dir = str(storage.resolve_data_dir(options.dir))
  if options.name == "files":
    if split == "test" and not options.test_path:
      raise ValueError("split 'test' needs config.data.test_path (it is empty)")
    builder = files.builder(options.train_path, options.test_path, data_dir)
    return storage.read_split(builder, split), f"files:{options.train_path}"
  parts = [storage.read_split(ucr.builder(s, data_dir), split) for s in options.sets]
  if len(parts) == 1:
    return parts[0], options.name
  channels = {s: p.series[0].shape[1] for s, p in zip(options.sets, parts)}
  if len(set(channels.values())) > 1 and not options.split_channels:
    raise ValueError(f"config.data.split_channels must be True to mix sets with different "
                     f"channel counts ({channels})")
  label_offsets = np.cumsum([0] + [len(p.label_names) for p in parts])
  index_offsets = np.cumsum([0] + [len(p.series) for p in parts])
  return storage.RawSplit(
      series=[x for p in parts for x in p.series],
      labels=np.concatenate([np.where(p.labels >= 0, p.labels + o, -1)
                             for p, o in zip(parts, label_offsets)]).astype(np.int32),
      series_id=np.concatenate([p.series_id + o for p, o in zip(parts, index_offsets)]
                               ).astype(np.int32),
      label_names=tuple(f"{s}:{n}" for s, p in zip(options.sets, parts) for n in p.label_names),
  ), options.name


def load_split(data_config: Any, split: str, *, pad_multiple: int = 1) -> preprocess.SeriesSet:
  """Whole series of one split, normalised, optionally one row per channel, padded.

  Prepares the dataset (TFDS builder -> array_record under the data dir) on first use.

  Args:
    data_config: ``config.data``.
    split: "train", "validation" (carved from the stored train split, stratified, with a
      fixed seed; "train" then excludes it) or "test".
    pad_multiple: the common length is a multiple of it (the model's compression).

  Returns:
    A SeriesSet with one row per series (per channel with ``split_channels``); its
    ``series_index`` is the series' position in the stored split (mixtures: set after set).
  """
  options = check_config(data_config)
  if split not in SPLITS:
    raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
  if split == "validation" and options.validation_fraction == 0.0:
    raise ValueError("split 'validation' needs config.data.validation_fraction > 0 (it is 0)")
  raw, name = _read(options, "test" if split == "test" else "train")
  keep = np.arange(len(raw.series))
  if split != "test" and options.validation_fraction > 0.0:
    train, held = preprocess.stratified_split(raw.labels, options.validation_fraction,
                                              VALIDATION_SEED)
    keep = held if split == "validation" else train
    if keep.size == 0:
      raise ValueError(f"config.data.validation_fraction = {options.validation_fraction} "
                       f"leaves the {split} split of {name} empty")
  series = preprocess.normalize([raw.series[i] for i in keep], options.normalize)
  labels, series_index = raw.labels[keep], raw.series_id[keep]
  if options.split_channels:
    series, labels, series_index = preprocess.split_channels(series, labels, series_index)
  padded, mask = preprocess.pad(series, pad_multiple)
  return preprocess.SeriesSet(series=padded, mask=mask, labels=labels.astype(np.int32),
                              label_names=raw.label_names,
                              series_index=series_index.astype(np.int32), name=name)


def training_examples(data_config: Any, *, pad_multiple: int = 1) -> preprocess.SeriesSet:
  """The rows ``train_iterator`` samples from: the train split cut by config.data.window/stride.

  Args:
    data_config: ``config.data``.
    pad_multiple: row length is a multiple of it.

  Returns:
    The training windows (whole series when ``window`` is 0).
  """
  options = check_config(data_config)
  return preprocess.windows(load_split(data_config, "train", pad_multiple=pad_multiple),
                            options.window, options.stride, pad_multiple=pad_multiple)


class IndexStream:
  """Element b: the example indices of stream positions [b*size, (b+1)*size).

  The stream is endless: epoch e is a permutation of range(n) drawn from (seed, e). Permuting
  in numpy per epoch costs microseconds per batch, where grain's per-element index shuffle
  costs ~30 us per example.
  """

  def __init__(self, n: int, size: int, seed: int):
    self._n, self._size, self._seed = n, size, seed
    self._cache: dict[int, np.ndarray] = {}
    self._lock = threading.Lock()  # grain may read from a prefetch thread

  def __len__(self) -> int:
    return sys.maxsize  # endless; MapDataset slicing and iteration handle it lazily

  def _permutation(self, epoch: int) -> np.ndarray:
    with self._lock:
      if epoch not in self._cache:
        if len(self._cache) >= 4:
          self._cache.pop(min(self._cache))
        rng = np.random.default_rng([self._seed, epoch])
        self._cache[epoch] = rng.permutation(self._n)
      return self._cache[epoch]

  def __getitem__(self, b: int) -> np.ndarray:
    epoch, position = np.divmod(np.arange(b * self._size, (b + 1) * self._size), self._n)
    out = np.empty((self._size,), np.int64)
    for e in np.unique(epoch):
      pick = epoch == e
      out[pick] = self._permutation(int(e))[position[pick]]
    return out


class Gather:
  """Maps example indices to a batch dict (module-level class: picklable for grain workers)."""

  def __init__(self, examples: preprocess.SeriesSet):
    self._series, self._mask, self._labels = examples.series, examples.mask, examples.labels

  def __call__(self, indices: np.ndarray) -> dict[str, np.ndarray]:
    return {"series": self._series[indices], "mask": self._mask[indices],
            "label": self._labels[indices]}


def batch_iterator(num_examples: int, gather: Callable[[np.ndarray], dict[str, np.ndarray]],
                   *, global_batch_size: int, seed: int, process_index: int = 0,
                   process_count: int = 1) -> grain.DatasetIterator:
  """Endless, reshuffled-every-epoch batches for this process: every modality's iterator.

  Epoch e is a permutation of range(num_examples) drawn from (seed, e); global batch s is
  positions [s*GB, (s+1)*GB) of that stream, and process p of P gathers its contiguous
  GB/P-row slice. So global batch s depends only on (examples, seed, s), whatever P.

  Args:
    num_examples: how many training examples there are.
    gather: ``indices (LB,) -> batch dict``, each leaf with the example axis first; a
      module-level class or function, so grain can pickle it for its workers.
    global_batch_size: examples per step over all processes; divisible by process_count.
    seed: the shuffle seed (any non-negative integer).
    process_index: this process, in [0, process_count).
    process_count: how many processes share each global batch.

  Returns:
    A grain iterator of ``gather``'s dicts. It supports ``get_state()``/``set_state()`` and
    orbax via ``grain.checkpoint.CheckpointSave``/``CheckpointRestore``; its state (the step
    count) is the same on every process.
  """
  for name, value, minimum in (("global_batch_size", global_batch_size, 1),
                               ("process_count", process_count, 1), ("seed", seed, 0)):
    preprocess.check_int(name, value, minimum)
  if not (isinstance(process_index, (int, np.integer)) and 0 <= process_index < process_count):
    raise ValueError(f"process_index must be in [0, process_count) = [0, {process_count}), "
                     f"got {process_index!r}")
  if global_batch_size % process_count:
    raise ValueError(f"global_batch_size ({global_batch_size}) must be divisible by "
                     f"process_count ({process_count})")
  local = global_batch_size // process_count
  # Element b of the stream holds local batch b; process p takes b = s*P + p at step s.
  ds = grain.MapDataset.source(IndexStream(num_examples, local, int(seed)))
  ds = ds[process_index::process_count].map(gather)
  # Gathering from memory is cheap: a small prefetch keeps memory bounded for long examples.
  return iter(ds.to_iter_dataset(grain.ReadOptions(num_threads=1, prefetch_buffer_size=2)))


def train_iterator(data_config: Any, *, global_batch_size: int, seed: int,
                   pad_multiple: int = 1, process_index: int = 0, process_count: int = 1
                   ) -> grain.DatasetIterator:
  """Endless, reshuffled-every-epoch training batches for this process.

  Args:
    data_config: ``config.data`` (window and stride cut the training series).
    global_batch_size: examples per step over all processes; divisible by process_count.
    seed: the shuffle seed (any non-negative integer).
    pad_multiple: window length is a multiple of it (the model's compression).
    process_index: this process, in [0, process_count).
    process_count: how many processes share each global batch.

  Returns:
    A grain iterator of ``{'series': (LB, W, C) float32, 'mask': (LB, W) float32,
    'label': (LB,) int32}``, LB = global_batch_size // process_count. It supports
    ``get_state()``/``set_state()`` and orbax via ``grain.checkpoint.CheckpointSave``/
    ``CheckpointRestore``; its state (the step count) is the same on every process.
  """
  examples = training_examples(data_config, pad_multiple=pad_multiple)
  return batch_iterator(len(examples.series), Gather(examples),
                        global_batch_size=global_batch_size, seed=seed,
                        process_index=process_index, process_count=process_count)
