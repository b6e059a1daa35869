"""The training state pytree and the optimizer built from config."""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax.numpy as jnp
import ml_collections
import optax

from vqlearn.types import Array, Params, State

NO_BAD_STEP = -1


class TrainState(NamedTuple):
  """Everything that changes across steps, saved whole by each checkpoint.

  Attributes:
    step: int32 count of batches consumed.
    params: {'encoder', 'quantizer', 'decoder'} trained by the optimizer.
    model_state: {'quantizer': ...} statistics updated by the forward pass.
    opt_state: the optax state of ``params``.
    bad_step: the first step whose loss or gradients were not finite, else -1. From that step
      on the step function stops updating, so the state (and any checkpoint of it) stays the
      last good one.
  """
  step: Array
  params: Params
  model_state: State
  opt_state: Any
  bad_step: Array


def learning_rate_schedule(config: ml_collections.ConfigDict, total_steps: int
                           ) -> Callable[[Array], Array]:
  """optax schedule from ``config.optimizer`` (constant | cosine | warmup_cosine)."""
  lr, warmup = config.learning_rate, config.warmup_steps
  if config.schedule == "constant":
    return optax.constant_schedule(lr) if not warmup else optax.join_schedules(
        [optax.linear_schedule(0.0, lr, warmup), optax.constant_schedule(lr)], [warmup])
  if config.schedule == "cosine":
    return optax.cosine_decay_schedule(lr, total_steps)
  if config.schedule == "warmup_cosine":
    return optax.warmup_cosine_decay_schedule(0.0, lr, warmup, total_steps)
  raise ValueError("config.optimizer.schedule must be constant, cosine or warmup_cosine, "
                   f"got {config.schedule!r}")


def make_optimizer(config: ml_collections.ConfigDict, total_steps: int
                   ) -> tuple[optax.GradientTransformation, Callable[[Array], Array]]:
  """(optimizer, schedule) from ``config.optimizer``; any optax optimizer by name."""
  factory = getattr(optax, config.name, None)
  if not callable(factory) or config.name.startswith("_"):
    raise ValueError(f"config.optimizer.name {config.name!r} is not an optax optimizer")
  schedule = learning_rate_schedule(config, total_steps)
  kwargs = {"learning_rate": schedule}
  if config.weight_decay:
    kwargs["weight_decay"] = config.weight_decay
  try:
    tx = factory(**kwargs)
  except TypeError as e:
    raise ValueError(f"config.optimizer: optax.{config.name} does not accept {sorted(kwargs)}: "
                     f"{e}") from None
  if config.grad_clip_norm:
    tx = optax.chain(optax.clip_by_global_norm(config.grad_clip_norm), tx)
  return tx, schedule


def init_train_state(init_model: Callable[[Array], tuple[Params, State]],
                     tx: optax.GradientTransformation, rng: Array) -> TrainState:
  """A fresh state from ``init_model(rng) -> (params, model_state)``; pure, so
  ``jax.eval_shape`` can size it before anything is allocated."""
  params, model_state = init_model(rng)
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, model_state=model_state,
                    opt_state=tx.init(params),
                    bad_step=jnp.full((), NO_BAD_STEP, jnp.int32))
