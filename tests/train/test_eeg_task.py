"""The EEG task through the trainer: smoke runs of both presets on the spkit EEG, the
cross-montage evaluation, and errors before anything expensive."""

import json
import os

import jax
import numpy as np
import pytest

from configs import eeg as eeg_config
from vqlearn import train
from vqlearn.train import loop, tasks
from vqlearn.train.tasks import eeg as eeg_task


def smoke_config(data_dir, arg=""):
  config = eeg_config.get_config(",".join(filter(None, [arg, "smoke"])))
  config.data.dir = data_dir
  return config


def final_eval(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    records = [json.loads(line) for line in f]
  return [r for r in records if r["kind"] == "eval"][-1]


def test_cross_montage_smoke_run_scores_seen_unseen_and_spline(tmp_path, data_dir):
  metrics = train.train_and_evaluate(smoke_config(data_dir, "cross"), str(tmp_path))
  assert metrics == {k: v for k, v in final_eval(str(tmp_path)).items()
                     if k not in ("step", "kind", "time")}
  for key in ("seen/pcc", "unseen/pcc", "unseen/spline_pcc", "unseen_as_input/pcc",
              "seen/mse", "unseen/phase_error/alpha", "unseen/pcc/F3", "perplexity"):
    assert np.isfinite(metrics[key]), key
  assert "unseen/pcc/AF3" not in metrics  # AF3 is a seen channel: NaN-free keys only per split
  # 4 sources x 32 tokens (1 s at 128 Hz, compression 4) x 4 residual levels x log2(16) bits.
  assert metrics["bits_per_window"] == 4 * 32 * 4 * 4
  assert -1 <= metrics["unseen/spline_pcc"] <= 1
  for png in ("reconstructions.png", "code_usage.png", "curves.png"):
    assert os.path.exists(tmp_path / png)


def test_totem_preset_smoke_run(tmp_path, data_dir):
  metrics = train.train_and_evaluate(smoke_config(data_dir, "model=totem"), str(tmp_path))
  assert all(np.isfinite(metrics[f"pcc/{c}"]) for c in eeg_config.SEEN)
  assert metrics["bits_per_window"] == 14 * 32 * 4  # channel-independent: 14 x 32 tokens


def test_nonfinite_reconstructions_raise(data_dir):
  config = smoke_config(data_dir)
  model = loop.build_model(config)
  batch = next(eeg_task.train_iterator(config, model, global_batch_size=2, seed=0))
  spec = {k: jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in batch.items()}
  params, state = jax.jit(lambda r: tasks.get(config).init(model, r, spec))(
      jax.random.PRNGKey(0))
  params["decoder"] = jax.tree.map(lambda x: x * np.nan, params["decoder"])
  with pytest.raises(FloatingPointError, match="not finite"):
    eeg_task.Evaluator(config, model)(params, state)


@pytest.mark.parametrize("field,value,message", [
    ("montage", "nope", "unknown montage 'nope'"),
    ("input_channels", "AF3,Cz", r"has no channels \['Cz'\]"),
    ("window_seconds", 0.5078125, "not a multiple of the model's compression"),  # 65 samples
])
def test_data_errors_surface_before_training(tmp_path, data_dir, field, value, message):
  config = smoke_config(data_dir)
  config.data[field] = value
  with pytest.raises(ValueError, match=message):
    train.train_and_evaluate(config, str(tmp_path))
  assert not os.path.exists(tmp_path / "checkpoints")
