"""The time-series task: windows of UCR/UEA (or the user's) series through a TOTEM-style
autoencoder, scored on held-out data by reconstruction, codebook health and the downstream
quality of its codes, each classifier beside the raw-series 1-NN baseline.

Evaluation data is loaded once per run; the raw baseline, which does not depend on the model,
is computed once. Evaluation runs on one process with local copies of the parameters (no
collectives).
"""

from __future__ import annotations

import copy
from typing import Any, NamedTuple

import jax
import ml_collections
import numpy as np

from vqlearn import data, evaluators, losses
from vqlearn.train import plots
from vqlearn.train.tasks import Evaluation, Task, check_finite, padded_chunks


def train_iterator(config: ml_collections.ConfigDict, model, **kwargs: Any):
  """``data.train_iterator`` on ``config.data``, windows padded to the model's compression:
  batches ``{'series': (LB, W, C), 'mask': (LB, W), 'label': (LB,)}``."""
  return data.train_iterator(config.data, pad_multiple=model.compression, **kwargs)


def init(model, rng, batch_spec):
  return model.init(rng, jax.ShapeDtypeStruct(batch_spec["series"].shape, np.float32))


def loss(model, params, model_state, batch, rng):
  """Masked MSE between the normalised (RevIN'd) series and its reconstruction."""
  out, model_state = model.apply(params, model_state, batch["series"], mask=batch["mask"],
                                 rng=rng, train=True)
  reconstruction = losses.masked_mse(out.target, out.reconstruction, batch["mask"])
  return reconstruction, out.quantizer, model_state, {}


def make_eval_apply(model):
  """apply(params, model_state, series, mask) in eval mode -> AutoencoderOutput (jitted)."""
  @jax.jit
  def eval_apply(params, model_state, series, mask):
    out, _ = model.apply(params, model_state, series, mask=mask, train=False)
    return out
  return eval_apply


class EvalSet(NamedTuple):
  name: str
  windows: data.SeriesSet  # reconstruction and codebook health
  train: data.SeriesSet | None  # whole series, for the classifiers
  test: data.SeriesSet | None
  raw_1nn: float | None


def component_configs(data_config: ml_collections.ConfigDict
                      ) -> list[ml_collections.ConfigDict]:
  """One data config per set of a '+'-joined mixture (a generalist is scored on each), each
  keeping its channels together: training may split them into univariate examples, but a
  series is classified (and its reconstruction scored) as the multichannel whole it is."""
  configs = []
  for name in data_config.name.split("+") if data_config.name != "files" else ["files"]:
    config = copy.deepcopy(data_config)
    with config.unlocked():
      config.name = name
      config.split_channels = False
    configs.append(config)
  return configs


class Evaluator:
  """Scores (params, model_state) on ``config.evals.split`` of every set in ``config.data``."""

  def __init__(self, config: ml_collections.ConfigDict, model):
    self._model = model
    self._config = config.evals
    self._vocab_size = model.quantizer.spec.vocab_size
    self._apply = make_eval_apply(model)
    pad = model.compression
    self._sets = []
    for data_config in component_configs(config.data):
      test = data.load_split(data_config, config.evals.split, pad_multiple=pad)
      windows = (data.windows(test, data_config.window, data_config.window, pad_multiple=pad)
                 if data_config.window else test)
      train = raw = None
      if config.evals.classify and (test.labels >= 0).all():
        train = data.load_split(data_config, "train", pad_multiple=pad)
        raw = evaluators.raw_1nn_accuracy(train.series, train.mask, train.labels,
                                          test.series, test.mask, test.labels)
      self._sets.append(EvalSet(data_config.name, windows, train, test if train else None, raw))

  def _run(self, params, model_state, series_set: data.SeriesSet) -> dict[str, np.ndarray]:
    """Eval-mode outputs over a whole set, in fixed-size chunks (one compilation)."""
    pieces = []
    arrays = {"series": series_set.series, "mask": series_set.mask}
    for chunk, real in padded_chunks(arrays, self._config.batch_size):
      out = self._apply(params, model_state, chunk["series"], chunk["mask"])
      pieces.append({
          "target": np.asarray(out.target)[:real],
          "reconstruction": np.asarray(out.reconstruction)[:real],
          "codes": np.asarray(out.quantizer.codes)[:real],
          "quantized": np.asarray(out.quantizer.quantized)[:real],
          "latent_mask": np.asarray(out.latent_mask)[:real],
      })
    return {key: np.concatenate([p[key] for p in pieces]) for key in pieces[0]}

  def __call__(self, params, model_state) -> Evaluation:
    metrics: dict[str, float] = {}
    shown: dict[str, np.ndarray] = {}  # the first set's windows, for the plots
    for eval_set in self._sets:
      prefix = f"{eval_set.name}/" if len(self._sets) > 1 else ""
      out = self._run(params, model_state, eval_set.windows)
      check_finite(out["reconstruction"][eval_set.windows.mask > 0], eval_set.name)
      scores = dict(evaluators.reconstruction_errors(out["target"], out["reconstruction"],
                                                     eval_set.windows.mask))
      scores.update(evaluators.codebook_health(out["codes"], out["latent_mask"],
                                               self._vocab_size))
      scores.update(evaluators.token_statistics(out["codes"], out["latent_mask"]))
      if eval_set.train is not None:
        train = self._run(params, model_state, eval_set.train)
        # Whole-series evaluation (window 0) has already run the test split.
        test = out if eval_set.windows is eval_set.test else self._run(
            params, model_state, eval_set.test)
        scores.update(evaluators.classify_codes(
            train["codes"], train["latent_mask"], train["quantized"], eval_set.train.labels,
            test["codes"], test["latent_mask"], test["quantized"], eval_set.test.labels,
            vocab_size=self._vocab_size, k=self._config.knn_k))
        scores["raw_1nn"] = eval_set.raw_1nn
      metrics.update({prefix + k: float(v) for k, v in scores.items()})
      if not shown:
        shown = dict(inputs=out["target"], reconstructions=out["reconstruction"],
                     mask=eval_set.windows.mask,
                     code_counts=evaluators.code_counts_per_symbol(
                         out["codes"], out["latent_mask"], self._vocab_size))
    return Evaluation(metrics=metrics, plot=lambda workdir: _plot(workdir, **shown))


def _plot(workdir: str, **shown) -> None:
  plots.plot_run(workdir, curves=["train/loss", "train/reconstruction", "train/perplexity",
                                  "eval/perplexity", "eval/mse"], **shown)


TASK = Task(train_iterator=train_iterator, init=init, loss=loss, evaluator=Evaluator)
