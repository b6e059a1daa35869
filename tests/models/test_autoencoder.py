"""The autoencoder composition: every registered quantizer plugs in and trains, eval leaves the
state alone, init works on abstract shapes, the Tokenizer round-trips, and bad input fails
clearly."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.models.helpers import (SHAPE, TINY, evaluate, init, padded_batch, series,
                                  tiny_model)
from vqlearn import losses, models, quantizers

KEY = jax.random.PRNGKey(0)

# Small sizes per family; a family added later runs with its defaults.
SMALL = {
    "vq": dict(codebook_size=8),
    "ema_vq": dict(codebook_size=8),
    "kmeans": dict(codebook_size=8),
    "online_kmeans": dict(codebook_size=8),
    "gumbel": dict(codebook_size=8),
    "wasserstein": dict(codebook_size=8, sinkhorn_iters=10),
    "binary": dict(num_bits=4),
    "residual": dict(base="vq", levels=2, codebook_size=8),
    "product": dict(base="vq", groups=2, codebook_size=8),
}


def _batch():
  """(2, 6, 2) series; series 1 is padding from sample 2 on, holding NaN there."""
  x = series((2, 6, 2))
  mask = np.ones((2, 6), np.float32)
  mask[1, 2:] = 0
  x[mask == 0] = np.nan
  return jnp.asarray(x), jnp.asarray(mask)


@pytest.mark.parametrize("name", quantizers.names())
def test_every_quantizer_plugs_in_and_trains(name):
  q = quantizers.get(name, **SMALL.get(name, {}))
  # The smallest TOTEM: one stride-2 layer, no residual blocks (those are tested elsewhere).
  model = models.get("totem", q, **{**TINY, "residual_blocks": 0, "compression": 2})
  x, mask = _batch()
  params, state = init(model, x.shape)

  def loss_fn(params, state, rng):
    out, new_state = model.apply(params, state, x, mask=mask, rng=rng, train=True)
    loss = losses.masked_mse(out.target, out.reconstruction, mask) + sum(
        out.quantizer.losses.values())
    return loss, (out, new_state)

  @jax.jit
  def step(params, state, rng):
    (loss, (out, new_state)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        params, state, rng)
    eval_out, eval_state = model.apply(params, new_state, x, mask=mask, rng=rng, train=False)
    return loss, grads, out, new_state, eval_out, eval_state

  loss, grads, out, new_state, eval_out, eval_state = step(params, state, KEY)
  assert np.isfinite(loss)
  assert all(np.isfinite(np.asarray(g)).all() for g in jax.tree.leaves(grads))
  # The encoder and decoder learn from the reconstruction through the quantizer's estimator.
  for part in ("encoder", "decoder"):
    assert max(np.abs(np.asarray(g)).max() for g in jax.tree.leaves(grads[part])) > 0, part
  codes = np.asarray(out.quantizer.codes)
  assert codes.shape == (2, 2, 3, q.spec.num_symbols)
  assert (codes[0] >= 0).all() and (codes[1, :, 0] >= 0).all()
  assert (codes[1, :, 1:] == -1).all()  # tokens 1 and 2 of series 1 cover padding only
  assert jax.tree.structure(new_state) == jax.tree.structure(state)
  assert any(not np.array_equal(a, b)  # training moves the state (step counters at least)
             for a, b in zip(jax.tree.leaves(new_state), jax.tree.leaves(state)))
  for a, b in zip(jax.tree.leaves(eval_state), jax.tree.leaves(new_state)):
    np.testing.assert_array_equal(a, b)  # eval returns the state it was given
  assert np.isfinite(np.asarray(eval_out.reconstruction)).all()

  # The rng reaches the quantizer: eval ignores it, stochastic families sample with it.
  _, _, other_out, _, other_eval, _ = step(params, state, jax.random.PRNGKey(9))
  np.testing.assert_array_equal(other_eval.quantizer.codes, eval_out.quantizer.codes)
  if name in ("gumbel", "binary"):
    assert not np.array_equal(other_out.quantizer.codes, out.quantizer.codes)
    with pytest.raises(ValueError, match="rng"):
      jax.eval_shape(lambda p, s: model.apply(p, s, x, mask=mask, train=True), params, state)


def test_init_on_abstract_shapes():
  model = tiny_model()
  spec = jax.ShapeDtypeStruct((64,) + SHAPE[1:], jnp.float32)
  abstract = jax.eval_shape(model.init, KEY, spec)
  concrete = init(model)  # batch SHAPE[0]: parameters do not depend on the batch size
  assert jax.tree.structure(abstract) == jax.tree.structure(concrete)
  for a, c in zip(jax.tree.leaves(abstract), jax.tree.leaves(concrete)):
    assert a.shape == c.shape and a.dtype == c.dtype
  params, state = concrete
  assert set(params) == {"encoder", "quantizer", "decoder"} and set(state) == {"quantizer"}


@pytest.mark.parametrize("name", ["residual", "binary"])  # several symbols; bits as codes
def test_tokenizer_round_trip(name):
  q = quantizers.get(name, **SMALL[name])
  model = models.get("totem", q, **TINY)
  x, mask = map(jnp.asarray, padded_batch())
  params, state = init(model, x.shape)
  out = evaluate(model, params, state, x, mask)
  tok = models.Tokenizer(model, params, state)
  codes, stats = tok.tokenize(x, mask, return_stats=True)
  np.testing.assert_array_equal(codes, out.quantizer.codes)
  np.testing.assert_array_equal(tok.tokenize(x, mask), codes)
  assert codes.dtype == jnp.int32 and (np.asarray(codes)[out.latent_mask == 0] == -1).all()
  np.testing.assert_allclose(tok.detokenize(codes), out.reconstruction, atol=1e-6)
  np.testing.assert_allclose(tok.detokenize(codes, stats),
                             model.denormalize(out.reconstruction, out.stats), atol=1e-5)
  assert tok.detokenize(codes, stats).shape == x.shape


def test_make_autoencoder_with_plain_modules():
  """The composition is modality-agnostic: linen Dense layers around a quantizer."""
  import flax.linen as nn

  class Encoder(nn.Module):
    @nn.compact
    def __call__(self, x, mask, *, train=False):
      return nn.Dense(3)(x), mask

  class Decoder(nn.Module):
    @nn.compact
    def __call__(self, z, *, train=False):
      return nn.Dense(2)(z)

  model = models.make_autoencoder(Encoder(), quantizers.get("vq", codebook_size=4), Decoder())
  x = jnp.ones((2, 5, 2))
  params, state = model.init(KEY, x)
  assert params["quantizer"]["codebook"].shape == (4, 3)
  out, new_state = jax.jit(model.apply, static_argnames="train")(params, state, x, rng=KEY,
                                                                 train=True)
  assert out.reconstruction.shape == x.shape and out.stats is None
  assert out.quantizer.codes.shape == (2, 5, 1)
  assert int(new_state["quantizer"]["step"]) == 1 and int(state["quantizer"]["step"]) == 0


# ----------------------------------------------------------------------------------------------
# Errors name the field and what was expected.
# ----------------------------------------------------------------------------------------------

def test_unknown_model_and_option():
  q = quantizers.get("vq")
  with pytest.raises(ValueError, match=r"unknown model 'tortem'.*'totem'"):
    models.get("tortem", q)
  with pytest.raises(ValueError, match=r"\['hiden'\].*accepted.*'hidden'"):
    models.get("totem", q, hiden=64)
  with pytest.raises(ValueError, match="quantizer"):
    models.get("totem", "vq")
  assert "totem" in models.names()


@pytest.mark.parametrize("kwargs,match", [
    (dict(compression=6), "compression must be a power of two"),
    (dict(compression=1), "compression"),
    (dict(hidden=7), "hidden must be even"),
    (dict(latent_dim=0), "latent_dim"),
    (dict(residual_blocks=-1), "residual_blocks"),
    (dict(eps=0.0), "eps"),
    (dict(faithful_relu="yes"), "faithful_relu"),
])
def test_bad_options(kwargs, match):
  with pytest.raises(ValueError, match=match):
    models.get("totem", quantizers.get("vq"), **kwargs)


def test_length_not_a_multiple_of_compression():
  model = tiny_model(compression=8)
  with pytest.raises(ValueError, match=r"T=12.*compression 8"):
    model.init(KEY, jax.ShapeDtypeStruct((2, 12, 1), jnp.float32))
  params, state = jax.eval_shape(model.init, KEY, jax.ShapeDtypeStruct((2, 16, 1), jnp.float32))
  with pytest.raises(ValueError, match=r"T=20.*compression 8"):
    jax.eval_shape(model.apply, params, state, jnp.zeros((2, 20, 1)))


def test_bad_input_shapes():
  model = tiny_model()
  params, state = init(model)
  with pytest.raises(ValueError, match="3 axes"):
    model.apply(params, state, jnp.zeros((2, 8)))
  with pytest.raises(ValueError, match="mask"):
    model.apply(params, state, jnp.zeros((2, 8, 1)), mask=jnp.ones((2, 4)))
