"""Run outputs: ``metrics.jsonl``, TensorBoard event files and a progress line.

Every run writes its measurements twice (shared/DESIGN.md, "Training"):

- ``workdir/metrics.jsonl``: one JSON object per ``MetricWriter.write`` call,
  ``{"step": int, "kind": str, "time": unix seconds, <metric>: number, ...}``. It is the
  source of truth for tables and plots (``read_metrics``), needs no reader library, and survives
  a SIGKILL: each line goes to the file in one ``os.write`` on an ``O_APPEND`` descriptor, so
  nothing already written is lost and at most the line being written is cut short.
- ``workdir/tensorboard/events.out.tfevents.<time>.<hostname>``: the same scalars as
  ``f"{kind}/{metric}"`` tags, for TensorBoard. The file format (TFRecord framing around
  ``Event`` protocol buffers) is written here by hand, so neither TensorFlow nor tensorboardX is
  needed; the ``tensorboard`` package is only used by the tests, to read the files back.

Only scalars are logged: Python and NumPy numbers and 0-d arrays (a ``jax.Array`` converts
through ``np.asarray``, so pass host values, e.g. after ``jax.device_get``). Anything else
(arrays with elements, strings, ``None``) is skipped with a one-time warning per key.
Non-finite floats are written to the JSON as the strings ``"NaN"``, ``"Infinity"`` and
``"-Infinity"`` (strict JSON has no such numbers), and ``read_metrics`` turns them back into
floats; TensorBoard gets them as IEEE floats.

A resumed run re-logs the steps after its last checkpoint. ``read_metrics`` keeps the last
record per (kind, step). Each event file marks its first write's step s with a
``SessionLog.START`` at s + 1, which makes TensorBoard drop what earlier files logged after s:
the trainer's first write is at its resume step, whose old measurements describe the restored
state and stay. (The Python ``EventAccumulator`` honours this; the Rust data server of
``tensorboard --load_fast=true`` was not checked.)
"""

from __future__ import annotations

import collections
import datetime
import json
import logging
import math
import os
import shutil
import socket
import struct
import sys
import time
from typing import Any, Callable, Mapping, TextIO

import numpy as np

METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"
_RESERVED = ("step", "kind", "time")
# JSON spellings of the non-finite floats (the JavaScript names, which json.loads also knows).
_NONFINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}

_log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------
# Scalars.
# ----------------------------------------------------------------------------------------------

def _to_scalar(value: Any) -> int | float | None:
  """A plain Python int or float for a scalar value, None for anything that is not one."""
  if isinstance(value, (bool, np.bool_)):
    return int(value)
  if isinstance(value, int):
    return int(value)
  if isinstance(value, float):  # Also np.float64, a float subclass: made a plain float.
    return float(value)
  try:
    array = np.asarray(value)
  except Exception:  # Objects NumPy cannot convert are not scalars either.
    return None
  if array.ndim != 0:
    return None
  if array.dtype == np.bool_ or np.issubdtype(array.dtype, np.integer):
    return int(array)
  if np.issubdtype(array.dtype, np.floating):
    return float(array)
  return None


def _json_number(value: int | float) -> int | float | str:
  if isinstance(value, float) and not math.isfinite(value):
    return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
  return value


def _from_json(name: str, value: Any) -> Any:
  if name in _RESERVED or not isinstance(value, str):
    return value
  return _NONFINITE.get(value, value)


# ----------------------------------------------------------------------------------------------
# TensorBoard event files: TFRecord framing around hand-encoded protocol buffers.
# ----------------------------------------------------------------------------------------------

def _crc32c_table() -> tuple[int, ...]:
  # CRC-32C (Castagnoli), reflected polynomial 0x82F63B78 (RFC 3720 §B.4).
  table = []
  for byte in range(256):
    crc = byte
    for _ in range(8):
      crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
    table.append(crc)
  return tuple(table)


_CRC32C_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
  """CRC-32C of ``data``, the checksum TFRecord files use (byte-at-a-time table lookup).

  Args:
    data: the bytes to checksum.

  Returns:
    The checksum as an unsigned 32-bit int; ``crc32c(b"123456789") == 0xE3069283``.
  """
  crc = 0xFFFFFFFF
  for byte in data:
    crc = _CRC32C_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
  return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
  """The TFRecord checksum: CRC-32C rotated right by 15 bits plus a constant.

  TFRecord masks its checksums so that a CRC of data that itself holds CRCs stays well mixed
  (tensorflow/core/lib/hash/crc32c.h, ``Mask``).
  """
  crc = crc32c(data)
  return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _tfrecord(data: bytes) -> bytes:
  """One TFRecord: uint64 length, masked CRC of the length, data, masked CRC of the data."""
  length = struct.pack("<Q", len(data))
  return (length + struct.pack("<I", masked_crc32c(length)) + data
          + struct.pack("<I", masked_crc32c(data)))


def _varint(value: int) -> bytes:
  value &= (1 << 64) - 1  # Negative int64s are encoded as their 64-bit two's complement.
  out = bytearray()
  while True:
    byte = value & 0x7F
    value >>= 7
    if value:
      out.append(byte | 0x80)
    else:
      out.append(byte)
      return bytes(out)


def _field(number: int, wire_type: int) -> bytes:
  return _varint(number << 3 | wire_type)


def _length_delimited(number: int, payload: bytes) -> bytes:
  return _field(number, 2) + _varint(len(payload)) + payload


# Field numbers from tensorboard/compat/proto/event.proto and summary.proto.
def _event(wall_time: float, step: int, *, file_version: str | None = None,
           summary: bytes | None = None, session_log: bytes | None = None) -> bytes:
  """An ``Event``: wall_time (1, double), step (2, int64), file_version (3), summary (5),
  session_log (7)."""
  out = _field(1, 1) + struct.pack("<d", wall_time) + _field(2, 0) + _varint(step)
  if file_version is not None:
    out += _length_delimited(3, file_version.encode())
  if summary is not None:
    out += _length_delimited(5, summary)
  if session_log is not None:
    out += _length_delimited(7, session_log)
  return out


def _scalar_summary(values: Mapping[str, float]) -> bytes:
  """A ``Summary`` of ``Value``s: tag (1, string) and simple_value (2, float32)."""
  return b"".join(
      _length_delimited(1, _length_delimited(1, tag.encode()) + _field(2, 5)
                        + struct.pack("<f", value))
      for tag, value in values.items())


_SESSION_LOG_START = _field(1, 0) + _varint(1)  # SessionLog { status: START }


def _write_all(fd: int, data: bytes) -> None:
  # os.write may write less than asked (signals, full disks); the rest must still go out.
  view = memoryview(data)
  while view:
    view = view[os.write(fd, view):]


class _EventFile:
  """An append-only TensorBoard event file in ``logdir``; every event is on disk on return."""

  def __init__(self, logdir: str):
    os.makedirs(logdir, exist_ok=True)
    base = os.path.join(logdir, f"events.out.tfevents.{int(time.time()):010d}."
                        f"{socket.gethostname()}")
    # Two writers in the same second (a fast restart) get distinct files; the suffix sorts the
    # newer file after the older one, which is the order TensorBoard reads them in.
    path, suffix = base, 0
    while True:
      try:
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        break
      except FileExistsError:
        suffix += 1
        path = f"{base}.{suffix}"
    self.path = path
    self._started = False
    self._write(_event(time.time(), 0, file_version="brain.Event:2"))

  def _write(self, event: bytes) -> None:
    _write_all(self._fd, _tfrecord(event))

  def scalars(self, step: int, wall_time: float, values: Mapping[str, float]) -> None:
    if not self._started:
      # TensorBoard drops earlier files' events with step >= step + 1: the resumed run
      # replaces everything after its first step (see the module docstring).
      self._write(_event(wall_time, step + 1, session_log=_SESSION_LOG_START))
      self._started = True
    if values:
      self._write(_event(wall_time, step, summary=_scalar_summary(values)))

  def close(self) -> None:
    if self._fd >= 0:
      os.close(self._fd)
      self._fd = -1


# ----------------------------------------------------------------------------------------------
# The metric writer and its reader.
# ----------------------------------------------------------------------------------------------

class MetricWriter:
  """Appends scalar metrics to ``workdir/metrics.jsonl`` and to TensorBoard event files.

  Usage::

    writer = MetricWriter(workdir, enabled=jax.process_index() == 0)
    writer.write(step, "train", {"loss": 0.12, "perplexity": 310.0})
    writer.close()

  Files are opened in the constructor (only when enabled); each ``write`` is on disk, as far as
  the operating system is concerned, when it returns.

  Args:
    workdir: the run's directory; created if missing.
    enabled: False on processes other than 0: then nothing is written and no file is created.
  """

  def __init__(self, workdir: str | os.PathLike, *, enabled: bool = True):
    self.enabled = enabled
    self._warned: set[str] = set()
    self._fd = -1
    self._events = None
    if not enabled:
      return
    workdir = os.fspath(workdir)
    os.makedirs(workdir, exist_ok=True)
    self.path = os.path.join(workdir, METRICS_FILE)
    self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    # A run killed mid-line leaves a fragment without its newline; end it here so that the
    # first line of this run stays parseable (read_metrics skips the fragment).
    if os.fstat(self._fd).st_size:
      with open(self.path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        if f.read(1) != b"\n":
          _write_all(self._fd, b"\n")
    self._events = _EventFile(os.path.join(workdir, TENSORBOARD_DIR))

  def write(self, step: int, kind: str, metrics: Mapping[str, Any]) -> None:
    """Logs the scalars in ``metrics`` at ``step`` under ``kind``.

    Args:
      step: the training step (an int, or anything ``int()`` accepts).
      kind: what the numbers measure, e.g. ``"train"`` or ``"eval"``; TensorBoard tags are
        ``f"{kind}/{key}"``.
      metrics: name -> scalar. Non-scalars are skipped (warned once per key); the names
        ``step``, ``kind`` and ``time`` are reserved.

    Raises:
      ValueError: ``kind`` is empty, a metric name is reserved, or the writer is closed.
    """
    if not self.enabled:
      return
    if self._events is None:
      raise ValueError(f"MetricWriter for {self.path} is closed")
    if not isinstance(kind, str) or not kind:
      raise ValueError(f"kind must be a non-empty string, got {kind!r}")
    clash = [key for key in metrics if key in _RESERVED]
    if clash:
      raise ValueError(f"metric names {clash} are reserved in {METRICS_FILE}; rename them")
    step = int(step)
    now = time.time()
    scalars = {}
    for key, value in metrics.items():
      scalar = _to_scalar(value)
      if scalar is None:
        if key not in self._warned:
          self._warned.add(key)
          _log.warning("MetricWriter skips %r: not a scalar (%s)", key, type(value).__name__)
        continue
      scalars[key] = scalar
    record = {"step": step, "kind": kind, "time": now}
    record.update({key: _json_number(value) for key, value in scalars.items()})
    line = json.dumps(record, allow_nan=False) + "\n"
    _write_all(self._fd, line.encode())
    self._events.scalars(step, now, {f"{kind}/{key}": float(value)
                                     for key, value in scalars.items()})

  def close(self) -> None:
    """Closes the files; later writes raise ValueError. Safe to call twice."""
    if self._fd >= 0:
      os.close(self._fd)
      self._fd = -1
    if self._events is not None:
      self._events.close()
      self._events = None

  def __enter__(self) -> MetricWriter:
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
  """Reads the records of a ``metrics.jsonl`` written by ``MetricWriter``.

  Lines that are not valid JSON are skipped: the last line of a run killed mid-write, and that
  same fragment in the middle of the file once a resumed run has appended after it. A resumed
  run logs again the steps after its last checkpoint, so for each (kind, step) the record
  written last wins.

  Args:
    path: the ``metrics.jsonl`` file, or the workdir holding it.

  Returns:
    One dict per (kind, step), sorted by step, then by the order in which the kinds first
    appear in the file. Non-finite values come back as float NaN / inf.

  Raises:
    FileNotFoundError: the file does not exist.
  """
  path = os.fspath(path)
  if os.path.isdir(path):
    path = os.path.join(path, METRICS_FILE)
  if not os.path.exists(path):
    raise FileNotFoundError(f"no metrics file at {path} (written by MetricWriter as "
                            f"workdir/{METRICS_FILE})")
  with open(path, "rb") as f:
    lines = f.read().split(b"\n")
  latest: dict[tuple[str, int], dict[str, Any]] = {}
  kind_order: dict[str, int] = {}
  for number, line in enumerate(lines, start=1):
    if not line.strip():
      continue
    try:
      record = json.loads(line)
      key = (record["kind"], int(record["step"]))
    except (ValueError, KeyError, TypeError):
      if number < len(lines):  # A last line without its newline was cut short by a crash.
        _log.warning("%s:%d is not a metrics record (a crash mid-write?); skipped", path,
                     number)
      continue
    kind_order.setdefault(key[0], len(kind_order))
    latest[key] = {name: _from_json(name, value) for name, value in record.items()}
  return sorted(latest.values(), key=lambda r: (r["step"], kind_order[r["kind"]]))


# ----------------------------------------------------------------------------------------------
# Progress line.
# ----------------------------------------------------------------------------------------------

def _duration(seconds: float) -> str:
  return str(datetime.timedelta(seconds=round(seconds)))


class ProgressBar:
  """A progress line: step/total, steps/s over recent steps, ETA and the latest scalars.

  On a terminal the line is rewritten in place (``\\r``) at most every ``refresh_s`` seconds;
  otherwise (log files, notebooks' captured streams) a plain line is printed for the first
  update, then at most every ``log_every_s`` seconds, and at the last step. The first update
  after construction includes compilation, so speed is measured from it on, never across it.

  Scalars given to ``update`` are only converted with ``float()`` when a line is drawn, so
  device arrays can be passed every step without forcing a device sync each time.

  Args:
    total_steps: the step the run ends at.
    initial_step: where this (possibly resumed) run starts.
    enabled: False on processes other than 0: nothing is printed.
    stream: where to print.
    log_every_s: seconds between lines when ``stream`` is not a terminal.
    refresh_s: seconds between redraws on a terminal.
    clock: monotonic time source (tests pass a fake one).
  """

  _WINDOW = 20  # Samples kept for the speed estimate; one at most every _SAMPLE_S seconds.
  _SAMPLE_S = 0.5

  def __init__(self, total_steps: int, *, initial_step: int = 0, enabled: bool = True,
               stream: TextIO | None = None, log_every_s: float = 10.0,
               refresh_s: float = 0.2, clock: Callable[[], float] = time.monotonic):
    self.total_steps = int(total_steps)
    self.initial_step = int(initial_step)
    self.enabled = enabled
    self._stream = sys.stderr if stream is None else stream
    try:
      self._tty = bool(self._stream.isatty())
    except (AttributeError, ValueError):
      self._tty = False
    self._interval = refresh_s if self._tty else log_every_s
    self._clock = clock
    self._start = clock()
    self._first: tuple[float, int] | None = None  # (time, step) of the first update.
    self._latest: tuple[float, int] | None = None  # (time, step) of the newest update.
    self._drawn = False  # Whether the newest update has been shown.
    self._samples: collections.deque[tuple[float, int]] = collections.deque(
        maxlen=self._WINDOW)
    self._last_draw = -math.inf
    self._step = self.initial_step
    self._scalars: dict[str, Any] = {}
    self._open_line = False  # A '\r' line on the terminal waits for its newline.
    self._closed = False

  def steps_per_second(self) -> float | None:
    """Speed over the recent updates (about the last 10 s), None before two updates."""
    if self._latest is None or not self._samples:
      return None
    (t0, s0), (t1, s1) = self._samples[0], self._latest
    return (s1 - s0) / (t1 - t0) if t1 > t0 else None

  def update(self, step: int, **scalars: Any) -> None:
    """Records that ``step`` is done; ``scalars`` (e.g. ``loss=...``) update the values shown.

    Values given earlier keep being shown until new ones arrive, so the trainer can call
    ``update(step)`` every step and ``update(step, loss=...)`` when it logs.
    """
    if not self.enabled:
      return
    now = self._clock()
    self._step = int(step)
    self._scalars.update(scalars)
    self._latest = (now, self._step)
    first = self._first is None
    if first:
      self._first = self._latest
    if not self._samples or now - self._samples[-1][0] >= self._SAMPLE_S:
      self._samples.append(self._latest)
    last = self._step >= self.total_steps
    self._drawn = first or last or now - self._last_draw >= self._interval
    if self._drawn:
      self._draw(self._line(now), final=last)
      self._last_draw = now

  def _line(self, now: float) -> str:
    total = self.total_steps
    parts = [f"step {self._step}/{total}"]
    if total > 0:
      parts.append(f"{100 * self._step / total:3.0f}%")
    rate = self.steps_per_second()
    if rate is None:
      parts.append(f"first step {now - self._start:.1f}s (compile)")
    else:
      parts.append(f"{rate:.3g} steps/s")
      remaining = max(total - self._step, 0)
      parts.append(f"ETA {_duration(remaining / rate) if rate > 0 else '?'}")
    for name, value in self._scalars.items():
      try:
        parts.append(f"{name} {float(value):.4g}")
      except (TypeError, ValueError):
        parts.append(f"{name} {value}")
    return "  ".join(parts)

  def _draw(self, line: str, *, final: bool = False) -> None:
    if self._tty:
      width = shutil.get_terminal_size().columns - 1  # A wrapped line cannot be rewritten.
      line = line[:width]
      self._stream.write("\r" + line + "\x1b[K" + ("\n" if final else ""))
      self._open_line = not final
    else:
      self._stream.write(line + "\n")
    self._stream.flush()

  def close(self) -> None:
    """Prints the latest state if not shown yet, then steps run, total time and mean speed."""
    if not self.enabled or self._closed:
      return
    self._closed = True
    now = self._clock()
    if self._latest is not None and not self._drawn:
      self._draw(self._line(self._latest[0]), final=True)
    elif self._open_line:
      self._stream.write("\n")
      self._open_line = False
    summary = f"done: {self._step - self.initial_step} steps in {_duration(now - self._start)}"
    if self._latest is not None and self._latest[0] > self._first[0]:
      (t0, s0), (t1, s1) = self._first, self._latest
      summary += f", mean {(s1 - s0) / (t1 - t0):.3g} steps/s after the first step"
    self._stream.write(summary + "\n")
    self._stream.flush()
