"""``train_and_evaluate(config, workdir)``: the whole training run, top to bottom.

Importable from a notebook; ``python -m vqlearn.main`` is a thin wrapper around it. A run
always resumes from the latest checkpoint in ``workdir`` (preemption is the normal path), and
a resumed run continues bit-identically: the data iterator is checkpointed with the state and
every step's randomness is ``fold_in(rng, step)``.
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any

import jax
import ml_collections
import numpy as np

from vqlearn import models, quantizers, sharding
from vqlearn.train import tasks, writers
from vqlearn.train.checkpoint import Checkpointer
from vqlearn.train.step import make_train_step
from vqlearn.train.train_state import NO_BAD_STEP, TrainState, init_train_state, make_optimizer

log = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
# Keys a resumed run may change: it may be extended or evaluated differently.
RESUMABLE_CHANGES = ("total_steps", "log_every", "eval_every", "checkpoint_every", "evals")


class Preempted(Exception):
  """Raised after the checkpoint at a preemption (SIGTERM) is saved, so that callers (sweeps,
  notebooks) stop instead of carrying on; ``python -m vqlearn.main`` exits with status 0."""


def build_model(config: ml_collections.ConfigDict):
  """The autoencoder named by ``config.model`` around the quantizer named by
  ``config.quantizer``; unknown names and options raise ValueError naming them."""
  options = config.quantizer.to_dict()
  quantizer = quantizers.get(options.pop("name"), **options)
  options = config.model.to_dict()
  return models.get(options.pop("name"), quantizer, **options)


def _check_config(config: ml_collections.ConfigDict) -> None:
  for key in ("total_steps", "batch_size", "log_every", "checkpoint_every", "keep_checkpoints"):
    value = config[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
      raise ValueError(f"config.{key} must be an integer >= 1, got {value!r}")
  if config.eval_every < 0:
    raise ValueError(f"config.eval_every must be >= 0 (0: only at the end), "
                     f"got {config.eval_every!r}")


def _write_config(config: ml_collections.ConfigDict, workdir: str) -> None:
  """Writes config.json, or checks that a resumed run was not silently reconfigured."""
  path = os.path.join(workdir, CONFIG_FILE)
  current = json.loads(config.to_json_best_effort())
  if os.path.exists(path):
    with open(path) as f:
      previous = json.load(f)
    changed = sorted(k for k in set(previous) | set(current)
                     if previous.get(k) != current.get(k) and k not in RESUMABLE_CHANGES)
    if changed:
      raise ValueError(f"{path} differs from this config in {changed}; a run resumes from its "
                       "workdir, so use a new workdir for a different experiment")
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(current, f, indent=2, sort_keys=True)
  os.replace(tmp, path)


def _peek(iterator) -> dict[str, np.ndarray]:
  """The next batch without consuming it (its shapes size the model)."""
  position = iterator.get_state()
  batch = next(iterator)
  iterator.set_state(position)
  return batch


def _host(tree: Any) -> Any:
  return jax.tree.map(np.asarray, sharding.local_copy(tree))


def _raise_if_bad(state: TrainState, checkpointer: Checkpointer) -> None:
  bad_step = int(_host(state.bad_step))
  if bad_step != NO_BAD_STEP:
    raise FloatingPointError(
        f"non-finite loss or gradients at step {bad_step}; stopped. The last good checkpoint "
        f"(step {checkpointer.latest_step()}) is kept; lower the learning rate or check the "
        "data and resume")


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, float]:
  """Trains the tokenizer ``config`` describes, evaluates it and writes everything to
  ``workdir``; returns the final evaluation metrics.

  Raises:
    Preempted: on SIGTERM (or the cluster's preemption notice), after saving a checkpoint.
    FloatingPointError: on a non-finite loss, keeping the last good checkpoint.
    ValueError: on config errors, before anything is allocated.
  """
  # ---------------------------------------------------------------------------------------
  # Logging, config and processes.
  # ---------------------------------------------------------------------------------------
  _check_config(config)
  is_writer = jax.process_index() == 0
  if is_writer:
    os.makedirs(workdir, exist_ok=True)
    _write_config(config, workdir)
  writer = writers.MetricWriter(workdir, enabled=is_writer)

  # ---------------------------------------------------------------------------------------
  # Mesh: the global batch is split over the `data` axis; state is replicated.
  # ---------------------------------------------------------------------------------------
  mesh = sharding.make_mesh(config.mesh)
  batch_sharding = sharding.batch_sharding(mesh)
  replicated = sharding.replicated(mesh)
  data_devices = mesh.shape["data"]
  if config.batch_size % data_devices or config.batch_size % jax.process_count():
    raise ValueError(f"config.batch_size {config.batch_size} must be divisible by the "
                     f"{data_devices} devices of the data axis and the "
                     f"{jax.process_count()} processes")

  # ---------------------------------------------------------------------------------------
  # Model and input: names resolve (and fail) before any data is read.
  # ---------------------------------------------------------------------------------------
  task = tasks.get(config)
  model = build_model(config)
  train_iterator = task.train_iterator(
      config, model, global_batch_size=config.batch_size, seed=config.seed,
      process_index=jax.process_index(), process_count=jax.process_count())
  local_batch = _peek(train_iterator)
  batch_spec = {key: jax.ShapeDtypeStruct((config.batch_size,) + value.shape[1:], value.dtype,
                                          sharding=batch_sharding)
                for key, value in local_batch.items()}

  # ---------------------------------------------------------------------------------------
  # Optimizer, state shapes and the step, all checked before anything is allocated.
  # ---------------------------------------------------------------------------------------
  tx, schedule = make_optimizer(config.optimizer, config.total_steps)
  root = jax.random.PRNGKey(config.seed)
  init_rng, step_rng = jax.random.split(root)
  init = lambda rng: init_train_state(lambda key: task.init(model, key, batch_spec), tx, rng)
  abstract_state = jax.eval_shape(init, init_rng)
  train_step = make_train_step(task, model, tx, config.loss_weights.to_dict(), schedule, step_rng)
  jax.eval_shape(train_step, abstract_state, batch_spec)  # config errors surface here
  state_sharding = jax.tree.map(lambda _: replicated, abstract_state)
  abstract_state = jax.tree.map(
      lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
      abstract_state, state_sharding)

  # ---------------------------------------------------------------------------------------
  # Checkpoint: resume when one exists, else initialise (sharded, straight onto devices).
  # ---------------------------------------------------------------------------------------
  checkpointer = Checkpointer(os.path.join(workdir, "checkpoints"),
                              keep=config.keep_checkpoints)
  start = checkpointer.latest_step()
  if start is not None:
    state = checkpointer.restore(start, abstract_state, train_iterator)
    log.info("resumed from step %d", start)
  else:
    state = jax.jit(init, out_shardings=state_sharding)(init_rng)
    start = 0
  num_params = sum(x.size for x in jax.tree.leaves(abstract_state.params))

  compile_start = time.perf_counter()
  step_fn = jax.jit(train_step, in_shardings=(state_sharding, batch_sharding),
                    out_shardings=(state_sharding, replicated), donate_argnums=0
                    ).lower(abstract_state, batch_spec).compile()
  compile_seconds = time.perf_counter() - compile_start
  writer.write(start, "info", {"compile_seconds": compile_seconds, "num_params": num_params,
                               "devices": jax.device_count(),
                               "processes": jax.process_count()})

  evaluator = task.evaluator(config, model) if is_writer else None
  evaluation = None

  def evaluate(step: int):
    nonlocal evaluation
    if evaluator is None:
      return
    local = _host((state.params, state.model_state))
    try:
      evaluation = evaluator(*local)
    except FloatingPointError as e:
      raise FloatingPointError(f"step {step}: {e}") from None
    writer.write(step, "eval", evaluation.metrics)

  # ---------------------------------------------------------------------------------------
  # The loop.
  # ---------------------------------------------------------------------------------------
  progress = writers.ProgressBar(config.total_steps, initial_step=start, enabled=is_writer)
  interval_start, interval_steps = time.perf_counter(), 0
  step = start
  try:
    while step < config.total_steps:
      batch = sharding.global_batch(next(train_iterator), batch_sharding)
      state, metrics = step_fn(state, batch)
      step += 1
      interval_steps += 1
      progress.update(step)

      if step % config.log_every == 0 or step == config.total_steps:
        _raise_if_bad(state, checkpointer)
        metrics = {k: float(v) for k, v in _host(metrics).items()}
        elapsed = time.perf_counter() - interval_start
        metrics["steps_per_second"] = interval_steps / elapsed
        metrics["examples_per_second"] = interval_steps * config.batch_size / elapsed
        writer.write(step, "train", metrics)
        progress.update(step, loss=metrics["loss"], perplexity=metrics["perplexity"])
        interval_start, interval_steps = time.perf_counter(), 0

      preempted = checkpointer.preempted(step)
      if step % config.checkpoint_every == 0 or preempted or step == config.total_steps:
        _raise_if_bad(state, checkpointer)
        checkpointer.save(step, state, train_iterator)
      if preempted:
        raise Preempted(f"preempted at step {step}: checkpoint saved; run again to resume")
      if config.eval_every and step % config.eval_every == 0 and step < config.total_steps:
        evaluate(step)
  finally:
    progress.close()
    checkpointer.close()

  # ---------------------------------------------------------------------------------------
  # Final evaluation and plots.
  # ---------------------------------------------------------------------------------------
  evaluate(config.total_steps)
  if evaluation is not None and evaluation.plot is not None and config.evals.plots:
    evaluation.plot(workdir)
  writer.close()
  return evaluation.metrics if evaluation is not None else {}
