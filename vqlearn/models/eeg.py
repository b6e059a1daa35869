"""A sensor-aware EEG tokenizer after BrainOmni's BrainTokenizer (Xiao et al., NeurIPS 2025).

Recordings differ in how many electrodes they have, in what order and where. The tokenizer
makes the latent shape independent of all three:

  signal (B, T, C), positions (B, C, 3), channel_type (B, C), channel_mask (B, C)
  -> per (window, channel) normalisation (RevIN, as TOTEM's: the loss and every metric live in
     this space, so the two EEG presets are scored on one scale)
  -> per-channel temporal conv encoder, shared by all channels: (B, C, T/c, D)
  -> + sensor embedding(position, type): Fourier features of the 3-D position through an MLP,
     plus a learned vector per channel type
  -> cross-attention from ``num_sources`` learned source queries onto the channels, at each
     token time (channels are a set: no index enters, so listing them in another order gives
     the same sources), then a source-wise MLP and a temporal conv: latents (B, N, T/c, d)
  -> quantizer (any registered family; the BrainOmni preset is residual VQ 4 x 512)
  -> decoder: the sensors to reconstruct (any set, seen in training or not) query the quantized
     sources with their own sensor embeddings; a per-channel transposed-conv stack returns
     (B, T, Q).

Training follows BrainOmni's recipe: a random quarter of each example's channels (at least one)
is hidden from the encoder, Gaussian noise (std 0.1) is added to its input, and every channel is
reconstructed, so the decoder learns to infer sensors it was not shown. Evaluation shows the
encoder every channel of ``input_mask`` (default: all real ones).

Codes are ``(B, N, T/c, S)`` whatever the montage; ``decode(params, state, codes, positions,
channel_type)`` reconstructs any sensors from them.
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from vqlearn.data.eeg import CHANNEL_TYPES
from vqlearn.models.autoencoder import AutoencoderOutput
from vqlearn.models.timeseries import conv_transpose1d, revin_denormalize, revin_normalize
from vqlearn.quantizers.base import Quantizer
from vqlearn.types import Array, Params, PRNGKey, State

F32 = jnp.float32
BATCH_KEYS = ("signal", "positions", "channel_type", "channel_mask")


class SensorEmbedding(nn.Module):
  """(..., C, 3) positions in head radii and (..., C) types -> (..., C, dim)."""
  dim: int
  frequencies: int = 4

  @nn.compact
  def __call__(self, positions: Array, channel_type: Array) -> Array:
    # Fourier features let a small MLP resolve electrodes a few centimetres apart.
    scales = (2.0 ** jnp.arange(self.frequencies, dtype=F32)) * math.pi
    angles = positions[..., None, :] * scales.reshape((1,) * (positions.ndim - 1) + (-1, 1))
    features = jnp.concatenate([positions, jnp.sin(angles).reshape(*positions.shape[:-1], -1),
                                jnp.cos(angles).reshape(*positions.shape[:-1], -1)], axis=-1)
    h = nn.gelu(nn.Dense(self.dim, name="position_in")(features))
    h = nn.Dense(self.dim, name="position_out")(h)
    return h + nn.Embed(len(CHANNEL_TYPES), self.dim, name="type")(channel_type)


class AttentionBlock(nn.Module):
  """queries (..., N, D) attend to keys (..., C, D) where mask (..., C) is 1; then an MLP."""
  dim: int
  heads: int

  @nn.compact
  def __call__(self, queries: Array, keys: Array, mask: Array) -> Array:
    attention_mask = mask[..., None, None, :] > 0  # (..., heads, N, C) by broadcasting
    attended = nn.MultiHeadDotProductAttention(self.heads, qkv_features=self.dim, name="attn")(
        nn.LayerNorm(name="norm_q")(queries), nn.LayerNorm(name="norm_kv")(keys),
        mask=attention_mask)
    h = queries + attended
    mlp = nn.Dense(self.dim, name="mlp_out")(nn.gelu(nn.Dense(2 * self.dim, name="mlp_in")(
        nn.LayerNorm(name="norm_mlp")(h))))
    return h + mlp


class ChannelEncoder(nn.Module):
  """(B, T, C) -> (B, C, T/c, D), the same conv stack on every channel."""
  dim: int
  compression: int

  @nn.compact
  def __call__(self, x: Array) -> Array:
    b, t, c = x.shape
    h = jnp.swapaxes(x, 1, 2).reshape(b * c, t, 1)
    h = nn.gelu(nn.Conv(self.dim // 2, (7,), padding="SAME", name="conv_in")(h))
    for i in range(int(math.log2(self.compression))):
      h = nn.gelu(nn.Conv(self.dim, (4,), strides=(2,), padding=[(1, 1)], name=f"down_{i}")(h))
    h = h + nn.Conv(self.dim, (3,), padding="SAME", name="conv_out")(nn.gelu(h))
    return h.reshape(b, c, t // self.compression, self.dim)


class ChannelDecoder(nn.Module):
  """(B, Q, T', D) -> (B, T' * c, Q), the mirror of ``ChannelEncoder`` as TOTEM's decoder is
  of its encoder: stride-2 transposed convs halving the width, the last one to one channel
  (nothing runs at full resolution with D channels, where CPU time would go)."""
  dim: int
  compression: int

  @nn.compact
  def __call__(self, h: Array) -> Array:
    b, q, tokens, _ = h.shape
    h = h.reshape(b * q, tokens, self.dim)
    h = h + nn.Conv(self.dim, (3,), padding="SAME", name="conv_in")(nn.gelu(h))
    layers = int(math.log2(self.compression))
    for i in range(layers):
      features = 1 if i == layers - 1 else self.dim // 2 ** (i + 1)
      # k4 s2 p1 doubles the length; the matmul form avoids XLA:CPU's slow kernel gradient.
      h = conv_transpose1d(h, features, 4, stride=2, padding=1, name=f"up_{i}")
      if i < layers - 1:
        h = nn.gelu(h)
    return jnp.swapaxes(h.reshape(b, q, tokens * self.compression), 1, 2)


class SourceEncoder(nn.Module):
  """Normalised signal and sensors -> latent sources (B, N, T', latent_dim)."""
  dim: int
  heads: int
  num_sources: int
  latent_dim: int
  compression: int

  @nn.compact
  def __call__(self, x: Array, positions: Array, channel_type: Array, input_mask: Array
               ) -> Array:
    h = ChannelEncoder(self.dim, self.compression, name="channels")(x)  # (B, C, T', D)
    h = h + SensorEmbedding(self.dim, name="sensors")(positions, channel_type)[:, :, None]
    keys = jnp.swapaxes(h, 1, 2)  # (B, T', C, D): attention runs at each token time
    queries = self.param("sources", nn.initializers.normal(0.02), (self.num_sources, self.dim))
    queries = jnp.broadcast_to(queries, keys.shape[:2] + queries.shape)
    mask = jnp.broadcast_to(input_mask[:, None, :], keys.shape[:3])
    s = AttentionBlock(self.dim, self.heads, name="gather")(queries, keys, mask)  # (B,T',N,D)
    s = jnp.swapaxes(s, 1, 2)  # (B, N, T', D)
    b, n, tokens, _ = s.shape
    flat = s.reshape(b * n, tokens, self.dim)
    flat = flat + nn.Conv(self.dim, (3,), padding="SAME", name="temporal")(nn.gelu(flat))
    latents = nn.Dense(self.latent_dim, name="project")(nn.LayerNorm(name="norm")(flat))
    return latents.reshape(b, n, tokens, self.latent_dim)


class SensorDecoder(nn.Module):
  """Quantized sources (B, N, T', d) and query sensors (B, Q, ...) -> (B, T, Q)."""
  dim: int
  heads: int
  compression: int

  @nn.compact
  def __call__(self, z: Array, positions: Array, channel_type: Array) -> Array:
    b, n, tokens, _ = z.shape
    s = nn.Dense(self.dim, name="expand")(z).reshape(b * n, tokens, self.dim)
    s = s + nn.Conv(self.dim, (3,), padding="SAME", name="temporal")(nn.gelu(s))
    keys = jnp.swapaxes(s.reshape(b, n, tokens, self.dim), 1, 2)  # (B, T', N, D)
    sensors = SensorEmbedding(self.dim, name="sensors")(positions, channel_type)  # (B, Q, D)
    queries = jnp.broadcast_to(sensors[:, None], (b, tokens) + sensors.shape[1:])
    h = AttentionBlock(self.dim, self.heads, name="scatter")(
        queries, keys, jnp.ones(keys.shape[:3], F32))  # (B, T', Q, D)
    return ChannelDecoder(self.dim, self.compression, name="channels")(jnp.swapaxes(h, 1, 2))


class SensorAutoencoder(NamedTuple):
  """The sensor-aware tokenizer as pure functions (cf. ``models.Autoencoder``).

  Attributes:
    init: ``(rng, batch_spec) -> (params, state)``; batch_spec maps ``BATCH_KEYS`` to arrays or
      ``jax.ShapeDtypeStruct``s (one example is traced: parameters never depend on B or C).
    apply: ``(params, state, batch, *, input_mask=None, rng=None, train=False) ->
      (AutoencoderOutput, state)``. The encoder sees the channels where ``input_mask``
      (default ``batch['channel_mask']``) is 1; every channel of the batch is reconstructed.
    quantizer: the quantizer on the sources.
    compression: samples per token; T must be a multiple of it.
    num_sources: N, the latent sources per token time.
    decode: ``(params, state, codes, positions, channel_type) -> (B, T, Q)``, normalised.
    denormalize: ``(x, stats) -> x`` in the input's units (RevIN's inverse).
  """
  init: Callable[[PRNGKey, Any], tuple[Params, State]]
  apply: Callable[..., tuple[AutoencoderOutput, State]]
  quantizer: Quantizer
  compression: int
  num_sources: int
  decode: Callable[..., Array]
  denormalize: Callable[[Array, Any], Array]


def _positive_int(name: str, value, minimum: int = 1) -> int:
  if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
    raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
  return value


def hidden_channels(channel_mask: Array, rng: PRNGKey, ratio: float) -> Array:
  """(B, C) 1 where a channel is real and shown to the encoder: per example, the
  max(floor(ratio * real), 1) real channels with the lowest uniform scores are hidden
  (BrainOmni's random quarter), none when only one channel is real."""
  real = channel_mask > 0
  count = jnp.sum(real, axis=-1, keepdims=True)
  scores = jnp.where(real, jax.random.uniform(rng, channel_mask.shape), 2.0)
  rank = jnp.argsort(jnp.argsort(scores, axis=-1), axis=-1)
  drop = jnp.where(count > 1, jnp.maximum(jnp.floor(ratio * count), 1), 0)
  return (real & (rank >= drop)).astype(F32)


def brain_tokenizer(quantizer: Quantizer, *, dim: int = 64, heads: int = 4,
                    num_sources: int = 8, latent_dim: int = 32, compression: int = 4,
                    hide_ratio: float = 0.25, input_noise: float = 0.1,
                    eps: float = 1e-5) -> SensorAutoencoder:
  """BrainTokenizer-style sensor-aware tokenizer around any quantizer.

  Args:
    quantizer: any registered quantizer; it quantizes ``latent_dim``-dimensional sources.
    dim: width of the conv stacks, sensor embeddings and attention.
    heads: attention heads (must divide ``dim``).
    num_sources: latent sources N per token time (the montage-independent latent shape).
    latent_dim: source dimension d given to the quantizer.
    compression: samples per token, a power of two >= 2.
    hide_ratio: fraction of real channels hidden from the encoder in training (0: none).
    input_noise: std of the Gaussian noise added to the encoder's input in training.
    eps: RevIN's variance epsilon.

  Returns:
    A ``SensorAutoencoder``.
  """
  dim = _positive_int("dim", dim, 2)
  heads = _positive_int("heads", heads)
  if dim % heads:
    raise ValueError(f"heads ({heads}) must divide dim ({dim})")
  num_sources = _positive_int("num_sources", num_sources)
  latent_dim = _positive_int("latent_dim", latent_dim)
  compression = _positive_int("compression", compression, 2)
  if compression & (compression - 1):
    raise ValueError(f"compression must be a power of two >= 2, got {compression}")
  for name, value in (("hide_ratio", hide_ratio), ("input_noise", input_noise)):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
      raise ValueError(f"{name} must be a number >= 0, got {value!r}")
  if hide_ratio >= 1:
    raise ValueError(f"hide_ratio must be < 1 (some channel must reach the encoder), "
                     f"got {hide_ratio}")
  encoder = SourceEncoder(dim, heads, num_sources, latent_dim, compression)
  decoder = SensorDecoder(dim, heads, compression)

  def check_batch(batch) -> None:
    missing = [k for k in BATCH_KEYS if k not in batch]
    if missing:
      raise ValueError(f"the batch needs keys {BATCH_KEYS}; missing {missing}")
    b, t, c = batch["signal"].shape
    expected = {"positions": (b, c, 3), "channel_type": (b, c), "channel_mask": (b, c)}
    for key, shape in expected.items():
      if tuple(batch[key].shape) != shape:
        raise ValueError(f"batch[{key!r}] must have shape {shape} to match signal (B, T, C) = "
                         f"{(b, t, c)}, got {tuple(batch[key].shape)}")
    if t % compression:
      raise ValueError(f"signal has T={t} samples, not a multiple of the compression "
                       f"{compression}; choose config.data.window_seconds accordingly")

  def normalize(signal: Array, channel_mask: Array):
    target, stats = revin_normalize(signal, jnp.ones(signal.shape[:2], F32), eps)
    return jnp.where(channel_mask[:, None, :] > 0, target, 0.0), stats

  def init(rng: PRNGKey, batch_spec: Any) -> tuple[Params, State]:
    check_batch(batch_spec)
    one = {k: jnp.zeros((1,) + tuple(batch_spec[k].shape[1:]), batch_spec[k].dtype)
           for k in BATCH_KEYS}
    one["channel_mask"] = jnp.ones_like(one["channel_mask"], F32)
    enc_key, q_key, dec_key = jax.random.split(rng, 3)
    args = (one["signal"].astype(F32), one["positions"], one["channel_type"],
            one["channel_mask"])
    latents, enc_vars = encoder.init_with_output(enc_key, *args)
    q_params, q_state = quantizer.init(q_key, jax.ShapeDtypeStruct(latents.shape, latents.dtype))
    dec_vars = decoder.init(dec_key, latents, one["positions"], one["channel_type"])
    return ({"encoder": enc_vars["params"], "quantizer": q_params,
             "decoder": dec_vars["params"]}, {"quantizer": q_state})

  def apply(params: Params, state: State, batch: Any, *, input_mask: Array | None = None,
            rng: PRNGKey | None = None, train: bool = False
            ) -> tuple[AutoencoderOutput, State]:
    check_batch(batch)
    channel_mask = batch["channel_mask"].astype(F32)
    shown = channel_mask if input_mask is None else input_mask.astype(F32) * channel_mask
    target, stats = normalize(batch["signal"], channel_mask)
    x = target
    q_key = None
    if train:
      if rng is None:
        raise ValueError("train=True needs an rng (channel hiding and input noise)")
      hide_key, noise_key, q_key = jax.random.split(rng, 3)
      if hide_ratio:
        shown = hidden_channels(shown, hide_key, hide_ratio)
      if input_noise:
        x = x + input_noise * jax.random.normal(noise_key, x.shape)
    x = jnp.where(shown[:, None, :] > 0, x, 0.0)
    latents = encoder.apply({"params": params["encoder"]}, x, batch["positions"],
                            batch["channel_type"], shown)
    b, n, tokens, _ = latents.shape
    latent_mask = jnp.ones((b, n, tokens), F32)
    q_out, q_state = quantizer.apply(params["quantizer"], state["quantizer"], latents,
                                     rng=q_key, mask=latent_mask, train=train)
    reconstruction = decoder.apply({"params": params["decoder"]}, q_out.quantized,
                                   batch["positions"], batch["channel_type"])
    out = AutoencoderOutput(reconstruction=reconstruction, target=target, quantizer=q_out,
                            latent_mask=latent_mask, stats=stats)
    return out, ({"quantizer": q_state} if train else state)

  def decode(params: Params, state: State, codes: Array, positions: Array,
             channel_type: Array) -> Array:
    quantized = quantizer.lookup(params["quantizer"], state["quantizer"], codes)
    return decoder.apply({"params": params["decoder"]}, quantized, positions, channel_type)

  return SensorAutoencoder(init=init, apply=apply, quantizer=quantizer,
                           compression=compression, num_sources=num_sources, decode=decode,
                           denormalize=revin_denormalize)
