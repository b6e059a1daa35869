"""The speech task: spoken clips through a waveform or frame-feature tokenizer, scored on the
held-out split by reconstruction, code/prob perplexity per group, unit quality without labels
(NMI, purity) and digit classification from codes beside the DTW 1-NN baseline.

Waveform models (``speech_waveform``) train on L1 + multi-resolution STFT of the normalised
waveform and are scored by SNR and log-mel distance after undoing the normalisation; frame
models (``speech_frames``) train and are scored by the MSE of the CMVN-normalised features.
The DTW baseline runs on the raw features (FSDD's MFCCs; 40-band log-mel for waveforms), both
CMVN-normalised per utterance, and is computed once per dataset per process.
"""

from __future__ import annotations

from typing import Any

import jax
import ml_collections
import numpy as np

from vqlearn import evaluators, losses
from vqlearn.data import speech as speech_data
from vqlearn.evaluators import speech as speech_eval
from vqlearn.models.speech import WaveformAutoencoder
from vqlearn.train import plots
from vqlearn.train.tasks import Evaluation, Task, check_finite, padded_chunks

_DTW_CACHE: dict[tuple, float] = {}  # (prepared dataset, split) -> DTW 1-NN accuracy


def train_iterator(config: ml_collections.ConfigDict, model, **kwargs: Any):
  """Clips padded to the model's hop: ``{'series': (LB, T, C), 'mask': (LB, T), 'label'}``."""
  return speech_data.train_iterator(config.data, pad_multiple=model.compression, **kwargs)


def init(model, rng, batch_spec):
  return model.init(rng, jax.ShapeDtypeStruct(batch_spec["series"].shape, np.float32))


def loss(model, params, model_state, batch, rng):
  """Waveforms: L1 + multi-resolution STFT; features: MSE (both on normalised inputs)."""
  mask = batch["mask"]
  out, model_state = model.apply(params, model_state, batch["series"], mask=mask, rng=rng,
                                 train=True)
  if isinstance(model, WaveformAutoencoder):
    l1 = losses.masked_mae(out.target, out.reconstruction, mask)
    stft = losses.multi_resolution_stft(out.target, out.reconstruction, mask)
    return l1 + stft, out.quantizer, model_state, {"l1": l1, "stft": stft}
  return losses.masked_mse(out.target, out.reconstruction, mask), out.quantizer, model_state, {}


def cmvn(series: np.ndarray, mask: np.ndarray) -> np.ndarray:
  """Per-utterance mean and variance normalisation of each feature over the real frames."""
  keep = (mask > 0)[..., None]
  count = np.maximum(keep.sum(axis=1, keepdims=True), 1)
  mean = np.where(keep, series, 0.0).sum(axis=1, keepdims=True) / count
  var = np.where(keep, (series - mean) ** 2, 0.0).sum(axis=1, keepdims=True) / count
  return np.where(keep, (series - mean) / np.sqrt(var + 1e-5), 0.0).astype(np.float32)


def baseline_features(clips: speech_data.SpeechSet) -> tuple[np.ndarray, np.ndarray]:
  """What DTW compares: CMVN'd features, or CMVN'd 40-band log-mel (25 ms / 10 ms) of audio."""
  if clips.kind == "waveform":
    feats, frame_mask = speech_eval.log_mel(clips.series, clips.mask, clips.rate, bands=40)
    return cmvn(feats, frame_mask), frame_mask
  return cmvn(clips.series, clips.mask), clips.mask


def dtw_baseline(key: tuple, train: speech_data.SpeechSet, test: speech_data.SpeechSet) -> float:
  if key not in _DTW_CACHE:
    a, a_mask = baseline_features(train)
    b, b_mask = baseline_features(test)
    _DTW_CACHE[key] = speech_eval.dtw_1nn_accuracy(a, a_mask, train.labels, b, b_mask,
                                                   test.labels)
  return _DTW_CACHE[key]


class Evaluator:
  """Scores (params, model_state) on ``config.evals.split`` of ``config.data``."""

  def __init__(self, config: ml_collections.ConfigDict, model):
    self._model = model
    self._config = config.evals
    self._spec = model.quantizer.spec
    self._waveform = isinstance(model, WaveformAutoencoder)

    @jax.jit
    def eval_apply(params, model_state, series, mask):
      out, _ = model.apply(params, model_state, series, mask=mask, train=False)
      reconstruction = model.denormalize(out.reconstruction, out.stats)
      return out, reconstruction

    self._apply = eval_apply
    pad = model.compression
    self._test = speech_data.load_split(config.data, config.evals.split, pad_multiple=pad)
    if (self._test.kind == "waveform") != self._waveform:
      raise ValueError(f"config.data.name = {config.data.name!r} holds {self._test.kind} but "
                       f"config.model.name = {config.model.name!r} expects "
                       f"{'waveforms' if self._waveform else 'features'}")
    self._train = self._baseline = None
    if config.evals.classify and (self._test.labels >= 0).all():
      self._train = speech_data.load_split(config.data, "train", pad_multiple=pad)
      key = (speech_data.builder(config.data).data_dir, config.evals.split)
      self._baseline = dtw_baseline(key, self._train, self._test)

  def _run(self, params, model_state, clips: speech_data.SpeechSet, keep_signals: bool
           ) -> dict[str, Any]:
    """Eval-mode outputs over a split in fixed-size chunks (one compilation). Soft units are
    reduced per chunk to their per-clip means and their per-group sums."""
    pieces = []
    arrays = {"series": clips.series, "mask": clips.mask}
    for chunk, real in padded_chunks(arrays, self._config.batch_size):
      out, reconstruction = self._apply(params, model_state, chunk["series"], chunk["mask"])
      latent_mask = np.asarray(out.latent_mask)[:real]
      piece = {"codes": np.asarray(out.quantizer.codes)[:real], "latent_mask": latent_mask,
               "quantized": np.asarray(out.quantizer.quantized)[:real]}
      if out.quantizer.probs is not None:
        probs = np.asarray(out.quantizer.probs)[:real]
        piece["soft_units"] = speech_eval.soft_unit_features(probs, latent_mask)
        piece["prob_sums"] = probs[latent_mask > 0].sum(axis=0)[None]
      if keep_signals:
        piece["target"] = np.asarray(out.target)[:real]
        piece["normalised"] = np.asarray(out.reconstruction)[:real]
        piece["reconstruction"] = np.asarray(reconstruction)[:real]
      pieces.append(piece)
    return {k: np.concatenate([p[k] for p in pieces]) for k in pieces[0]}

  def __call__(self, params, model_state) -> Evaluation:
    test = self._run(params, model_state, self._test, keep_signals=True)
    check_finite(test["reconstruction"][self._test.mask > 0], self._test.name)
    scores = dict(evaluators.reconstruction_errors(test["target"], test["normalised"],
                                                   self._test.mask))
    if self._waveform:
      scores["snr_db"] = speech_eval.snr_db(self._test.series, test["reconstruction"],
                                            self._test.mask)
      scores["log_mel_distance"] = speech_eval.log_mel_distance(
          self._test.series, test["reconstruction"], self._test.mask, self._test.rate)
    codes, latent_mask = test["codes"], test["latent_mask"]
    scores.update(evaluators.codebook_health(codes, latent_mask, self._spec))
    prob_sums = test["prob_sums"].sum(axis=0) if "prob_sums" in test else None
    scores.update(speech_eval.group_perplexities(codes, latent_mask, self._spec.vocab_size,
                                                 prob_sums))
    if self._train is not None:
      scores.update(speech_eval.nmi_purity(codes, latent_mask, self._test.labels))
      train = self._run(params, model_state, self._train, keep_signals=False)
      scores.update(evaluators.classify_codes(
          train["codes"], train["latent_mask"], train["quantized"], self._train.labels,
          codes, latent_mask, test["quantized"], self._test.labels,
          vocab_size=self._spec, k=self._config.knn_k))
      if "soft_units" in test:
        scores.update(speech_eval.classify_soft_units(
            train["soft_units"], self._train.labels, test["soft_units"], self._test.labels,
            k=self._config.knn_k))
      scores["dtw_1nn"] = self._baseline
    shown = dict(inputs=self._test.series[:8], reconstructions=test["reconstruction"][:8],
                 mask=self._test.mask[:8],
                 code_counts=evaluators.code_counts_per_symbol(codes, latent_mask,
                                                               self._spec.vocab_size))
    return Evaluation(metrics={k: float(v) for k, v in scores.items()},
                      plot=lambda workdir: _plot(workdir, **shown))


def _plot(workdir: str, **shown) -> None:
  plots.plot_run(workdir, curves=["train/loss", "train/reconstruction", "train/perplexity",
                                  "eval/perplexity", "eval/snr_db", "eval/mse"], **shown)


TASK = Task(train_iterator=train_iterator, init=init, loss=loss, evaluator=Evaluator)
