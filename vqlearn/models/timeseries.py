"""TOTEM's time-series tokenizer: RevIN, channel-independent 1-D conv encoder/decoder.

Built as TOTEM's code builds it (Talukder et al. 2024, ``forecasting/lib/models/vqvae.py``;
REFERENCE.md §8): every channel of every series is normalised on its own (RevIN without affine
terms) and tokenized as a univariate series by

  encoder: log2(c) x [Conv k4 s2 p1 + ReLU] (1 -> hidden/2 -> hidden -> hidden ...)
           -> Conv k3 p1 hidden -> residual stack -> Conv k1 hidden -> latent_dim
  decoder: Conv k3 p1 latent_dim -> hidden -> residual stack
           -> log2(c) x ConvTranspose k4 s2 p1 (... hidden -> hidden/2 -> 1), ReLU between
  residual stack: blocks [ReLU, Conv k3 p1 no bias -> res_hidden, ReLU, Conv k1 no bias
                  -> hidden] with a skip connection, then a final ReLU

so T samples become T / c tokens and the decoder returns exactly T samples (c = compression).
The default sizes (hidden 128, res_hidden 64, 2 blocks, latent 64, c = 4) with a 256 x 64 VQ
codebook give TOTEM's 296,001 parameters. Convolutions use PyTorch's padding and default
initialisation (kaiming-uniform with a = sqrt(5): weights and biases ~ U(+-1/sqrt(fan_in))),
and transposed convolutions use PyTorch's kernel layout, so TOTEM's weights load one-to-one.

TOTEM's residual blocks start with an in-place ReLU that overwrites the skip input, so each
block computes relu(x) + F(relu(x)). ``faithful_relu=True`` (default) reproduces that;
``False`` gives the textbook x + F(relu(x)).

Padding: x (B, T, C) comes with mask (B, T). Statistics use real samples only, padded samples
are zeroed after normalisation (before any convolution), and a token is real when its block of
c samples holds a real sample; the quantizer gets that latent mask, so padding never enters its
statistics. Tokens next to the padding still see the zeros through the receptive field.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from vqlearn.models.autoencoder import Autoencoder, make_autoencoder
from vqlearn.quantizers.base import Quantizer
from vqlearn.types import Array

F32 = jnp.float32


# ----------------------------------------------------------------------------------------------
# RevIN (Kim et al. ICLR 2022) without the affine terms, over real samples only.
# ----------------------------------------------------------------------------------------------

class RevinStats(NamedTuple):
  """Per (series, channel) statistics, each (B, 1, C)."""
  mean: Array
  std: Array


def revin_normalize(x: Array, mask: Array, eps: float = 1e-5) -> tuple[Array, RevinStats]:
  """(x - mean) / sqrt(var + eps) per series and channel, over the real samples of each series.

  TOTEM's RevIN: biased variance, eps inside the square root. Padded samples (mask 0) are
  excluded from the statistics and zeroed in the output, whatever they held (NaN included).

  Args:
    x: (B, T, C).
    mask: (B, T), 1 = real sample.
    eps: added to the variance.

  Returns:
    The normalised series (B, T, C) float32 and ``RevinStats`` (B, 1, C) to undo it.
  """
  m = mask.astype(F32)[..., None]
  x = jnp.where(m > 0, x.astype(F32), 0.0)
  count = jnp.maximum(jnp.sum(m, axis=1, keepdims=True), 1.0)
  mean = jnp.sum(x, axis=1, keepdims=True) / count
  var = jnp.sum(jnp.where(m > 0, jnp.square(x - mean), 0.0), axis=1, keepdims=True) / count
  std = jnp.sqrt(var + eps)
  return jnp.where(m > 0, (x - mean) / std, 0.0), RevinStats(mean, std)


def revin_denormalize(x: Array, stats: RevinStats | None) -> Array:
  """Inverse of ``revin_normalize`` on real samples: x * std + mean (identity for None)."""
  if stats is None:
    return x
  return x * stats.std + stats.mean


# ----------------------------------------------------------------------------------------------
# Layers with PyTorch's padding and initialisation.
# ----------------------------------------------------------------------------------------------

def _torch_uniform(fan_in: int):
  """PyTorch's default conv init, kaiming_uniform(a=sqrt(5)): U(-1/sqrt(fan_in), 1/sqrt(fan_in)),
  the same bound for the bias (``torch.nn.modules.conv._ConvNd.reset_parameters``)."""
  bound = 1.0 / math.sqrt(fan_in)

  def init(key, shape, dtype=F32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init


def conv1d(x: Array, features: int, kernel: int, *, stride: int = 1, padding: int = 0,
           use_bias: bool = True, name: str | None = None) -> Array:
  """``torch.nn.Conv1d(in, features, kernel, stride, padding, bias=use_bias)`` on (N, T, in).

  Must be called inside a compact method (the layer becomes a child of the caller). The kernel
  is (kernel, in, features): torch's weight (features, in, kernel) transposed (2, 1, 0).
  """
  init = _torch_uniform(x.shape[-1] * kernel)
  return nn.Conv(features, (kernel,), strides=(stride,), padding=[(padding, padding)],
                 use_bias=use_bias, kernel_init=init, bias_init=init, name=name)(x)


class ConvTranspose1d(nn.Module):
  """``torch.nn.ConvTranspose1d(in, features, kernel, stride, padding)`` on (N, T, in).

  out[s t + j - p] += x[t] W_j: one matmul for every tap, then an overlap-add by output phase
  (position mod s). ``lax.conv_transpose`` computes the same values, but XLA:CPU's gradient of
  its kernel (a conv with a dilated input) was 50x slower than this whole layer (147 ms for
  the 128->64 layer of a batch of 256 windows of 96). Output length
  (T - 1) * stride - 2 * padding + kernel, as in PyTorch. Parameters are those of
  ``nn.ConvTranspose(..., transpose_kernel=True)``: kernel (kernel, features, in) = torch's
  weight (in, features, kernel) transposed (2, 1, 0), and bias (features,). PyTorch computes
  fan_in from its weight's axis 1, the output channels, so the init bound is
  1/sqrt(features * kernel).
  """
  features: int
  kernel: int
  stride: int = 1
  padding: int = 0

  @nn.compact
  def __call__(self, x: Array) -> Array:
    k, s, p = self.kernel, self.stride, self.padding
    init = _torch_uniform(self.features * k)
    w = self.param("kernel", init, (k, self.features, x.shape[-1]))
    b = self.param("bias", init, (self.features,))
    taps = jnp.einsum("nti,joi->ntjo", x, w)  # (N, T, k, features)
    length = x.shape[1]
    shifts = (k - 1) // s  # tap j = s*q + r lands on phase r, q positions later
    phases = []
    for r in range(s):
      phase = 0.0
      for q in range(shifts + 1):
        if s * q + r < k:
          phase = phase + jnp.pad(taps[:, :, s * q + r], ((0, 0), (q, shifts - q), (0, 0)))
      phases.append(phase)
    full = jnp.stack(phases, axis=2).reshape(x.shape[0], (length + shifts) * s, self.features)
    return full[:, p:(length - 1) * s + k - p] + b[None, None, :]


def conv_transpose1d(x: Array, features: int, kernel: int, *, stride: int = 1,
                     padding: int = 0, name: str | None = None) -> Array:
  """``ConvTranspose1d`` as a child of the calling compact method."""
  return ConvTranspose1d(features, kernel, stride, padding, name=name)(x)


class ResidualStack(nn.Module):
  """TOTEM's residual stack: ``blocks`` residual blocks, then a ReLU.

  Block: h = relu(x); out = skip + Conv_k1(relu(Conv_k3(h))), both convs without bias, where
  skip = h with ``faithful_relu`` (TOTEM's in-place ReLU) and x otherwise.
  """
  hidden: int
  res_hidden: int
  blocks: int
  faithful_relu: bool = True

  @nn.compact
  def __call__(self, x: Array) -> Array:
    for i in range(self.blocks):
      h = nn.relu(x)
      f = conv1d(h, self.res_hidden, 3, padding=1, use_bias=False, name=f"block_{i}_conv_0")
      f = conv1d(nn.relu(f), self.hidden, 1, use_bias=False, name=f"block_{i}_conv_1")
      x = (h if self.faithful_relu else x) + f
    return nn.relu(x)


def _stride_channels(hidden: int, layers: int) -> list[int]:
  """Channels after each stride-2 encoder layer: hidden/2 first (when there are >= 2), then
  hidden (TOTEM's compression 4: 1 -> 64 -> 128; compression 8 adds 128 -> 128)."""
  return [hidden // 2 if i == 0 and layers >= 2 else hidden for i in range(layers)]


class TotemEncoder(nn.Module):
  """(B, T, C) normalised series and (B, T) mask -> latents (B, C, T/c, d), latent mask
  (B, C, T/c). Each channel of each series goes through the conv stack on its own."""
  hidden: int = 128
  res_hidden: int = 64
  residual_blocks: int = 2
  latent_dim: int = 64
  compression: int = 4
  faithful_relu: bool = True

  @nn.compact
  def __call__(self, x: Array, mask: Array, *, train: bool = False) -> tuple[Array, Array]:
    del train  # no dropout or normalisation layers
    b, t, c = x.shape
    layers = int(math.log2(self.compression))
    h = jnp.swapaxes(x, 1, 2).reshape(b * c, t, 1)  # channel independence: (B*C, T, 1)
    for i, features in enumerate(_stride_channels(self.hidden, layers)):
      h = nn.relu(conv1d(h, features, 4, stride=2, padding=1, name=f"down_{i}"))
    h = conv1d(h, self.hidden, 3, padding=1, name="conv")
    h = ResidualStack(self.hidden, self.res_hidden, self.residual_blocks, self.faithful_relu,
                      name="residual")(h)
    h = conv1d(h, self.latent_dim, 1, name="project")
    tokens = t // self.compression
    latents = h.reshape(b, c, tokens, self.latent_dim)
    # A token is real when its block of `compression` samples holds a real sample.
    token_mask = jnp.max(mask.astype(F32).reshape(b, tokens, self.compression), axis=-1)
    latent_mask = jnp.broadcast_to(token_mask[:, None, :], (b, c, tokens))
    return latents, latent_mask


class TotemDecoder(nn.Module):
  """Quantized latents (B, C, T', d) -> normalised series (B, T' * c, C)."""
  hidden: int = 128
  res_hidden: int = 64
  residual_blocks: int = 2
  compression: int = 4
  faithful_relu: bool = True

  @nn.compact
  def __call__(self, z: Array, *, train: bool = False) -> Array:
    del train
    b, c, tokens, d = z.shape
    layers = int(math.log2(self.compression))
    h = z.reshape(b * c, tokens, d)
    h = conv1d(h, self.hidden, 3, padding=1, name="conv")
    h = ResidualStack(self.hidden, self.res_hidden, self.residual_blocks, self.faithful_relu,
                      name="residual")(h)
    # Mirror of the encoder: (... hidden, hidden/2, 1) out of the stride-2 layers.
    channels = _stride_channels(self.hidden, layers)[::-1][1:] + [1]
    for i, features in enumerate(channels):
      h = conv_transpose1d(h, features, 4, stride=2, padding=1, name=f"up_{i}")
      if i < layers - 1:
        h = nn.relu(h)
    t = tokens * self.compression
    return jnp.swapaxes(h.reshape(b, c, t), 1, 2)


# ----------------------------------------------------------------------------------------------
# The factory behind models.get("totem", ...).
# ----------------------------------------------------------------------------------------------

def _positive_int(name: str, value, minimum: int = 1) -> int:
  if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
    raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
  return value


def totem(quantizer: Quantizer, *, hidden: int = 128, res_hidden: int = 64,
          residual_blocks: int = 2, latent_dim: int = 64, compression: int = 4,
          faithful_relu: bool = True, revin: bool = True, eps: float = 1e-5) -> Autoencoder:
  """TOTEM's tokenizer around any quantizer (REFERENCE.md §8).

  Args:
    quantizer: any registered quantizer; it quantizes latent_dim-dimensional tokens.
    hidden: channels of the main conv path (even: the first stride layer has hidden / 2).
    res_hidden: channels inside the residual blocks.
    residual_blocks: residual blocks in the encoder and in the decoder.
    latent_dim: token dimension d given to the quantizer.
    compression: samples per token, a power of two >= 2: log2(compression) stride-2 convs.
    faithful_relu: reproduce TOTEM's in-place ReLU, relu(x) + F(relu(x)) per residual block
      (default); False gives x + F(relu(x)).
    revin: RevIN per series and channel (TOTEM); False only zeroes padding (for data that is
      normalised upstream).
    eps: RevIN's variance epsilon.

  Returns:
    An ``Autoencoder``: x (B, T, C) with mask (B, T) -> codes (B, C, T / compression, S) and a
    reconstruction (B, T, C); T must be a multiple of ``compression``.
  """
  hidden = _positive_int("hidden", hidden, 2)
  if hidden % 2:
    raise ValueError(f"hidden must be even (the first stride layer has hidden / 2 channels), "
                     f"got {hidden}")
  res_hidden = _positive_int("res_hidden", res_hidden)
  residual_blocks = _positive_int("residual_blocks", residual_blocks, 0)
  latent_dim = _positive_int("latent_dim", latent_dim)
  compression = _positive_int("compression", compression, 2)
  if compression & (compression - 1):
    raise ValueError(f"compression must be a power of two >= 2 (one stride-2 conv per "
                     f"factor 2), got {compression}")
  if not isinstance(faithful_relu, bool):
    raise ValueError(f"faithful_relu must be a bool, got {faithful_relu!r}")
  if not isinstance(revin, bool):
    raise ValueError(f"revin must be a bool, got {revin!r}")
  if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps > 0:
    raise ValueError(f"eps must be a number > 0, got {eps!r}")
  eps = float(eps)

  encoder = TotemEncoder(hidden, res_hidden, residual_blocks, latent_dim, compression,
                         faithful_relu)
  decoder = TotemDecoder(hidden, res_hidden, residual_blocks, compression, faithful_relu)

  def normalize(x: Array, mask: Array):
    if revin:
      return revin_normalize(x, mask, eps)
    return jnp.where(mask[..., None] > 0, x.astype(F32), 0.0), None

  return make_autoencoder(encoder, quantizer, decoder, compression=compression,
                          input_ndim=3, normalize=normalize, denormalize=revin_denormalize)
