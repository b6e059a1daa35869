"""The quantizer protocol and the helpers every family shares.

A quantizer is a ``Quantizer(init, apply, lookup, spec)`` NamedTuple of pure functions, in the
style of ``optax.GradientTransformation``:

    params, state = q.init(rng, x_spec)
    out, state = q.apply(params, state, x, rng=rng, mask=mask, train=True)
    vectors = q.lookup(params, state, out.codes)

Conventions shared by every family (see shared/DESIGN.md):
- ``x`` has any leading shape and a last axis of size d; the family flattens it to (N, d) rows.
- ``mask`` has shape ``x.shape[:-1]`` (1 = real row). Padding is excluded from every statistic,
  loss and metric, gets code -1, and its quantized vector is zero (``lookup(-1)`` is zero too).
- Statistics are global sums. Under ``jax.jit`` with a sharded batch XLA reduces across devices;
  inside ``shard_map``/``pmap`` the factory's ``axis_name`` makes the same code ``psum``.
  Losses are then replicated global means; differentiating them inside ``pmap`` or
  ``shard_map(check_vma=False)`` transposes each psum into another psum, so gradients come out
  summed over shards (D times the unsharded ones); ``jax.jit`` over sharded arrays does not.
- Randomness is a function of (rng, global row index), so a sharded call draws exactly the noise
  of the unsharded call on the whole batch.
- Distances, assignments and statistics run in float32 whatever ``x.dtype`` is.
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from vqlearn.types import Array, Metrics, Params, PRNGKey, State

F32 = jnp.float32
NEVER = -1  # `last_used` value of a code that has not been selected yet.


class CodeSpec(NamedTuple):
  """What one input vector becomes: ``num_symbols`` codes, each in ``[0, vocab_size)``."""
  num_symbols: int
  vocab_size: int

  @property
  def bits(self) -> float:
    """Bits per vector: ``num_symbols * log2(vocab_size)``."""
    return self.num_symbols * math.log2(self.vocab_size)


class QuantizerOutput(NamedTuple):
  """What ``apply`` returns besides the new state.

  Attributes:
    quantized: x's shape and dtype, carrying the family's gradient estimator; zero at padding.
    codes: int32, ``x.shape[:-1] + (num_symbols,)``; -1 at padding. Binary families give bits.
    probs: soft assignment ``x.shape[:-1] + (num_symbols, vocab_size)`` where the family has one.
    losses: UNWEIGHTED scalar loss terms; their weights live in the config.
    metrics: scalars, at least perplexity, usage, dead_codes and quantization_error.
  """
  quantized: Array
  codes: Array
  probs: Array | None
  losses: dict[str, Array]
  metrics: Metrics


class Quantizer(NamedTuple):
  """A quantizer: pure ``init``/``apply``/``lookup`` functions and its ``spec``."""
  init: Callable[..., tuple[Params, State]]
  apply: Callable[..., tuple[QuantizerOutput, State]]
  lookup: Callable[[Params, State, Array], Array]
  spec: CodeSpec


# ----------------------------------------------------------------------------------------------
# Argument checking: every error is raised at trace time and names the argument.
# ----------------------------------------------------------------------------------------------

def check_positive_int(name: str, value: Any, minimum: int = 1) -> int:
  if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
    raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
  return value


def check_choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
  if value not in choices:
    raise ValueError(f"{name} must be one of {choices}, got {value!r}")
  return value


def check_unit_interval(name: str, value: Any, *, closed: bool = False) -> float:
  ok = 0.0 <= value <= 1.0 if closed else 0.0 < value < 1.0
  if not ok:
    raise ValueError(f"{name} must lie in {'[0, 1]' if closed else '(0, 1)'}, got {value!r}")
  return float(value)


def feature_dim(x_spec: Any) -> int:
  """The last-axis size of an array or ``jax.ShapeDtypeStruct``."""
  shape = getattr(x_spec, "shape", None)
  if shape is None or len(shape) < 1:
    raise ValueError(f"x_spec must be an array or jax.ShapeDtypeStruct with a feature axis, "
                     f"got {x_spec!r}")
  return int(shape[-1])


def check_input(x: Array, d: int, mask: Array | None) -> tuple[Array, Array]:
  """Validates x against the initialised dimension d; returns float32 rows (N, d) and mask (N,).

  Padding rows are zeroed here, once, so that whatever they hold (even inf or nan) cannot
  reach a sum: 0 * nan would still be nan.
  """
  if x.ndim < 1 or x.shape[-1] != d:
    raise ValueError(f"x must have last-axis size {d} (the size it was initialised with), "
                     f"got shape {tuple(x.shape)}")
  rows = x.reshape(-1, d).astype(F32)
  if mask is None:
    return rows, jnp.ones(rows.shape[:1], F32)
  if tuple(mask.shape) != tuple(x.shape[:-1]):
    raise ValueError(f"mask must have shape x.shape[:-1] = {tuple(x.shape[:-1])}, "
                     f"got {tuple(mask.shape)}")
  m = mask.reshape(-1).astype(F32)
  return jnp.where(m[:, None] > 0, rows, 0.0), m


def require_rng(rng: PRNGKey | None, why: str) -> PRNGKey:
  if rng is None:
    raise ValueError(f"rng is required: {why}. Pass apply(..., rng=key).")
  return rng


# ----------------------------------------------------------------------------------------------
# Cross-device helpers. With axis_name=None these are local (jit handles sharded inputs).
# ----------------------------------------------------------------------------------------------

def global_sum(value: Array, axis_name: str | None, axis: int | tuple[int, ...] | None = 0):
  """Sum over the rows of this shard and, inside shard_map/pmap, over all shards."""
  total = jnp.sum(value, axis=axis)
  return jax.lax.psum(total, axis_name) if axis_name is not None else total


def psum(value: Any, axis_name: str | None) -> Any:
  return jax.lax.psum(value, axis_name) if axis_name is not None else value


def gather_rows(rows: Array, axis_name: str | None) -> Array:
  """All rows of the global batch, in the order of the unsharded call, on every shard."""
  if axis_name is None:
    return rows
  return jax.lax.all_gather(rows, axis_name, axis=0, tiled=True)


def global_row_ids(num_rows: int, axis_name: str | None) -> Array:
  """Index of each local row in the flattened global batch (shards are contiguous)."""
  offset = 0 if axis_name is None else jax.lax.axis_index(axis_name) * num_rows
  return offset + jnp.arange(num_rows)


def row_noise(rng: PRNGKey, row_ids: Array, sample: Callable[[PRNGKey], Array]) -> Array:
  """Per-row random draws keyed by the global row index, so sharding cannot change them.

  Within a row the classic (non-partitionable) threefry stream is used: the draws are already
  sharding-invariant through the row keys, and the partitionable stream hashes one counter per
  32-bit word, twice the work (Gumbel noise for 16384 x 640 logits: 120 ms -> 60 ms on 2 cores).
  """
  with jax.threefry_partitionable(False):
    return jax.vmap(lambda i: sample(jax.random.fold_in(rng, i)))(row_ids)


def masked_mean(values: Array, mask: Array, axis_name: str | None) -> Array:
  """Mean of per-row ``values`` (N, ...) over real rows of the global batch; mean over the rest."""
  per_row = values.reshape(values.shape[0], -1).mean(axis=1)
  total = global_sum(per_row * mask, axis_name)
  count = global_sum(mask, axis_name)
  return total / jnp.maximum(count, 1.0)


def mse(a: Array, b: Array, mask: Array, axis_name: str | None) -> Array:
  """Masked mean squared error over rows and features (haiku's ``jnp.mean(square(...))``)."""
  return masked_mean(jnp.square(a.astype(F32) - b.astype(F32)), mask, axis_name)


# ----------------------------------------------------------------------------------------------
# Gradient estimators.
# ----------------------------------------------------------------------------------------------

def straight_through(x: Array, q: Array) -> Array:
  """Value q, gradient identity to x (van den Oord et al. 2017)."""
  return x + jax.lax.stop_gradient(q - x)


def rotation_trick(x: Array, q: Array, eps: float = 1e-6) -> Array:
  """Value q, gradient through the rotation + rescaling taking x onto q (Fifty et al. 2024).

  ``q = s R x`` with ``s = |q|/|x|`` and the Householder-style rotation
  ``R = I - 2 r r^T + 2 q^ x^T``, ``r = (x^ + q^)/|x^ + q^|``; s and R are constants for the
  backward pass, so the gradient reaching x is ``s R^T`` times the incoming gradient.
  """
  sg = jax.lax.stop_gradient
  x_norm = jnp.linalg.norm(x, axis=-1, keepdims=True)
  q_norm = jnp.linalg.norm(q, axis=-1, keepdims=True)
  x_hat = sg(x / jnp.maximum(x_norm, eps))
  q_hat = sg(q / jnp.maximum(q_norm, eps))
  r = x_hat + q_hat
  r = r / jnp.maximum(jnp.linalg.norm(r, axis=-1, keepdims=True), eps)
  dot = lambda a, b: jnp.sum(a * b, axis=-1, keepdims=True)
  rotated = x - 2.0 * r * dot(r, x) + 2.0 * q_hat * dot(x_hat, x)
  scale = sg(q_norm / jnp.maximum(x_norm, eps))
  out = scale * rotated
  # Forward value exactly q; the rotated expression only supplies the gradient.
  return out + sg(q - out)


def finish_quantized(x: Array, quantized: Array, mask: Array) -> Array:
  """Casts to x's dtype/shape and zeroes padding rows."""
  quantized = jnp.where(mask[:, None] > 0, quantized, 0.0)
  return quantized.reshape(x.shape).astype(x.dtype)


def finish_codes(x: Array, codes: Array, mask: Array) -> Array:
  """(N, S) codes -> x.shape[:-1] + (S,), int32, with -1 at padding."""
  codes = jnp.where(mask[:, None] > 0, codes, -1).astype(jnp.int32)
  return codes.reshape(x.shape[:-1] + codes.shape[-1:])
