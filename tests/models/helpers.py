"""Tiny models and synthetic batches shared by the model tests.

Compile time dominates these tests, so models, their parameters and their jitted eval-mode
apply are cached: tests asking for the same configuration and shape share one compilation.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from vqlearn import models, quantizers

TINY = dict(hidden=8, res_hidden=4, residual_blocks=1, latent_dim=4)
SHAPE = (2, 16, 2)  # (B, T, C) most tests use


@functools.lru_cache(maxsize=None)
def _model(quantizer_name, quantizer_items, model_items):
  q = quantizers.get(quantizer_name, **dict(quantizer_items))
  return models.get("totem", q, **dict(model_items))


def tiny_model(quantizer_name="vq", quantizer_kwargs=None, **model_kwargs):
  """The tiny TOTEM model (one instance per configuration)."""
  quantizer_kwargs = {"codebook_size": 8} if quantizer_kwargs is None else quantizer_kwargs
  return _model(quantizer_name, tuple(sorted(quantizer_kwargs.items())),
                tuple(sorted({**TINY, **model_kwargs}.items())))


@functools.lru_cache(maxsize=None)
def init(model, shape=SHAPE, seed=0):
  return model.init(jax.random.PRNGKey(seed), jax.ShapeDtypeStruct(shape, jnp.float32))


@functools.lru_cache(maxsize=None)
def _evaluator(model):
  return jax.jit(functools.partial(model.apply, train=False))


def evaluate(model, params, state, x, mask=None):
  """``model.apply(..., train=False)``'s output, jitted once per model."""
  return _evaluator(model)(params, state, x, mask=mask)[0]


def series(shape=SHAPE, seed=0, scale=3.0, offset=5.0):
  """Random walks with a per-(series, channel) offset and scale, so RevIN has work to do."""
  rng = np.random.default_rng(seed)
  walk = np.cumsum(rng.normal(size=shape), axis=1)
  return (offset * rng.normal(size=(shape[0], 1, shape[2])) + scale * walk).astype(np.float32)


def padded_batch(fill=np.nan):
  """SHAPE series; series 1 is padding from sample 10 on (token 2 half real, token 3 all
  padding at compression 4), holding ``fill`` there."""
  x = series()
  mask = np.ones(SHAPE[:2], np.float32)
  mask[1, 10:] = 0
  x[mask == 0] = fill
  return x, mask
