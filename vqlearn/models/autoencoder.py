"""encoder -> quantizer -> decoder as one pure ``(init, apply)`` pair, and the Tokenizer on top.

Any flax linen encoder/decoder pair and any registered quantizer compose into an
``Autoencoder`` NamedTuple of pure functions, in the style of the quantizer protocol:

    model = make_autoencoder(encoder, quantizer, decoder, compression=4, normalize=revin, ...)
    params, state = model.init(rng, x_spec)   # params {'encoder','quantizer','decoder'}
    out, state = model.apply(params, state, x, mask=mask, rng=rng, train=True)
    loss = losses.masked_mse(out.target, out.reconstruction, mask) + weighted out.quantizer.losses

Params are what optax trains; state is the quantizer's state (EMA sums, counters), the only
thing ``apply`` updates. Both are plain pytrees, so the trainer can ``jax.eval_shape(init)``,
shard, donate and checkpoint them.

Module protocol (what an encoder/decoder pair must provide; stateless linen modules, i.e. the
only variable collection is ``params``):
  encoder(target, mask, *, train) -> (latents (..., d), latent_mask latents.shape[:-1])
  decoder(quantized, *, train)    -> reconstruction, target's shape
where ``target, stats = normalize(x, mask)`` is the normalised input with padding zeroed.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from vqlearn.quantizers.base import Quantizer, QuantizerOutput
from vqlearn.types import Array, Params, PRNGKey, State

F32 = jnp.float32


class AutoencoderOutput(NamedTuple):
  """What ``Autoencoder.apply`` returns besides the new state.

  Attributes:
    reconstruction: target's shape, in the model's normalised space (what the loss compares
      with ``target``). Values at padded samples are meaningless; losses mask them.
    target: the normalised input (e.g. RevIN'd), zero at padding.
    quantizer: the quantizer's output on the latents; for time series ``codes`` is
      (B, C, T', S) and ``quantized`` (B, C, T', d).
    latent_mask: ``latents.shape[:-1]``, 1 = the token covers at least one real sample.
    stats: what ``denormalize`` needs to undo the normalisation (None without one).
  """
  reconstruction: Array
  target: Array
  quantizer: QuantizerOutput
  latent_mask: Array
  stats: Any


class Autoencoder(NamedTuple):
  """An autoencoder: pure functions plus the static facts a trainer needs.

  Attributes:
    init: ``(rng, x_spec) -> (params, state)``; x_spec is an array or ``jax.ShapeDtypeStruct``
      (traced on one example of its shape: parameters never depend on the batch size).
    apply: ``(params, state, x, *, mask=None, rng=None, train=False) -> (output, state)``.
    quantizer: the quantizer in the middle (its ``spec`` gives bits per token).
    compression: input samples per token; axis 1 of x must be a multiple of it.
    denormalize: ``(x_normalised, stats) -> x`` (identity when stats is None).
    decode: ``(params, state, codes, *, stats=None) -> x_hat``: codes through
      ``quantizer.lookup`` and the decoder; denormalised when stats are given.
  """
  init: Callable[[PRNGKey, Any], tuple[Params, State]]
  apply: Callable[..., tuple[AutoencoderOutput, State]]
  quantizer: Quantizer
  compression: int
  denormalize: Callable[[Array, Any], Array]
  decode: Callable[..., Array]


def zero_padding(x: Array, mask: Array) -> tuple[Array, None]:
  """The default ``normalize``: float32 input with padded positions zeroed, no statistics."""
  return jnp.where(mask[..., None] > 0, x.astype(F32), 0.0), None


def identity_denormalize(x: Array, stats: Any) -> Array:
  del stats
  return x


def _params_only(variables: Any, part: str) -> Params:
  extra = sorted(set(variables) - {"params"})
  if extra:
    raise ValueError(f"the {part} must be a stateless linen module (only 'params'); it created "
                     f"variable collections {extra}")
  return variables.get("params", {})


def make_autoencoder(encoder: nn.Module, quantizer: Quantizer, decoder: nn.Module, *,
                     compression: int = 1, input_ndim: int | None = None,
                     normalize: Callable[[Array, Array], tuple[Array, Any]] = zero_padding,
                     denormalize: Callable[[Array, Any], Array] = identity_denormalize,
                     ) -> Autoencoder:
  """Composes ``normalize -> encoder -> quantizer -> decoder`` into an ``Autoencoder``.

  Args:
    encoder: linen module, ``encoder(target, mask, train=...) -> (latents, latent_mask)``.
    quantizer: any ``Quantizer``; its input dimension d is the encoder's latent size (set by
      ``init`` from the latent shape).
    decoder: linen module, ``decoder(quantized, train=...) -> reconstruction``.
    compression: input samples per token along axis 1 (time); ``init`` and ``apply`` reject
      inputs whose axis 1 is not a multiple of it.
    input_ndim: the number of axes x must have (3 for (B, T, C)); None = any >= 2.
    normalize: ``(x, mask) -> (target, stats)``; target has padding zeroed (even if x held
      NaN there). Default: float32 cast and zeroed padding, stats None.
    denormalize: ``(x_normalised, stats) -> x``, the inverse of ``normalize`` on real samples.

  Returns:
    ``Autoencoder(init, apply, quantizer, compression, denormalize, decode)``. ``apply`` splits
    ``rng`` into a key for the quantizer and a ``'dropout'`` key for the modules; with
    ``train=False`` it returns the state it was given.
  """
  if isinstance(compression, bool) or not isinstance(compression, int) or compression < 1:
    raise ValueError(f"compression must be an integer >= 1, got {compression!r}")

  def check_length(shape: tuple[int, ...]) -> None:
    if len(shape) < 2 or (input_ndim is not None and len(shape) != input_ndim):
      expected = "" if input_ndim is None else f"{input_ndim} "
      expected = f"{expected}axes (batch, time, ...)"
      raise ValueError(f"x must have {expected}, got shape {shape}")
    if shape[1] % compression:
      raise ValueError(f"x has T={shape[1]} samples (axis 1), which is not a multiple of the "
                       f"model's compression {compression}; pad the series to a multiple of "
                       f"{compression} (data.load_split(..., pad_multiple={compression}))")

  def default_mask(x: Array, mask: Array | None) -> Array:
    if mask is None:
      return jnp.ones(x.shape[:-1], F32)
    if tuple(mask.shape) != tuple(x.shape[:-1]):
      raise ValueError(f"mask must have shape x.shape[:-1] = {tuple(x.shape[:-1])}, "
                       f"got {tuple(mask.shape)}")
    return mask.astype(F32)

  def init(rng: PRNGKey, x_spec: Any) -> tuple[Params, State]:
    shape = tuple(getattr(x_spec, "shape", ()))
    check_length(shape)
    # Parameter shapes never depend on the batch size, so one example is enough to trace.
    x = jnp.zeros((1,) + shape[1:], getattr(x_spec, "dtype", F32))
    mask = jnp.ones(x.shape[:-1], F32)
    enc_key, q_key, dec_key = jax.random.split(rng, 3)
    target, _ = normalize(x, mask)
    (latents, _), enc_vars = encoder.init_with_output(enc_key, target, mask, train=False)
    q_params, q_state = quantizer.init(q_key, jax.ShapeDtypeStruct(latents.shape, latents.dtype))
    dec_vars = decoder.init(dec_key, jnp.zeros(latents.shape, latents.dtype), train=False)
    params = {"encoder": _params_only(enc_vars, "encoder"), "quantizer": q_params,
              "decoder": _params_only(dec_vars, "decoder")}
    return params, {"quantizer": q_state}

  def apply(params: Params, state: State, x: Array, *, mask: Array | None = None,
            rng: PRNGKey | None = None, train: bool = False,
            ) -> tuple[AutoencoderOutput, State]:
    check_length(tuple(x.shape))
    mask = default_mask(x, mask)
    if rng is None:
      q_key = module_rngs = None
    else:
      q_key, module_key = jax.random.split(rng)
      module_rngs = {"dropout": module_key}
    target, stats = normalize(x, mask)
    latents, latent_mask = encoder.apply({"params": params["encoder"]}, target, mask,
                                         train=train, rngs=module_rngs)
    q_out, q_state = quantizer.apply(params["quantizer"], state["quantizer"], latents,
                                     rng=q_key, mask=latent_mask, train=train)
    reconstruction = decoder.apply({"params": params["decoder"]}, q_out.quantized, train=train,
                                   rngs=module_rngs)
    out = AutoencoderOutput(reconstruction=reconstruction, target=target, quantizer=q_out,
                            latent_mask=latent_mask, stats=stats)
    return out, ({"quantizer": q_state} if train else state)

  def decode(params: Params, state: State, codes: Array, *, stats: Any = None) -> Array:
    quantized = quantizer.lookup(params["quantizer"], state["quantizer"], codes)
    x_hat = decoder.apply({"params": params["decoder"]}, quantized, train=False)
    return x_hat if stats is None else denormalize(x_hat, stats)

  return Autoencoder(init=init, apply=apply, quantizer=quantizer, compression=compression,
                     denormalize=denormalize, decode=decode)


class Tokenizer:
  """A trained autoencoder as a tokenizer: series -> codes -> series.

      tok = Tokenizer(model, params, state)
      codes, stats = tok.tokenize(x, mask, return_stats=True)  # codes (B, C, T', S), -1 = pad
      x_hat = tok.detokenize(codes, stats)                     # (B, T, C) in x's units

  Both directions are jitted once (compiled per input shape) and run in eval mode, so
  ``detokenize(tokenize(x))`` equals ``apply(..., train=False)``'s reconstruction.
  """

  def __init__(self, model: Autoencoder, params: Params, state: State):
    self.model, self.params, self.state = model, params, state

    def encode(params, state, x, mask):
      out, _ = model.apply(params, state, x, mask=mask, train=False)
      return out.quantizer.codes, out.stats

    self._encode = jax.jit(encode)
    self._decode = jax.jit(lambda params, state, codes, stats: model.decode(
        params, state, codes, stats=stats))

  def tokenize(self, x: Array, mask: Array | None = None, *, return_stats: bool = False):
    """Codes of x (int32, -1 at tokens with no real sample).

    Args:
      x: (B, T, C) with T a multiple of ``model.compression``.
      mask: (B, T), 1 = real sample; None = all real.
      return_stats: also return the normalisation statistics ``detokenize`` needs to map back
        to x's units.

    Returns:
      codes (B, C, T', S), or ``(codes, stats)`` with ``return_stats``.
    """
    codes, stats = self._encode(self.params, self.state, x, mask)
    return (codes, stats) if return_stats else codes

  def detokenize(self, codes: Array, stats: Any = None) -> Array:
    """Series from codes: the normalised reconstruction, or x's units when ``stats`` is given."""
    return self._decode(self.params, self.state, codes, stats)
