"""The EEG task: windows of EEG recordings through the sensor-aware ``brain_tokenizer`` or the
channel-independent ``eeg_totem``, scored on held-out windows.

Losses, each preset as its paper trains it: ``brain_tokenizer`` BrainOmni's L1 + exp(-PCC) +
FFT amplitude + 0.5 * phase (``losses.brainomni_loss``), ``eeg_totem`` TOTEM's MSE on RevIN'd
windows. Both reconstruct the same per-(window, channel) RevIN'd signal, and the evaluator
scores both in that space with the same metrics (PCC, MAE, MSE, amplitude and phase errors,
overall, per channel and per band; codebook health).

Cross-montage evaluation, when ``config.data.input_channels`` names a subset: training sees
only those channels; the test windows keep every channel, and the metrics are reported for
- ``seen/``: the input channels, reconstructed from themselves;
- ``unseen/`` (brain_tokenizer only): the other channels, decoded from the sources of the input
  channels alone, i.e. sensors the model never saw in training nor as input; beside it,
  ``unseen/spline_*`` scores spherical-spline interpolation (MNE) from the same input channels,
  the classic way to fill in missing electrodes;
- ``unseen_as_input/``: the other channels given as a new montage, reconstructed from
  themselves (the only cross-montage use a channel-independent tokenizer has).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from vqlearn import evaluators, losses
from vqlearn.data import eeg as eeg_data
from vqlearn.models.eeg import SensorAutoencoder
from vqlearn.models.timeseries import revin_normalize
from vqlearn.train import plots
from vqlearn.train.tasks import Evaluation, Task, check_finite

F32 = jnp.float32


def _check_window(config: ml_collections.ConfigDict, model) -> None:
  window = eeg_data.check_config(config.data).window
  if window % model.compression:
    raise ValueError(f"config.data.window_seconds gives {window} samples, not a multiple of "
                     f"the model's compression {model.compression}")


def train_iterator(config: ml_collections.ConfigDict, model, **kwargs: Any):
  """``data.eeg.train_iterator`` on ``config.data``: batches ``{'signal': (LB, W, C),
  'positions': (LB, C, 3), 'channel_type': (LB, C), 'channel_mask': (LB, C)}``."""
  _check_window(config, model)
  return eeg_data.train_iterator(config.data, **kwargs)


def init(model, rng, batch_spec):
  if isinstance(model, SensorAutoencoder):
    return model.init(rng, batch_spec)
  return model.init(rng, jax.ShapeDtypeStruct(batch_spec["signal"].shape, F32))


def _channel_mse(target, reconstruction, channel_mask):
  """MSE over time samples and real channels (windows have no time padding)."""
  real = channel_mask[:, None, :] > 0
  squared = jnp.where(real, jnp.square(reconstruction - target), 0.0)
  return jnp.sum(squared) / jnp.maximum(jnp.sum(real.astype(F32)) * target.shape[1], 1.0)


def _apply_totem(model, params, model_state, batch, *, rng=None, train=False):
  out, model_state = model.apply(params, model_state, batch["signal"],
                                 mask=jnp.ones(batch["signal"].shape[:2], F32), rng=rng,
                                 train=train)
  # Padded channels are tokens of zeros: keep them out of the codebook statistics.
  latent_mask = out.latent_mask * batch["channel_mask"].astype(F32)[:, :, None]
  return out._replace(latent_mask=latent_mask), model_state


def loss(model, params, model_state, batch, rng):
  if isinstance(model, SensorAutoencoder):
    out, model_state = model.apply(params, model_state, batch, rng=rng, train=True)
    terms = losses.brainomni_loss(out.target, out.reconstruction, batch["channel_mask"])
    metrics = {f"brainomni/{k}": v for k, v in terms.items() if k != "total"}
    return terms["total"], out.quantizer, model_state, metrics
  out, model_state = _apply_totem(model, params, model_state, batch, rng=rng, train=True)
  return (_channel_mse(out.target, out.reconstruction, batch["channel_mask"]), out.quantizer,
          model_state, {})


def spline_interpolation(windows: eeg_data.EegWindows, channel_names: tuple[str, ...],
                         seen: np.ndarray) -> np.ndarray:
  """Spherical-spline interpolation (MNE ``interpolate_bads``) of the unseen channels of every
  window from its seen ones; seen channels are returned as they are. (n, T, C)."""
  mne = eeg_data.import_mne()
  n, t, c = windows.signal.shape
  info = mne.create_info(list(channel_names), 1.0, "eeg")
  positions = windows.positions[0] * eeg_data.HEAD_RADIUS_M
  montage = mne.channels.make_dig_montage(ch_pos=dict(zip(channel_names, positions)),
                                          coord_frame="head")
  # One long "recording": interpolation is linear and instantaneous, so windows can be joined.
  raw = mne.io.RawArray(windows.signal.transpose(2, 0, 1).reshape(c, n * t).astype(np.float64),
                        info)
  raw.set_montage(montage)
  raw.info["bads"] = [name for name, s in zip(channel_names, seen) if not s]
  raw.interpolate_bads(reset_bads=True, origin=(0.0, 0.0, 0.0))
  return raw.get_data().reshape(c, n, t).transpose(1, 2, 0).astype(np.float32)


def _revin(signal: np.ndarray) -> np.ndarray:
  return np.asarray(revin_normalize(jnp.asarray(signal), jnp.ones(signal.shape[:2], F32))[0])


class Evaluator:
  """Scores (params, model_state) on the held-out windows of ``config.data``."""

  def __init__(self, config: ml_collections.ConfigDict, model):
    self._model = model
    self._batch_size = config.evals.batch_size
    self._options = eeg_data.check_config(config.data)
    self._vocab_size = model.quantizer.spec.vocab_size
    self._windows = eeg_data.split_windows(config.data, "test")
    layouts = set(self._windows.channel_names)
    # Per-channel keys and the cross-montage split need one channel layout in the test set.
    self._names = self._windows.channel_names[0] if len(layouts) == 1 else None
    self._seen = None
    if self._options.input_channels:
      if self._names is None:
        raise ValueError("config.data.input_channels needs test recordings that share one "
                         "channel layout")
      chosen = {n.lower() for n in self._options.input_channels}
      self._seen = np.asarray([n.lower() in chosen for n in self._names])
      if self._seen.all():
        raise ValueError("config.data.input_channels names every channel: nothing is held out")
      self._spline = _revin(spline_interpolation(self._windows, self._names, self._seen))
    is_sensor = isinstance(model, SensorAutoencoder)

    @jax.jit
    def run(params, model_state, batch, input_mask):
      if is_sensor:
        out, _ = model.apply(params, model_state, batch, input_mask=input_mask)
      else:
        out, _ = _apply_totem(model, params, model_state, batch)
      return out.target, out.reconstruction, out.quantizer.codes, out.latent_mask

    self._run_jit = run

  def _run(self, params, model_state, input_mask: np.ndarray, channel_mask: np.ndarray):
    """Eval-mode outputs over every test window, in fixed-size chunks (one compilation)."""
    n = len(self._windows.signal)
    pieces = []
    for start in range(0, n, self._batch_size):
      index = np.arange(start, min(start + self._batch_size, n))
      padded = np.concatenate([index, np.full(self._batch_size - len(index), index[0])])
      batch = self._windows.batch(padded)
      batch["channel_mask"] = channel_mask[padded]
      outs = self._run_jit(params, model_state, batch, input_mask[padded])
      pieces.append([np.asarray(o)[:len(index)] for o in outs])
    target, reconstruction, codes, latent_mask = (np.concatenate(p) for p in zip(*pieces))
    check_finite(reconstruction, "the EEG test windows")
    return target, reconstruction, codes, latent_mask

  def _scores(self, target, reconstruction, channel_mask) -> dict[str, float]:
    return evaluators.eeg.signal_metrics(target, reconstruction, channel_mask,
                                         sample_rate=self._options.sample_rate,
                                         channel_names=self._names)

  def __call__(self, params, model_state) -> Evaluation:
    mask = self._windows.channel_mask
    metrics: dict[str, float] = {}
    if self._seen is None:
      target, reconstruction, codes, latent_mask = self._run(params, model_state, mask, mask)
      metrics.update(self._scores(target, reconstruction, mask))
    else:
      seen = mask * self._seen[None, :]
      unseen = mask * ~self._seen[None, :]
      is_sensor = isinstance(self._model, SensorAutoencoder)
      # Seen channels in, every channel out (channel-independent TOTEM ignores the mask).
      target, reconstruction, codes, latent_mask = self._run(
          params, model_state, seen, mask if is_sensor else seen)
      scores = {f"seen/{k}": v for k, v in self._scores(target, reconstruction, seen).items()}
      if is_sensor:
        scores.update({f"unseen/{k}": v for k, v in
                       self._scores(target, reconstruction, unseen).items()})
        scores.update({f"unseen/spline_{k}": v for k, v in
                       self._scores(target, self._spline, unseen).items() if "/" not in k})
      as_input = self._run(params, model_state, unseen, unseen)
      scores.update({f"unseen_as_input/{k}": v for k, v in
                     self._scores(as_input[0], as_input[1], unseen).items()})
      metrics.update(scores)
    metrics.update(evaluators.codebook_health(codes, latent_mask, self._vocab_size))
    metrics.update(evaluators.token_statistics(codes, latent_mask))
    metrics["bits_per_window"] = (float(latent_mask[0].sum()) * self._model.quantizer.spec.bits)
    shown = dict(inputs=target, reconstructions=reconstruction,
                 counts=evaluators.code_counts_per_symbol(codes, latent_mask, self._vocab_size))
    return Evaluation(metrics=metrics, plot=lambda workdir: _plot(workdir, **shown))


def _plot(workdir: str, *, inputs, reconstructions, counts) -> None:
  """Held-out windows against their reconstructions, code usage and the training curves."""
  plots.plot_run(workdir, curves=["train/loss", "train/reconstruction", "train/perplexity",
                                  "eval/perplexity", "eval/pcc", "eval/seen/pcc"],
                 code_counts=counts, inputs=inputs, reconstructions=reconstructions,
                 mask=np.ones(inputs.shape[:2], np.float32))


TASK = Task(train_iterator=train_iterator, init=init, loss=loss, evaluator=Evaluator)
