"""The trainer end to end on real data (GunPoint, aeon's bundled copy), smoke-sized.

Covers: every output a run writes, resume-and-continue, bit-identical results after an
in-process stop and after SIGKILL, sharded vs single-device equivalence, the non-finite stop,
and config errors raised before anything is allocated.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import numpy as np
import optax
import pytest

from configs import timeseries
from tests.train.runs import REPO, final_params, main_command
from vqlearn.train import loop, train_and_evaluate, writers

def smoke_config(data_dir, arg="smoke", **overrides):
  config = timeseries.get_config(arg)
  config.data.dir = data_dir
  config.evals.classify = False
  config.evals.plots = False
  config.update_from_flattened_dict(overrides)
  return config


def assert_same(a, b):
  assert len(a) == len(b)
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x, y)


def test_smoke_run_writes_everything_then_resumes_and_continues(tmp_path, data_dir):
  workdir = str(tmp_path / "run")
  config = smoke_config(data_dir)
  config.evals.classify = True
  config.evals.plots = True
  metrics = train_and_evaluate(config, workdir)
  for key in ("mse", "mae", "perplexity", "usage", "linear_probe", "knn_histogram",
              "knn_levenshtein", "raw_1nn"):
    assert np.isfinite(metrics[key]), key
  assert 0 <= metrics["raw_1nn"] <= 1
  for name in ("config.json", "reconstructions.png", "code_usage.png", "curves.png"):
    assert os.path.getsize(os.path.join(workdir, name)) > 0, name
  assert any(f.startswith("events.out.tfevents")
             for f in os.listdir(os.path.join(workdir, "tensorboard")))
  records = writers.read_metrics(os.path.join(workdir, "metrics.jsonl"))
  train_steps = [r["step"] for r in records if r["kind"] == "train"]
  assert train_steps == [4, 8, 12]
  assert [r["step"] for r in records if r["kind"] == "eval"] == [6, 12]
  assert json.load(open(os.path.join(workdir, "config.json")))["quantizer"]["name"] == "vq"

  config.total_steps = 16  # extending a finished run resumes from its last checkpoint
  train_and_evaluate(config, workdir)
  records = writers.read_metrics(os.path.join(workdir, "metrics.jsonl"))
  assert [r["step"] for r in records if r["kind"] == "info"] == [0, 12]
  assert [r["step"] for r in records if r["kind"] == "train"] == [4, 8, 12, 16]
  assert final_params(workdir)[0] == 16


def test_stopped_and_resumed_run_is_bit_identical(tmp_path, data_dir):
  straight = str(tmp_path / "straight")
  train_and_evaluate(smoke_config(data_dir, total_steps=12), straight)
  stopped = str(tmp_path / "stopped")
  train_and_evaluate(smoke_config(data_dir, total_steps=6), stopped)  # checkpoint at 6
  train_and_evaluate(smoke_config(data_dir, total_steps=12), stopped)
  assert_same(final_params(straight)[1], final_params(stopped)[1])


def test_sharded_run_equals_single_device_run(tmp_path, data_dir):
  eight = str(tmp_path / "eight")
  train_and_evaluate(smoke_config(data_dir, total_steps=6), eight)
  one = str(tmp_path / "one")
  config = smoke_config(data_dir, total_steps=6)
  config.mesh = [("data", 1)]
  train_and_evaluate(config, one)
  for x, y in zip(final_params(eight)[1], final_params(one)[1]):
    np.testing.assert_allclose(x, y, rtol=2e-5, atol=2e-6)


def test_nonfinite_loss_stops_naming_the_step_and_keeps_last_good_checkpoint(
    tmp_path, data_dir, monkeypatch):
  def exploding_optimizer(config, total_steps):  # sane for 6 steps, then a learning rate of 1e27
    schedule = optax.piecewise_constant_schedule(1e-3, {5: 1e30})
    return optax.adam(schedule), schedule

  monkeypatch.setattr(loop, "make_optimizer", exploding_optimizer)
  workdir = str(tmp_path / "nan")
  config = smoke_config(data_dir, total_steps=40, checkpoint_every=4, log_every=2,
                        eval_every=0)
  with pytest.raises(FloatingPointError, match=r"non-finite loss or gradients at step ([5-9])"
                     r"; stopped. The last good checkpoint \(step 4\) is kept"):
    train_and_evaluate(config, workdir)
  step, params = final_params(workdir)
  assert step == 4
  assert all(np.isfinite(p).all() for p in params)


@pytest.mark.parametrize("override, match", [
    (dict(quantizer="nope"), "unknown quantizer 'nope'"),
    (dict(dataset="NoSuchSet"), "NoSuchSet"),
])
def test_unknown_names_are_clear_errors(tmp_path, data_dir, override, match):
  arg = ",".join(["smoke"] + [f"{k}={v}" for k, v in override.items()])
  with pytest.raises(ValueError, match=match):
    config = smoke_config(data_dir, arg)
    train_and_evaluate(config, str(tmp_path / "bad"))


def test_loss_weight_for_a_missing_term_is_an_error(tmp_path, data_dir):
  config = smoke_config(data_dir)
  config.loss_weights.diversity = 0.1  # vq returns codebook and commitment only
  with pytest.raises(ValueError, match=r"loss_weights names \['diversity'\]"):
    train_and_evaluate(config, str(tmp_path / "bad"))
  assert not os.path.exists(tmp_path / "bad" / "checkpoints")  # failed before any work


def test_resume_with_a_changed_config_is_an_error(tmp_path, data_dir):
  workdir = str(tmp_path / "run")
  train_and_evaluate(smoke_config(data_dir, total_steps=4), workdir)
  with pytest.raises(ValueError, match=r"differs from this config in \['seed'\]"):
    train_and_evaluate(smoke_config(data_dir, total_steps=4, seed=1), workdir)


def _run_until_checkpoint(command, env, checkpoints, at_least, sig):
  """Starts a run, sends ``sig`` once a checkpoint >= ``at_least`` exists; returns the exit code."""
  process = subprocess.Popen(command, env=env, cwd=REPO, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
  deadline = time.time() + 120
  while time.time() < deadline and process.poll() is None:
    done = [int(n) for n in os.listdir(checkpoints) if n.isdigit()] if os.path.isdir(
        checkpoints) else []
    if done and max(done) >= at_least:
      break
    time.sleep(0.02)
  process.send_signal(sig)
  return process.wait()


def test_sigkill_and_sigterm_then_restart_is_bit_identical(tmp_path, data_dir):
  straight, interrupted = str(tmp_path / "straight"), str(tmp_path / "interrupted")
  command, env = main_command(straight, data_dir)
  subprocess.run(command, env=env, cwd=REPO, check=True, capture_output=True)
  command, env = main_command(interrupted, data_dir)
  checkpoints = os.path.join(interrupted, "checkpoints")

  # SIGKILL: whatever was being written is lost; the last complete checkpoint survives.
  assert _run_until_checkpoint(command, env, checkpoints, 20, signal.SIGKILL) == -signal.SIGKILL
  killed_at = final_params(interrupted)[0]
  assert 20 <= killed_at < 200, "the run finished before it could be killed"
  # SIGTERM (preemption): the run saves where it is and exits cleanly.
  assert _run_until_checkpoint(command, env, checkpoints, killed_at + 20, signal.SIGTERM) == 0
  preempted_at = final_params(interrupted)[0]
  assert killed_at + 20 <= preempted_at < 200, "the run finished before it could be preempted"

  subprocess.run(command, env=env, cwd=REPO, check=True, capture_output=True)
  step, params = final_params(interrupted)
  assert step == 200
  assert_same(final_params(straight)[1], params)
  records = writers.read_metrics(os.path.join(interrupted, "metrics.jsonl"))
  assert [r["step"] for r in records if r["kind"] == "info"] == [0, killed_at, preempted_at]


def test_config_key_typo_on_the_command_line_fails(tmp_path, data_dir):
  command, env = main_command(str(tmp_path / "typo"), data_dir,
                              "--config.optimizer.lerning_rate=1")
  result = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True)
  assert result.returncode != 0
  assert "lerning_rate" in result.stderr
