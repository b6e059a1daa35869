"""The speech task and its config: fairseq/DinoSR presets as REFERENCE.md states them, the
losses per path, and smoke training end to end on both paths."""

import csv
import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import soundfile

from configs import speech as speech_config
from vqlearn import train
from vqlearn.train import loop
from vqlearn.train.tasks import speech as speech_task


def quantizer_of(preset):
  return loop.build_model(speech_config.get_config(f"quantizer={preset}")).quantizer


def test_vq_wav2vec_gumbel_preset_matches_reference():
  config = speech_config.get_config("quantizer=vq_wav2vec_gumbel")
  q = config.quantizer
  assert (q.name, q.num_groups, q.codebook_size, q.shared_codebook, q.logit_depth,
          q.logit_factor) == ("gumbel", 2, 320, True, 2, 2)
  assert tuple(q.temperature) == (2.0, 0.5, 0.999995) and dict(config.loss_weights) == {}
  quantizer = quantizer_of("vq_wav2vec_gumbel")
  assert quantizer.spec.num_symbols == 2 and quantizer.spec.vocab_size == 320
  params, state = quantizer.init(jax.random.PRNGKey(0), jax.ShapeDtypeStruct((4, 64), jnp.float32))
  assert params["codebook"].shape == (320, 32)  # one codebook shared by both groups
  assert params["hidden0_w"].shape == (64, 128)  # 2-layer head of width factor 2
  # tau(step) = max(2 * 0.999995^step, 0.5) (REFERENCE.md §2).
  x = jnp.ones((4, 64))
  for step, tau in ((0, 2.0), (100_000, 2 * 0.999995 ** 100_000), (400_000, 0.5)):
    out, _ = quantizer.apply(params, dict(state, step=jnp.int32(step)), x)
    assert float(out.metrics["temperature"]) == pytest.approx(tau, rel=1e-5)
  assert 2 * 0.999995 ** 100_000 == pytest.approx(1.2131, rel=1e-4)


def test_wav2vec2_diversity_preset_and_perplexities():
  config = speech_config.get_config("quantizer=wav2vec2_gumbel")
  assert dict(config.loss_weights) == {"diversity": 0.1}
  assert (config.quantizer.logit_depth, config.quantizer.shared_codebook) == (1, False)
  quantizer = quantizer_of("wav2vec2_gumbel")
  params, state = quantizer.init(jax.random.PRNGKey(0), jax.ShapeDtypeStruct((4, 64), jnp.float32))
  assert params["codebook"].shape == (640, 32)  # G * V entries of d / G
  # Uniform logits: prob_perplexity = G * V = 640 and diversity = (640 - 640) / 640 = 0.
  uniform = dict(params, logits_w=jnp.zeros_like(params["logits_w"]))
  out, _ = quantizer.apply(uniform, state, jnp.ones((6, 64)))
  assert float(out.metrics["prob_perplexity"]) == pytest.approx(640.0, rel=1e-4)
  assert float(out.losses["diversity"]) == pytest.approx(0.0, abs=1e-4)
  # Every row takes code 0 (argmax of equal logits) in both groups: hard perplexity 1 per
  # group, summed over the G = 2 groups (fairseq's code_perplexity).
  assert float(out.metrics["perplexity"]) == pytest.approx(2.0)


def test_kmeans_and_dinosr_presets_match_reference():
  kmeans = speech_config.get_config("quantizer=vq_wav2vec_kmeans")
  assert (kmeans.quantizer.name, kmeans.quantizer.num_groups, kmeans.quantizer.codebook_size,
          kmeans.quantizer.gamma, kmeans.quantizer.projection) == ("kmeans", 2, 320, 0.25, True)
  assert dict(kmeans.loss_weights) == {"kmeans": 1.0}  # fairseq --loss-weights [1]
  dinosr = speech_config.get_config("quantizer=dinosr")
  assert (dinosr.quantizer.name, dinosr.quantizer.codebook_size, dinosr.quantizer.decay) == (
      "online_kmeans", 256, 0.9)
  other = speech_config.get_config("quantizer=ema_vq")  # any registry name: common presets
  assert other.quantizer.codebook_size == 320 and dict(other.loss_weights) == {"commitment": 0.25}
  with pytest.raises(ValueError, match="config argument 'dataset' must be one of"):
    speech_config.get_config("dataset=librispeech")


def test_waveform_loss_is_l1_plus_stft():
  config = speech_config.get_config("smoke")
  config.model.update(kernels=(10, 3, 2), strides=(5, 2, 2))
  model = loop.build_model(config)
  rng = np.random.default_rng(0)
  batch = {"series": rng.normal(size=(2, 400, 1)).astype(np.float32),
           "mask": np.ones((2, 400), np.float32)}
  params, state = speech_task.init(model, jax.random.PRNGKey(0),
                                   {"series": jax.ShapeDtypeStruct((2, 400, 1), jnp.float32)})
  total, _, _, metrics = jax.jit(lambda p, s, b, r: speech_task.loss(model, p, s, b, r))(
      params, state, batch, jax.random.PRNGKey(1))
  assert float(metrics["l1"]) > 0 and float(metrics["stft"]) > 0
  assert float(total) == pytest.approx(float(metrics["l1"] + metrics["stft"]), rel=1e-6)


def tiny_corpus(root):
  """Twelve synthetic 'digits' (tones of two pitches) by four speakers, 16 kHz, 0.1-0.2 s."""
  folder = root / "clips"
  folder.mkdir(parents=True)
  rows = [["file", "label", "speaker", "split"]]
  for i in range(12):
    speaker, label = f"s{i % 4}", i % 2
    n = 1600 + 160 * (i % 5)
    x = 0.3 * np.sin(2 * np.pi * (300 + 400 * label) * np.arange(n) / 16000)
    soundfile.write(folder / f"{i}.wav", x.astype(np.float32), 16000, subtype="PCM_16")
    rows.append([f"{i}.wav", str(label), speaker, "test" if speaker == "s3" else "train"])
  with open(root / "labels.csv", "w", newline="") as f:
    csv.writer(f).writerows(rows)
  return folder, root / "labels.csv"


def test_smoke_training_end_to_end_on_waveforms(tmp_path):
  folder, labels = tiny_corpus(tmp_path)
  config = speech_config.get_config("smoke,dataset=files,quantizer=wav2vec2_gumbel")
  config.data.update(path=str(folder), labels=str(labels), dir=str(tmp_path / "tfds"))
  config.model.update(kernels=(10, 3, 2), strides=(5, 2, 2))  # hop 20: 80-160 tokens per clip
  config.update(total_steps=4, eval_every=0, checkpoint_every=4, log_every=2)
  config.evals.plots = False
  metrics = train.train_and_evaluate(config, str(tmp_path / "run"))
  for key in ("snr_db", "log_mel_distance", "perplexity", "code_perplexity/0",
              "prob_perplexity/1", "nmi", "purity", "knn_levenshtein", "linear_probe",
              "soft_linear_probe", "dtw_1nn"):
    assert math.isfinite(metrics[key]), key
  assert metrics["dtw_1nn"] == 1.0  # two pitches: warping cannot confuse them
  records = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl")]
  assert any("train/stft" in r or "stft" in r for r in records if r["kind"] != "eval")


def test_smoke_training_end_to_end_on_fsdd_frames(tmp_path):
  config = speech_config.get_config("smoke,dataset=fsdd_mfcc,quantizer=vq_wav2vec_kmeans")
  config.data.dir = str(tmp_path / "tfds")
  config.update(total_steps=4, eval_every=0, checkpoint_every=4, log_every=2)
  config.evals.update(plots=False, classify=False)
  metrics = train.train_and_evaluate(config, str(tmp_path / "run"))
  assert math.isfinite(metrics["mse"]) and metrics["perplexity"] >= 1.0
  assert os.path.exists(tmp_path / "run" / "config.json")


def test_waveform_model_on_feature_data_is_a_clear_error(tmp_path):
  config = speech_config.get_config("smoke,dataset=fsdd_mfcc")
  config.data.dir = str(tmp_path)
  with config.unlocked():
    config.model = speech_config.get_config("smoke").model
  model = loop.build_model(config)
  with pytest.raises(ValueError, match="holds features but config.model.name = 'speech_waveform'"):
    speech_task.Evaluator(config, model)
