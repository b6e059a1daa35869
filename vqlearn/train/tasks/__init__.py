"""What the trainer knows about each modality: one ``Task`` per modality.

The loop in ``vqlearn.train.loop`` is the same for every modality; a ``Task`` tells it how to
read training batches, how to initialise the model on them, what the reconstruction loss is and
how to evaluate a trained model. The modality of a run is ``models.MODALITY[config.model.name]``.

    task = tasks.get(config)
    iterator = task.train_iterator(config, model, global_batch_size=256, seed=0,
                                   process_index=0, process_count=1)
    params, model_state = task.init(model, rng, batch_spec)
    reconstruction, q_out, model_state, metrics = task.loss(model, params, model_state, batch, rng)
    evaluation = task.evaluator(config, model)(params, model_state)   # Evaluation
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, Iterator, NamedTuple

import ml_collections
import numpy as np

from vqlearn import models

# Modality name -> the module whose ``TASK`` it is (imported on first use, so a modality's
# optional dependencies are only needed when it runs).
TASKS: dict[str, str] = {
    "timeseries": "vqlearn.train.tasks.timeseries",
    "speech": "vqlearn.train.tasks.speech",
    "eeg": "vqlearn.train.tasks.eeg",
    "graph": "vqlearn.train.tasks.graph",
    "kg": "vqlearn.train.tasks.kg",
}


class Evaluation(NamedTuple):
  """A task evaluator's result.

  Attributes:
    metrics: scalar scores, written to metrics.jsonl under ``eval``.
    plot: ``plot(workdir)`` writes the modality's PNGs (None: nothing to plot).
  """
  metrics: dict[str, float]
  plot: Callable[[str], None] | None = None


class Task(NamedTuple):
  """How the trainer feeds one modality to its model and scores it.

  Attributes:
    train_iterator: ``(config, model, *, global_batch_size, seed, process_index,
      process_count) -> iterator`` of ``dict[str, np.ndarray]`` holding this process's rows of
      the global batch, the example axis first in every leaf (the trainer shards axis 0). It has
      ``get_state()``/``set_state()`` and is saved by ``grain.checkpoint.CheckpointSave``; the
      global batch at step s depends only on (config, seed, s), whatever the process count.
    init: ``(model, rng, batch_spec) -> (params, model_state)``; ``batch_spec`` maps the
      batch's keys to ``jax.ShapeDtypeStruct``s of the global batch.
    loss: ``(model, params, model_state, batch, rng) -> (reconstruction_loss,
      quantizer_output, model_state, metrics)``, the model run in train mode. The trainer adds
      the config-weighted quantizer losses.
    evaluator: ``(config, model) -> evaluate``, where ``evaluate(params, model_state)`` returns
      an ``Evaluation`` on host copies; it loads its data once, in the constructor, and raises
      ``FloatingPointError`` on non-finite outputs.
  """
  train_iterator: Callable[..., Any]
  init: Callable[..., Any]
  loss: Callable[..., Any]
  evaluator: Callable[..., Callable[[Any, Any], Evaluation]]


def modality(config: ml_collections.ConfigDict) -> str:
  """The modality of ``config.model.name``; unknown models raise ValueError naming them."""
  name = config.model.name
  if name not in models.MODALITY:
    raise ValueError(f"unknown model {name!r} in config.model.name; registered: "
                     f"{tuple(models.MODALITY)}")
  return models.MODALITY[name]


def get(config: ml_collections.ConfigDict) -> Task:
  """The ``Task`` for the modality of ``config.model.name``."""
  return importlib.import_module(TASKS[modality(config)]).TASK


def padded_chunks(arrays: dict[str, np.ndarray], size: int
                  ) -> Iterator[tuple[dict[str, np.ndarray], int]]:
  """``(chunk, real)``: ``size`` rows at a time of every array, the last chunk zero-padded.

  Evaluators run their jitted apply on these so it compiles once for a whole split; zero rows
  have zero masks, i.e. they are padding, and ``real`` says how many rows to keep.
  """
  n = len(next(iter(arrays.values())))
  for start in range(0, n, size):
    chunk = {k: v[start:start + size] for k, v in arrays.items()}
    real = min(size, n - start)
    if real < size:
      chunk = {k: np.concatenate([v, np.zeros((size - real,) + v.shape[1:], v.dtype)])
               for k, v in chunk.items()}
    yield chunk, real


def check_finite(values: np.ndarray, where: str) -> None:
  """Raises FloatingPointError when an evaluation's reconstructions are not finite."""
  if not np.isfinite(values).all():
    raise FloatingPointError(f"evaluation on {where}: the model's reconstructions are not "
                             "finite; training has diverged")


__all__ = ["Evaluation", "TASKS", "Task", "check_finite", "get", "modality", "padded_chunks"]
