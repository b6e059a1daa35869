"""The loss and the train step, the same for every modality (its ``Task`` supplies the
reconstruction loss)."""

from __future__ import annotations

from typing import Callable, Mapping

import jax
import jax.numpy as jnp
import optax

from vqlearn.train.train_state import NO_BAD_STEP, TrainState
from vqlearn.types import Array, Batch, Metrics


def check_loss_weights(weights: Mapping[str, float], returned: set[str]) -> None:
  """A weight for a term the quantizer does not return is a config error, not a silent 0."""
  unknown = sorted(set(weights) - returned)
  if unknown:
    raise ValueError(f"config.loss_weights names {unknown}, which the quantizer does not "
                     f"return; it returns {sorted(returned)}")


def make_loss_fn(task, model, loss_weights: Mapping[str, float]) -> Callable:
  """loss(params, model_state, batch, rng) -> (total, (model_state, metrics)).

  total = the task's reconstruction loss + sum_k w_k * quantizer loss k.
  """
  weights = dict(loss_weights)

  def loss_fn(params, model_state, batch: Batch, rng: Array):
    reconstruction, q_out, model_state, task_metrics = task.loss(model, params, model_state,
                                                                 batch, rng)
    check_loss_weights(weights, set(q_out.losses))
    total = reconstruction + sum(w * q_out.losses[k] for k, w in weights.items())
    metrics = {"loss": total, "reconstruction": reconstruction,
               **{f"loss/{k}": v for k, v in q_out.losses.items()},
               **q_out.metrics, **task_metrics}
    return total, (model_state, metrics)

  return loss_fn


def make_train_step(task, model, tx: optax.GradientTransformation,
                    loss_weights: Mapping[str, float], schedule: Callable[[Array], Array],
                    base_rng: Array) -> Callable[[TrainState, Batch], tuple[TrainState, Metrics]]:
  """One update. The step's randomness is ``fold_in(base_rng, step)``, so a resumed run draws
  exactly what an uninterrupted one would."""
  loss_fn = make_loss_fn(task, model, loss_weights)

  def train_step(state: TrainState, batch: Batch) -> tuple[TrainState, Metrics]:
    rng = jax.random.fold_in(base_rng, state.step)
    (loss, (model_state, metrics)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.params, state.model_state, batch, rng)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    grad_norm = optax.global_norm(grads)
    # A non-finite step changes nothing, and once one happened nothing changes any more: the
    # host stops the run at its next check with the last good state and checkpoint.
    good = jnp.isfinite(loss) & jnp.isfinite(grad_norm) & (state.bad_step == NO_BAD_STEP)
    keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(good, n, o), new, old)
    bad_step = jnp.where(good | (state.bad_step != NO_BAD_STEP), state.bad_step, state.step)
    new_state = TrainState(step=state.step + 1, params=keep(params, state.params),
                           model_state=keep(model_state, state.model_state),
                           opt_state=keep(opt_state, state.opt_state), bad_step=bad_step)
    metrics = {**metrics, "grad_norm": grad_norm, "learning_rate": schedule(state.step)}
    return new_state, metrics

  return train_step

