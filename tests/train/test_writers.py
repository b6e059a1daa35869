"""Tests for vqlearn.train.writers: metrics.jsonl, TensorBoard event files, the progress line."""

from __future__ import annotations

import io
import json
import math
import os
import signal
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from vqlearn.train import writers


def _read_events(logdir):
  from tensorboard.backend.event_processing import event_accumulator
  accumulator = event_accumulator.EventAccumulator(os.fspath(logdir))
  accumulator.Reload()
  return accumulator


def _scalars(accumulator, tag):
  return [(event.step, event.value) for event in accumulator.Scalars(tag)]


# ----------------------------------------------------------------------------------------------
# Checksums.
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("data, expected", [
    (b"", 0x00000000),
    (b"123456789", 0xE3069283),  # The CRC-32C check value.
    (bytes(32), 0x8A9136AA),  # RFC 3720 §B.4 vectors from here on.
    (b"\xff" * 32, 0x62A8AB43),
    (bytes(range(32)), 0x46DD794E),
    (bytes(range(31, -1, -1)), 0x113FDB5C),
])
def test_crc32c_known_vectors(data, expected):
  assert writers.crc32c(data) == expected


def test_masked_crc32c_matches_tensorboard():
  from tensorboard.compat.tensorflow_stub import pywrap_tensorflow
  rng = np.random.default_rng(0)
  for size in (0, 1, 8, 100, 1000):
    data = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
    assert writers.masked_crc32c(data) == pywrap_tensorflow.masked_crc32c(data)


# ----------------------------------------------------------------------------------------------
# metrics.jsonl.
# ----------------------------------------------------------------------------------------------

def test_jsonl_round_trip(tmp_path):
  metrics = {"loss": np.float32(0.125), "count": np.int64(7), "flag": np.bool_(True),
             "python": 2.5, "zero_d": np.array(3.0), "nan": math.nan, "inf": np.float64(math.inf),
             "minus_inf": -math.inf}
  with writers.MetricWriter(tmp_path) as writer:
    writer.write(np.int32(3), "train", metrics)

  lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
  assert len(lines) == 1

  def reject(constant):
    raise AssertionError(f"non-standard JSON constant {constant}")

  raw = json.loads(lines[0], parse_constant=reject)  # Strict JSON: no bare NaN / Infinity.
  assert raw["nan"] == "NaN" and raw["inf"] == "Infinity" and raw["minus_inf"] == "-Infinity"
  assert type(raw["count"]) is int and type(raw["flag"]) is int and type(raw["loss"]) is float

  [record] = writers.read_metrics(tmp_path / "metrics.jsonl")
  assert record["step"] == 3 and record["kind"] == "train"
  assert abs(record["time"] - os.path.getmtime(tmp_path / "metrics.jsonl")) < 60
  assert record["loss"] == 0.125 and record["count"] == 7 and record["flag"] == 1
  assert record["python"] == 2.5 and record["zero_d"] == 3.0
  assert math.isnan(record["nan"])
  assert record["inf"] == math.inf and record["minus_inf"] == -math.inf


def test_non_scalars_are_skipped_and_reserved_names_rejected(tmp_path):
  with writers.MetricWriter(tmp_path) as writer:
    writer.write(1, "eval", {"vector": np.ones(3), "text": "abc", "none": None, "mse": 0.5})
    with pytest.raises(ValueError, match="reserved"):
      writer.write(2, "eval", {"step": 1.0})
    with pytest.raises(ValueError, match="kind"):
      writer.write(2, "", {"mse": 1.0})
  with pytest.raises(ValueError, match="closed"):
    writer.write(2, "eval", {"mse": 1.0})
  [record] = writers.read_metrics(tmp_path)
  assert set(record) == {"step", "kind", "time", "mse"}
  assert set(_read_events(tmp_path / "tensorboard").Tags()["scalars"]) == {"eval/mse"}


def test_last_record_per_step_wins_and_truncated_lines_are_skipped(tmp_path):
  path = tmp_path / "metrics.jsonl"
  with writers.MetricWriter(tmp_path) as writer:  # A first run, killed after step 4...
    for step in range(1, 5):
      writer.write(step, "train", {"loss": float(step)})
      if step % 2 == 0:
        writer.write(step, "eval", {"mse": 10.0 * step})
  with open(path, "a") as f:
    f.write('{"step": 5, "kind": "train", "lo')  # ...in the middle of a line.

  records = writers.read_metrics(path)
  assert [(r["step"], r["kind"]) for r in records] == [
      (1, "train"), (2, "train"), (2, "eval"), (3, "train"), (4, "train"), (4, "eval")]

  # The second run resumes from a checkpoint at step 2 and logs steps 3 and 4 again.
  with writers.MetricWriter(tmp_path) as writer:
    writer.write(3, "train", {"loss": -3.0})
    writer.write(4, "eval", {"mse": -40.0})
    writer.write(4, "train", {"loss": -4.0})
  records = writers.read_metrics(tmp_path)  # The fragment is now a middle line.
  assert [(r["step"], r["kind"]) for r in records] == [
      (1, "train"), (2, "train"), (2, "eval"), (3, "train"), (4, "train"), (4, "eval")]
  values = {(r["kind"], r["step"]): r.get("loss", r.get("mse")) for r in records}
  assert values == {("train", 1): 1.0, ("train", 2): 2.0, ("eval", 2): 20.0,
                    ("train", 3): -3.0, ("train", 4): -4.0, ("eval", 4): -40.0}


def test_sigkill_loses_nothing_written(tmp_path):
  # The child loads writers.py by path: importing the vqlearn package would load JAX (slow).
  script = textwrap.dedent(f"""
      import importlib.util, os, signal
      spec = importlib.util.spec_from_file_location("writers", {writers.__file__!r})
      writers = importlib.util.module_from_spec(spec)
      spec.loader.exec_module(writers)
      writer = writers.MetricWriter({os.fspath(tmp_path)!r})
      for step in range(3):
        writer.write(step, "train", {{"loss": float(step)}})
      os.kill(os.getpid(), signal.SIGKILL)
      """)
  result = subprocess.run([sys.executable, "-c", script], timeout=60)
  assert result.returncode == -signal.SIGKILL
  assert [r["loss"] for r in writers.read_metrics(tmp_path)] == [0.0, 1.0, 2.0]
  assert _scalars(_read_events(tmp_path / "tensorboard"), "train/loss") == [
      (0, 0.0), (1, 1.0), (2, 2.0)]


def test_read_metrics_missing_file(tmp_path):
  with pytest.raises(FileNotFoundError, match="metrics.jsonl"):
    writers.read_metrics(tmp_path)


def test_disabled_writer_creates_nothing(tmp_path):
  workdir = tmp_path / "run"
  writer = writers.MetricWriter(workdir, enabled=False)
  writer.write(1, "train", {"loss": 1.0})
  writer.close()
  assert not workdir.exists()


# ----------------------------------------------------------------------------------------------
# TensorBoard event files.
# ----------------------------------------------------------------------------------------------

def test_tensorboard_events_read_back(tmp_path):
  rng = np.random.default_rng(1)
  logged = {}
  with writers.MetricWriter(tmp_path) as writer:
    for step in (0, 1, 5, 10, 2**40):  # 2**40: steps are int64, not int32.
      loss, perplexity = rng.normal(), rng.uniform(1, 512)
      writer.write(step, "train", {"loss": loss, "perplexity": perplexity})
      logged[step] = (loss, perplexity)
    writer.write(10, "eval", {"mse": math.nan})

  [name] = os.listdir(tmp_path / "tensorboard")
  assert name.startswith("events.out.tfevents.") and socket.gethostname() in name
  accumulator = _read_events(tmp_path / "tensorboard")
  assert set(accumulator.Tags()["scalars"]) == {"train/loss", "train/perplexity", "eval/mse"}
  for tag, index in (("train/loss", 0), ("train/perplexity", 1)):
    read = _scalars(accumulator, tag)
    assert [step for step, _ in read] == list(logged)
    # simple_value is a float32 field.
    np.testing.assert_array_equal([value for _, value in read],
                                  np.float32([logged[step][index] for step in logged]))
  [(step, value)] = _scalars(accumulator, "eval/mse")
  assert step == 10 and math.isnan(value)


def test_tensorboard_resumed_run_replaces_later_steps(tmp_path):
  with writers.MetricWriter(tmp_path) as writer:
    for step in range(1, 6):
      writer.write(step, "train", {"loss": 1.0})
  with writers.MetricWriter(tmp_path) as writer:  # Resumed from a checkpoint at step 2.
    writer.write(2, "info", {"compile_seconds": 3.0})
    for step in (3, 4):
      writer.write(step, "train", {"loss": 2.0})

  assert len(os.listdir(tmp_path / "tensorboard")) == 2
  accumulator = _read_events(tmp_path / "tensorboard")
  # The old run's steps 1-2 stay (step 2 is the checkpoint); 3-5 are the new run's or gone.
  assert _scalars(accumulator, "train/loss") == [(1, 1.0), (2, 1.0), (3, 2.0), (4, 2.0)]
  assert len(writers.read_metrics(tmp_path)) == 6


# ----------------------------------------------------------------------------------------------
# Progress line.
# ----------------------------------------------------------------------------------------------

class _Clock:
  def __init__(self):
    self.now = 0.0

  def __call__(self):
    return self.now


class _Terminal(io.StringIO):
  def isatty(self):
    return True


def test_progress_bar_plain_lines_speed_and_eta():
  clock, stream = _Clock(), io.StringIO()
  bar = writers.ProgressBar(41, stream=stream, log_every_s=5.0, clock=clock)
  clock.now = 10.0  # The first step includes 10 s of compilation...
  bar.update(1, loss=np.float32(0.5))
  for step in range(2, 42):
    clock.now += 0.5  # ...then 2 steps/s.
    bar.update(step)
  clock.now += 1.0
  bar.close()

  lines = stream.getvalue().splitlines()
  # The first step, then one line per 5 s (10 steps), the last step and the summary.
  assert [line.split()[1] for line in lines[:-1]] == ["1/41", "11/41", "21/41", "31/41", "41/41"]
  assert "compile" in lines[0]
  # Steps 1-11 took 5 s: 2 steps/s, 30 steps to go, so 15 s; the loss given at step 1 stays.
  assert "2 steps/s" in lines[1] and "ETA 0:00:15" in lines[1] and "loss 0.5" in lines[1]
  assert "ETA 0:00:00" in lines[4]
  # 40 steps in 20 s after the first step: a speed that counted compilation would be lower.
  assert lines[-1] == "done: 41 steps in 0:00:31, mean 2 steps/s after the first step"


def test_progress_bar_terminal_rewrites_one_line():
  clock, stream = _Clock(), _Terminal()
  bar = writers.ProgressBar(10, initial_step=5, stream=stream, clock=clock)
  for step in range(6, 9):
    clock.now += 1.0
    bar.update(step, loss=1.0 / step)
  assert stream.getvalue().count("\r") == 3 and "\n" not in stream.getvalue()
  bar.close()  # Interrupted at step 8: the line is finished, then the summary.
  output = stream.getvalue()
  assert output.endswith("\ndone: 3 steps in 0:00:03, mean 1 steps/s after the first step\n")
  assert "steps/s" in output and "ETA 0:00:02" in output


def test_progress_bar_disabled_prints_nothing():
  stream = io.StringIO()
  bar = writers.ProgressBar(10, enabled=False, stream=stream)
  bar.update(1, loss=1.0)
  bar.close()
  assert stream.getvalue() == ""
