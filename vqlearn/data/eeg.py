"""EEG recordings: importers for EDF/BDF/FIF folders, the EEG that spkit ships, preprocessing,
windows and a deterministic grain training iterator.

    recordings = eeg.load_recordings(config.data)  # preprocessed whole recordings
    test = eeg.split_windows(config.data, "test", recordings)  # EegWindows, the held-out part
    it = eeg.train_iterator(config.data, global_batch_size=32, seed=0)
    batch = next(it)  # {'signal': (B, W, C), 'positions': (B, C, 3), 'channel_type': (B, C),
                      #  'channel_mask': (B, C)}

Sources (``config.data.name``):
- ``spkit_raw``: the two real 14-channel Emotiv recordings (128 Hz, 16 s each, PhyAAt excerpts)
  that spkit 0.0.9.7 ships: ``eeg_sample_14ch()`` and ``eeg_sample_artifact()['X_raw']``.
- ``spkit_cleaned``: the artifact recording after ICA, ATAR-soft and ATAR-elimination cleaning
  (three versions of the same 16 s).
- ``spkit``: both. That is 32 s of distinct real EEG in all: enough for tests and demos, not for
  claims about EEG tokenizers (shared/DATA.md).
- ``files``: every ``.edf``, ``.bdf`` and ``.fif`` file under ``config.data.path`` (recursively),
  read with MNE. Channel names, types, sampling rate and (FIF) electrode positions come from the
  files; ``config.data.montage`` names a standard montage (``mne.channels.
  make_standard_montage``) that supplies positions for files without them (EDF/BDF never store
  them) and overrides the file's positions when set.

Each source is a TFDS builder that stores the recordings unprocessed (signal in microvolts,
channel types, positions in metres, NaN when unknown; names and rates in the metadata); the
files builder's config name is a hash of the files' contents. Preprocessing happens on load, in
this order: keep channel types ``config.data.channel_types`` (EEG only by default: EOG, ECG,
EMG, stim and misc channels are dropped unless named), assign positions, check for NaN and flat
channels, resample to ``sample_rate`` (polyphase, downsampling only), zero-phase Butterworth
band-pass, notch at ``notch`` Hz and its harmonics below Nyquist, and per-channel robust scaling
((x - median) / (IQR / 1.349), a z-score that one artifact cannot dominate). Every check raises a
ValueError naming the recording, the channel and the config field before training starts.

Splits are in time: the last ``test_fraction`` of every recording is held out, train windows
(``window_seconds`` long, ``stride_seconds`` apart) come from the rest and test windows tile the
held-out part without overlap, so no test sample is ever seen in training.
"""

from __future__ import annotations

import dataclasses
import fractions
import hashlib
import pathlib
import re
import warnings
from typing import Any, NamedTuple, Sequence

import grain
import numpy as np
import scipy.signal
import tensorflow_datasets as tfds

from vqlearn.data import pipeline, storage

# Channel types the importer distinguishes (MNE's names); the model embeds the index.
CHANNEL_TYPES: tuple[str, ...] = ("eeg", "eog", "ecg", "emg", "stim", "misc")
SUFFIXES = (".edf", ".bdf", ".fif")
_VOLTAGE_TYPES = ("eeg", "eog", "ecg", "emg")  # stored in microvolts; stim and misc as read
BUNDLED = ("spkit_raw", "spkit_cleaned", "spkit")
HEAD_RADIUS_M = 0.095  # positions are given to the model in units of a typical head radius
# IQR of a standard normal: dividing by it makes robust scaling agree with a z-score on
# Gaussian data.
_NORMAL_IQR = 1.3489795
_FLAT_STD = 1e-6  # microvolts: a channel this still carries no signal (disconnected/clipped)

_DEFAULTS = dict(name="spkit", path="", montage="", channel_types="eeg", sample_rate=128.0,
                 bandpass_low=0.5, bandpass_high=45.0, notch=50.0, scaling="robust",
                 window_seconds=1.0, stride_seconds=0.25, test_fraction=0.25,
                 input_channels="", dir="")
SCALINGS = ("robust", "none")


class Recording(NamedTuple):
  """One recording: every channel, as read (or after ``preprocess_recording``).

  Attributes:
    signal: float32 (T, C); microvolts as read, unitless after robust scaling.
    sample_rate: samples per second.
    channel_names: C names as in the file.
    channel_types: C MNE channel types (``CHANNEL_TYPES``).
    positions: float32 (C, 3) electrode positions in metres (MNE head frame); NaN rows where
      the source has none.
    source: where it came from (file path or bundled name), for messages.
  """
  signal: np.ndarray
  sample_rate: float
  channel_names: tuple[str, ...]
  channel_types: tuple[str, ...]
  positions: np.ndarray
  source: str


@dataclasses.dataclass(frozen=True)
class EegOptions:
  """``config.data`` after checking (field names and meanings as in ``configs/eeg.py``)."""
  name: str
  path: str
  montage: str
  channel_types: tuple[str, ...]
  sample_rate: float
  bandpass_low: float
  bandpass_high: float
  notch: float
  scaling: str
  window_seconds: float
  stride_seconds: float
  test_fraction: float
  input_channels: tuple[str, ...]
  dir: str

  @property
  def window(self) -> int:
    return int(round(self.window_seconds * self.sample_rate))

  @property
  def stride(self) -> int:
    return int(round(self.stride_seconds * self.sample_rate))


def _names(text: str) -> tuple[str, ...]:
  return tuple(s.strip() for s in text.split(",") if s.strip())


def check_config(data_config: Any) -> EegOptions:
  """Checks ``config.data`` for EEG; missing fields take their defaults.

  Raises:
    ValueError naming the field and what was expected.
  """
  values = {k: data_config.get(k, d) for k, d in _DEFAULTS.items()}

  def fail(field, expected):
    raise ValueError(f"config.data.{field} must be {expected}, got {values[field]!r}")

  if values["name"] not in BUNDLED + ("files",):
    fail("name", f"one of {BUNDLED + ('files',)}")
  for field in ("path", "montage", "channel_types", "scaling", "input_channels", "dir"):
    if not isinstance(values[field], str):
      fail(field, "a string")
  if values["name"] == "files" and not values["path"]:
    fail("path", "a folder of .edf/.bdf/.fif files when config.data.name is 'files'")
  types = _names(values["channel_types"])
  if not types or any(t not in CHANNEL_TYPES for t in types):
    fail("channel_types", f"comma-separated types from {CHANNEL_TYPES}")
  numbers = {}
  for field in ("sample_rate", "bandpass_low", "bandpass_high", "notch", "window_seconds",
                "stride_seconds", "test_fraction"):
    v = values[field]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v) or v < 0:
      fail(field, "a finite number >= 0")
    numbers[field] = float(v)
  if numbers["sample_rate"] <= 0:
    fail("sample_rate", "> 0")
  nyquist = numbers["sample_rate"] / 2
  if numbers["bandpass_high"] and not numbers["bandpass_low"] < numbers["bandpass_high"] < nyquist:
    fail("bandpass_high", f"0 (no low-pass) or in (bandpass_low, sample_rate / 2) = "
                          f"({numbers['bandpass_low']}, {nyquist})")
  if numbers["notch"] and numbers["notch"] >= nyquist:
    fail("notch", f"0 (off) or below sample_rate / 2 = {nyquist} Hz")
  if values["scaling"] not in SCALINGS:
    fail("scaling", f"one of {SCALINGS}")
  if not 0 < numbers["test_fraction"] < 1:
    fail("test_fraction", "in (0, 1)")
  options = EegOptions(**{**values, **numbers, "channel_types": types,
                          "input_channels": _names(values["input_channels"])})
  for field, samples in (("window_seconds", options.window), ("stride_seconds", options.stride)):
    if samples < 1 or abs(samples - numbers[field] * options.sample_rate) > 1e-6:
      fail(field, f"a whole, positive number of samples at sample_rate {options.sample_rate} Hz")
  return options


# ----------------------------------------------------------------------------------------------
# Reading and writing files.
# ----------------------------------------------------------------------------------------------

def import_mne():
  """MNE, imported on first use (slow to import) and told to log errors only."""
  import mne
  mne.set_log_level("ERROR")
  return mne


def read_file(path: str | pathlib.Path) -> Recording:
  """One EDF, BDF or FIF file, every channel, in microvolts, positions NaN where unknown.

  EDF/BDF channel types are inferred from label prefixes such as ``EOG Fp1`` (MNE's
  ``infer_types``); the prefix is then dropped from the name. FIF files keep their types and
  their digitised positions.
  """
  path = pathlib.Path(path)
  suffix = path.suffix.lower()
  if suffix not in SUFFIXES:
    raise ValueError(f"{path}: unknown suffix {path.suffix!r}; expected one of {SUFFIXES}")
  mne = import_mne()
  try:
    if suffix == ".fif":
      raw = mne.io.read_raw_fif(path, preload=True)
    elif suffix == ".edf":
      raw = mne.io.read_raw_edf(path, preload=True, infer_types=True)
    else:
      raw = mne.io.read_raw_bdf(path, preload=True, infer_types=True)
  except Exception as e:  # MNE raises several types for malformed files
    raise ValueError(f"{path}: could not read it as {suffix[1:].upper()}: {e}") from e
  # Channels of other kinds (MEG, fNIRS, ...) are outside this importer's scope.
  keep = [i for i, t in enumerate(raw.get_channel_types()) if t in CHANNEL_TYPES]
  if not keep:
    raise ValueError(f"{path}: no channel of a type in {CHANNEL_TYPES}")
  raw.pick(keep)
  types = tuple(raw.get_channel_types())
  positions = np.full((len(types), 3), np.nan, np.float32)
  for i, ch in enumerate(raw.info["chs"]):
    loc = np.asarray(ch["loc"][:3], np.float64)
    if np.all(np.isfinite(loc)) and np.any(loc != 0):  # MNE stores "unknown" as 0 or NaN
      positions[i] = loc
  signal = raw.get_data(units={t: "uV" for t in set(types) if t in _VOLTAGE_TYPES})
  return Recording(signal=np.asarray(signal, np.float32).T, sample_rate=float(raw.info["sfreq"]),
                   channel_names=tuple(raw.ch_names), channel_types=types,
                   positions=positions, source=str(path))


def write_file(path: str | pathlib.Path, recording: Recording) -> None:
  """Writes a recording to EDF, BDF (via MNE's export, edfio) or FIF (positions kept).

  EDF and BDF store no positions; their labels get a type prefix for non-EEG channels (``EOG
  x``) so that ``read_file`` recovers the types. EDF stores 16-bit samples, BDF 24-bit: values
  read back to within (physical range) / 2^16 resp. 2^24.
  """
  path = pathlib.Path(path)
  suffix = path.suffix.lower()
  if suffix not in SUFFIXES:
    raise ValueError(f"{path}: unknown suffix {path.suffix!r}; expected one of {SUFFIXES}")
  mne = import_mne()
  names = list(recording.channel_names)
  if suffix != ".fif":
    names = [n if t == "eeg" else f"{t.upper()} {n}"
             for n, t in zip(names, recording.channel_types)]
  info = mne.create_info(names, recording.sample_rate, list(recording.channel_types))
  volts = recording.signal.T.astype(np.float64) * np.where(
      np.isin(recording.channel_types, _VOLTAGE_TYPES), 1e-6, 1.0)[:, None]
  raw = mne.io.RawArray(volts, info)
  if suffix == ".fif":
    known = {n: p for n, p in zip(names, recording.positions) if np.all(np.isfinite(p))}
    if known:
      raw.set_montage(mne.channels.make_dig_montage(ch_pos=known, coord_frame="head"),
                      on_missing="ignore")
    raw.save(path, overwrite=True)
  else:
    mne.export.export_raw(path, raw, fmt=suffix[1:], overwrite=True)


def list_files(folder: str) -> list[pathlib.Path]:
  """The EEG files under ``folder`` (recursive, sorted), or an error naming the folder."""
  root = pathlib.Path(folder).expanduser()
  if not root.is_dir():
    raise FileNotFoundError(f"config.data.path = {folder!r}: no such folder")
  paths = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)
  if not paths:
    raise ValueError(f"config.data.path = {folder!r}: no {'/'.join(SUFFIXES)} files in it")
  return paths


def load_spkit(name: str) -> list[Recording]:
  """The bundled spkit recordings of ``name`` (``BUNDLED``), in microvolts, without positions."""
  if name not in BUNDLED:
    raise ValueError(f"unknown bundled EEG set {name!r}; bundled: {BUNDLED}")
  import spkit  # slow import, only when preparing

  x, rate, names = spkit.data.eeg_sample_14ch()
  artifact = spkit.data.eeg_sample_artifact()
  parts = {"spkit_raw": [("eeg_sample_14ch", x, rate, names),
                         ("eeg_sample_artifact/X_raw", artifact["X_raw"], artifact["fs"],
                          artifact["ch_names"])],
           "spkit_cleaned": [(f"eeg_sample_artifact/{k}", artifact[k], artifact["fs"],
                              artifact["ch_names"])
                             for k in ("X_ica", "X_atar_soft", "X_atar_elim")]}
  parts["spkit"] = parts["spkit_raw"] + parts["spkit_cleaned"]
  return [Recording(signal=np.asarray(signal, np.float32), sample_rate=float(fs),
                    channel_names=tuple(ch), channel_types=("eeg",) * len(ch),
                    positions=np.full((len(ch), 3), np.nan, np.float32), source=f"spkit:{src}")
          for src, signal, fs, ch in parts[name]]


# ----------------------------------------------------------------------------------------------
# Channel selection, positions, checks and filters (pure numpy / scipy).
# ----------------------------------------------------------------------------------------------

def select_types(recording: Recording, types: Sequence[str]) -> Recording:
  """Keeps the channels whose type is in ``types`` (order as in the file)."""
  keep = [i for i, t in enumerate(recording.channel_types) if t in types]
  if not keep:
    raise ValueError(f"{recording.source}: no channel of type {tuple(types)} (it has "
                     f"{sorted(set(recording.channel_types))}); set config.data.channel_types")
  return recording._replace(signal=recording.signal[:, keep],
                            channel_names=tuple(recording.channel_names[i] for i in keep),
                            channel_types=tuple(recording.channel_types[i] for i in keep),
                            positions=recording.positions[keep])


def electrode_key(name: str) -> str:
  """The name a montage is searched for: lower case, without the padding dots of PhysioNet
  EEGMMI labels ("Fc5.", "C3..") or the reference suffixes of TUH labels ("FP1-REF", "T3-LE")."""
  key = name.strip().rstrip(".").lower()
  return re.sub(r"-(ref|le|ar|avg)$", "", key)


def montage_positions(montage: str) -> dict[str, np.ndarray]:
  """Electrode positions (metres) of a standard MNE montage by name, keyed by
  ``electrode_key``."""
  mne = import_mne()
  try:
    with warnings.catch_warnings():
      warnings.simplefilter("ignore", FutureWarning)  # standard_1020 -> colin27_1020 rename
      positions = mne.channels.make_standard_montage(montage).get_positions()["ch_pos"]
  except ValueError:
    raise ValueError(f"config.data.montage: unknown montage {montage!r}; use one of "
                     f"{mne.channels.get_builtin_montages()} (or standard_1020, standard_1005) "
                     f"or '' to take positions from the files") from None
  return {electrode_key(name): np.asarray(p, np.float32) for name, p in positions.items()}


def assign_positions(recording: Recording, montage: str) -> Recording:
  """Positions of the EEG channels: the montage's when one is named, else the file's.

  Non-EEG channels need none (the model knows them by type); they get zeros.

  Raises:
    ValueError naming the recording and channels that end up without a position.
  """
  positions = recording.positions.copy()
  is_eeg = np.asarray([t == "eeg" for t in recording.channel_types])
  if montage:
    table = montage_positions(montage)
    missing = [n for n, e in zip(recording.channel_names, is_eeg)
               if e and electrode_key(n) not in table]
    if missing:
      raise ValueError(f"{recording.source}: channels {missing} are not in montage {montage!r}; "
                       f"rename them, drop them, or choose another config.data.montage")
    for i, (name, eeg) in enumerate(zip(recording.channel_names, is_eeg)):
      if eeg:
        positions[i] = table[electrode_key(name)]
  missing = [n for n, e, p in zip(recording.channel_names, is_eeg, positions)
             if e and not np.all(np.isfinite(p))]
  if missing:
    raise ValueError(f"{recording.source}: EEG channels {missing} have no electrode position in "
                     f"the file and config.data.montage is empty; name a standard montage "
                     f"(e.g. config.data.montage=standard_1005)")
  positions[~is_eeg] = 0.0
  return recording._replace(positions=positions.astype(np.float32))


def check_channels(recording: Recording) -> None:
  """Raises a ValueError naming the first NaN/inf or flat channel."""
  signal = recording.signal
  if signal.shape[0] < 2:
    raise ValueError(f"{recording.source}: has {signal.shape[0]} samples; too short")
  for c, name in enumerate(recording.channel_names):
    bad = ~np.isfinite(signal[:, c])
    if bad.any():
      raise ValueError(f"{recording.source}: channel {name!r} holds NaN or inf values (first "
                       f"at sample {int(np.argmax(bad))}); repair or drop it")
    if np.std(signal[:, c].astype(np.float64)) < _FLAT_STD:
      raise ValueError(f"{recording.source}: channel {name!r} is flat (std < {_FLAT_STD} uV), "
                       f"a disconnected electrode; drop it before importing")


def resample(signal: np.ndarray, rate: float, target: float, source: str) -> np.ndarray:
  """Polyphase resampling along axis 0 from ``rate`` to ``target`` Hz (downsampling only).

  ``resample_poly`` applies its own anti-aliasing low-pass; the rate ratio must be a fraction
  with a denominator <= 1000 (any pair of common EEG rates is).
  """
  if rate == target:
    return signal
  if rate < target:
    raise ValueError(f"{source}: sampled at {rate:g} Hz, below config.data.sample_rate = "
                     f"{target:g} Hz; upsampling would invent frequencies. Lower "
                     f"config.data.sample_rate to at most {rate:g}")
  ratio = fractions.Fraction(target / rate).limit_denominator(1000)
  if abs(float(ratio) * rate - target) > 1e-6 * target:
    raise ValueError(f"{source}: cannot resample {rate:g} Hz to config.data.sample_rate = "
                     f"{target:g} Hz by a rational factor with denominator <= 1000")
  out = scipy.signal.resample_poly(signal.astype(np.float64), ratio.numerator,
                                   ratio.denominator, axis=0)
  return out.astype(np.float32)


def bandpass(signal: np.ndarray, rate: float, low: float, high: float) -> np.ndarray:
  """Zero-phase 4th-order Butterworth band-pass [low, high] Hz (0 = that edge off)."""
  if not low and not high:
    return signal
  if low and high:
    sos = scipy.signal.butter(4, [low, high], "bandpass", fs=rate, output="sos")
  elif low:
    sos = scipy.signal.butter(4, low, "highpass", fs=rate, output="sos")
  else:
    sos = scipy.signal.butter(4, high, "lowpass", fs=rate, output="sos")
  return scipy.signal.sosfiltfilt(sos, signal.astype(np.float64), axis=0).astype(np.float32)


def notch(signal: np.ndarray, rate: float, frequency: float, quality: float = 30.0
          ) -> np.ndarray:
  """Zero-phase IIR notches at ``frequency`` and its harmonics below Nyquist (0 = off)."""
  if not frequency:
    return signal
  out = signal.astype(np.float64)
  for f in np.arange(frequency, rate / 2, frequency):
    b, a = scipy.signal.iirnotch(f, quality, fs=rate)
    out = scipy.signal.filtfilt(b, a, out, axis=0)
  return out.astype(np.float32)


def robust_scale(signal: np.ndarray) -> np.ndarray:
  """Per channel (x - median) / (IQR / 1.349): a z-score that artifacts barely move."""
  x = signal.astype(np.float64)
  median = np.median(x, axis=0)
  q75, q25 = np.percentile(x, [75, 25], axis=0)
  scale = (q75 - q25) / _NORMAL_IQR
  return ((x - median) / np.where(scale > 0, scale, 1.0)).astype(np.float32)


def preprocess_recording(recording: Recording, options: EegOptions) -> Recording:
  """Type selection, positions, checks, resampling, filters and scaling (module docstring)."""
  recording = select_types(recording, options.channel_types)
  recording = assign_positions(recording, options.montage)
  check_channels(recording)
  signal = resample(recording.signal, recording.sample_rate, options.sample_rate,
                    recording.source)
  signal = bandpass(signal, options.sample_rate, options.bandpass_low, options.bandpass_high)
  signal = notch(signal, options.sample_rate, options.notch)
  if options.scaling == "robust":
    signal = robust_scale(signal)
  return recording._replace(signal=signal, sample_rate=options.sample_rate)


# ----------------------------------------------------------------------------------------------
# Storage: TFDS builders over the bundled recordings and over a folder of files.
# ----------------------------------------------------------------------------------------------

class EegBuilder(storage.SeriesBuilder, skip_registration=True):
  """Shared TFDS builder: unprocessed recordings, one example each, in source order.

  Example: ``{'signal': float32 (T, C) uV, 'positions': float32 (C, 3) m (NaN = unknown),
  'channel_type': int32 (C,) index into CHANNEL_TYPES, 'recording_id': int32}``; the metadata
  holds ``channel_names``, ``sample_rates`` and ``sources`` per recording. Subclasses implement
  ``_recordings()``.
  """

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=getattr(self.builder_config, "description", None) or "",
        features=tfds.features.FeaturesDict({
            "signal": tfds.features.Tensor(shape=(None, None), dtype=np.float32,
                                           encoding="bytes"),
            "positions": tfds.features.Tensor(shape=(None, 3), dtype=np.float32,
                                              encoding="bytes"),
            "channel_type": tfds.features.Tensor(shape=(None,), dtype=np.int32,
                                                 encoding="bytes"),
            "recording_id": tfds.features.Scalar(dtype=np.int32),
        }),
        metadata=tfds.core.MetadataDict(),
        disable_shuffling=True,
    )

  def _recordings(self) -> list[Recording]:
    raise NotImplementedError

  def _split_generators(self, dl_manager):
    del dl_manager  # nothing is downloaded
    recordings = self._recordings()
    self.info.metadata["channel_names"] = [list(r.channel_names) for r in recordings]
    self.info.metadata["sample_rates"] = [r.sample_rate for r in recordings]
    self.info.metadata["sources"] = [r.source for r in recordings]
    return {"recordings": self._generate_examples(recordings)}

  def _generate_examples(self, recordings):
    for i, r in enumerate(recordings):
      yield i, {"signal": r.signal.astype(np.float32), "positions": r.positions,
                "channel_type": np.asarray([CHANNEL_TYPES.index(t) for t in r.channel_types],
                                           np.int32),
                "recording_id": i}


class SpkitEeg(EegBuilder):
  """The real EEG that spkit ships; ``config`` is ``spkit_raw``, ``spkit_cleaned`` or ``spkit``."""

  name = "spkit_eeg"
  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Unprocessed uV signals, positions, channel types."}
  BUILDER_CONFIGS = [
      tfds.core.BuilderConfig(name="spkit_raw", description="2 raw 16 s Emotiv recordings"),
      tfds.core.BuilderConfig(name="spkit_cleaned",
                              description="ICA, ATAR-soft, ATAR-elim cleaned artifact recording"),
      tfds.core.BuilderConfig(name="spkit", description="spkit_raw + spkit_cleaned"),
  ]

  def _recordings(self):
    return load_spkit(self.builder_config.name)


class EegFiles(EegBuilder, skip_registration=True):
  """The user's folder; one config per content hash, made by ``files_builder``."""

  name = "eeg_files"
  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Unprocessed uV signals, positions, channel types."}
  _CONFIGS: dict[str, tfds.core.BuilderConfig] = {}

  @classmethod
  def get_builder_config(cls, name, version=None):
    del version
    return cls._CONFIGS.get(name)

  def __init__(self, *, recordings: list[Recording] | None = None, **kwargs):
    self._parsed = recordings
    super().__init__(**kwargs)

  def _recordings(self):
    if self._parsed is None:
      raise RuntimeError("EegFiles is prepared through vqlearn.data.eeg.files_builder")
    return self._parsed


def _content_name(folder: str, paths: Sequence[pathlib.Path]) -> str:
  digest = hashlib.sha256()
  for p in paths:
    digest.update(str(p.relative_to(pathlib.Path(folder).expanduser())).encode() + b"\0")
    digest.update(p.read_bytes())
  stem = re.sub(r"[^A-Za-z0-9]+", "_", pathlib.Path(folder).name).strip("_")[:40] or "eeg"
  return f"{stem}_{digest.hexdigest()[:16]}"


def files_builder(options: EegOptions) -> tfds.core.DatasetBuilder:
  """The prepared builder over ``options.path``; every file is read and checked (types,
  positions given the montage, NaN/flat channels, usable rate) before anything is written."""
  paths = list_files(options.path)
  name = _content_name(options.path, paths)
  EegFiles._CONFIGS.setdefault(name, tfds.core.BuilderConfig(  # pylint: disable=protected-access
      name=name, description=f"EEG files under {pathlib.Path(options.path).absolute()}"))
  data_dir = str(storage.resolve_data_dir(options.dir))
  make = lambda recordings=None: EegFiles(config=name, data_dir=data_dir, recordings=recordings)
  if storage.is_prepared(make()):
    return make()
  recordings = [read_file(p) for p in paths]
  for r in recordings:
    preprocess_recording(r, options)  # raises on anything the config cannot use
  return storage.prepare(lambda: make(recordings))


def read_recordings(builder: tfds.core.DatasetBuilder) -> list[Recording]:
  """Every stored recording, in source order."""
  source = builder.as_data_source(split="recordings")
  records = sorted(source.__getitems__(range(len(source))), key=lambda r: r["recording_id"])
  meta = builder.info.metadata
  return [Recording(signal=np.asarray(r["signal"], np.float32),
                    sample_rate=float(meta["sample_rates"][i]),
                    channel_names=tuple(meta["channel_names"][i]),
                    channel_types=tuple(CHANNEL_TYPES[t] for t in r["channel_type"]),
                    positions=np.asarray(r["positions"], np.float32),
                    source=meta["sources"][i]) for i, r in enumerate(records)]


def _bundled_defaults(options: EegOptions) -> EegOptions:
  # spkit gives names only: positions come from the 10-05 system unless another is named.
  return options if options.montage else dataclasses.replace(options, montage="standard_1005")


def load_recordings(data_config: Any) -> list[Recording]:
  """The recordings of ``config.data``, preprocessed (module docstring), preparing on first use."""
  options = check_config(data_config)
  if options.name == "files":
    builder = files_builder(options)
  else:
    options = _bundled_defaults(options)
    data_dir = str(storage.resolve_data_dir(options.dir))
    builder = storage.prepare(lambda: SpkitEeg(config=options.name, data_dir=data_dir))
  return [preprocess_recording(r, options) for r in read_recordings(builder)]


# ----------------------------------------------------------------------------------------------
# Windows, splits and the training iterator.
# ----------------------------------------------------------------------------------------------

class EegWindows(NamedTuple):
  """Windows of several recordings, channels padded to a common count.

  Attributes:
    signal: float32 (n, W, C), zero at padded channels.
    positions: float32 (n, C, 3), in head radii (metres / HEAD_RADIUS_M); zero at padding.
    channel_type: int32 (n, C), index into CHANNEL_TYPES; 0 at padding.
    channel_mask: float32 (n, C), 1 = a real channel.
    channel_names: per window, its real channels' names.
    recording: int32 (n,), index of the window's recording.
    start: int64 (n,), the window's first sample in its recording.
  """
  signal: np.ndarray
  positions: np.ndarray
  channel_type: np.ndarray
  channel_mask: np.ndarray
  channel_names: tuple[tuple[str, ...], ...]
  recording: np.ndarray
  start: np.ndarray

  def batch(self, index) -> dict[str, np.ndarray]:
    """The model's input dict for windows ``index``."""
    return {"signal": self.signal[index], "positions": self.positions[index],
            "channel_type": self.channel_type[index], "channel_mask": self.channel_mask[index]}


def pick_channels(recording: Recording, names: Sequence[str]) -> Recording:
  """The channels ``names`` (in that order; matched case-insensitively) of a recording."""
  index = {n.lower(): i for i, n in enumerate(recording.channel_names)}
  missing = [n for n in names if n.lower() not in index]
  if missing:
    raise ValueError(f"{recording.source}: has no channels {missing} (config.data."
                     f"input_channels); it has {list(recording.channel_names)}")
  keep = [index[n.lower()] for n in names]
  return recording._replace(signal=recording.signal[:, keep],
                            channel_names=tuple(recording.channel_names[i] for i in keep),
                            channel_types=tuple(recording.channel_types[i] for i in keep),
                            positions=recording.positions[keep])


def cut_windows(recordings: Sequence[Recording], ranges: Sequence[tuple[int, int]], window: int,
                stride: int, channels: int | None = None) -> EegWindows:
  """Windows of ``window`` samples, ``stride`` apart, inside [begin, end) of each recording.

  Args:
    recordings: preprocessed recordings.
    ranges: per recording, the sample range the windows must lie in.
    window: samples per window.
    stride: samples between window starts.
    channels: pad channels to this count (default: the most any recording has).

  Returns:
    The windows, recording after recording, then in start order.
  """
  width = channels or max(r.signal.shape[1] for r in recordings)
  pieces = []
  for i, (r, (begin, end)) in enumerate(zip(recordings, ranges)):
    starts = np.arange(begin, end - window + 1, stride, dtype=np.int64)
    c = r.signal.shape[1]
    if c > width:
      raise ValueError(f"{r.source}: {c} channels, more than the {width} requested")
    signal = np.zeros((len(starts), window, width), np.float32)
    for k, s in enumerate(starts):
      signal[k, :, :c] = r.signal[s:s + window]
    positions = np.zeros((width, 3), np.float32)
    positions[:c] = r.positions / HEAD_RADIUS_M
    types = np.zeros((width,), np.int32)
    types[:c] = [CHANNEL_TYPES.index(t) for t in r.channel_types]
    mask = (np.arange(width) < c).astype(np.float32)
    n = len(starts)
    pieces.append((signal, np.broadcast_to(positions, (n, width, 3)),
                   np.broadcast_to(types, (n, width)), np.broadcast_to(mask, (n, width)),
                   (r.channel_names,) * n, np.full((n,), i, np.int32), starts))
  if not sum(len(p[-1]) for p in pieces):
    raise ValueError(f"no window of {window} samples fits in the chosen ranges; shorten "
                     f"config.data.window_seconds or lower config.data.test_fraction")
  return EegWindows(*(np.concatenate([p[j] for p in pieces]) for j in range(4)),
                    channel_names=tuple(n for p in pieces for n in p[4]),
                    recording=np.concatenate([p[5] for p in pieces]),
                    start=np.concatenate([p[6] for p in pieces]))


def split_ranges(recording: Recording, test_fraction: float) -> dict[str, tuple[int, int]]:
  """[begin, end) sample ranges of the train (first) and test (last) parts of a recording."""
  t = recording.signal.shape[0]
  boundary = int(round(t * (1.0 - test_fraction)))
  return {"train": (0, boundary), "test": (boundary, t)}


def split_windows(data_config: Any, split: str, recordings: Sequence[Recording] | None = None,
                  *, channels: Sequence[str] | None = None) -> EegWindows:
  """Train windows (stride ``stride_seconds``) or test windows (tiling, no overlap).

  Args:
    data_config: ``config.data``.
    split: "train" or "test".
    recordings: preprocessed recordings (default: ``load_recordings(data_config)``).
    channels: keep only these channels (default: ``config.data.input_channels`` for train,
      every channel for test, so held-out channels can be scored).
  """
  options = check_config(data_config)
  if split not in ("train", "test"):
    raise ValueError(f"split must be 'train' or 'test', got {split!r}")
  recordings = load_recordings(data_config) if recordings is None else list(recordings)
  names = options.input_channels if channels is None and split == "train" else channels
  if names:
    recordings = [pick_channels(r, names) for r in recordings]
  stride = options.stride if split == "train" else options.window
  return cut_windows(recordings, [split_ranges(r, options.test_fraction)[split]
                                  for r in recordings], options.window, stride)


class _Gather:
  """Maps example indices to a batch dict (module level: picklable for grain workers)."""

  def __init__(self, windows: EegWindows):
    self._windows = windows

  def __call__(self, indices: np.ndarray) -> dict[str, np.ndarray]:
    return self._windows.batch(indices)


def train_iterator(data_config: Any, *, global_batch_size: int, seed: int,
                   process_index: int = 0, process_count: int = 1) -> grain.DatasetIterator:
  """Endless, reshuffled-every-epoch batches of training windows for this process.

  The determinism contract is ``vqlearn.data.pipeline.batch_iterator``'s: global batch s
  depends only on (data config, seed, s), whatever the process count.

  Returns:
    A grain iterator of ``{'signal': (LB, W, C), 'positions': (LB, C, 3), 'channel_type':
    (LB, C), 'channel_mask': (LB, C)}`` with LB = global_batch_size // process_count.
  """
  windows = split_windows(data_config, "train")
  return pipeline.batch_iterator(len(windows.signal), _Gather(windows),
                                 global_batch_size=global_batch_size, seed=seed,
                                 process_index=process_index, process_count=process_count)
