"""Speech tokenizers: a waveform tokenizer (vq-wav2vec style) and a frame-feature tokenizer.

Waveform path (``models.get("speech_waveform", q)``), after vq-wav2vec (Baevski et al. 2020) and
wav2vec 2.0's feature encoder:

  normalise: per utterance, zero mean and unit variance over the real samples (wav2vec 2.0's
             ``normalize=True``); SNR and log-mel are measured after undoing it
  encoder:   Conv1d(kernel_i, stride_i) -> LayerNorm over channels -> GELU, per layer, then a
             1x1 projection to ``latent_dim``; hop = prod(strides) samples per token
             (vq-wav2vec: kernels 10,8,4,4,4, strides 5,4,2,2,2 = 160 = 10 ms at 16 kHz;
             wav2vec 2.0: 10,3,3,3,3,2,2 / 5,2,2,2,2,2,2 = 320 = 20 ms)
  decoder:   1x1 projection to ``channels``, then per stride s (reversed) an s-fold
             transposed conv (written as a sub-pixel conv, see ``upsample``) -> LayerNorm ->
             GELU; the last one (the encoder's first stride) outputs the waveform
  loss:      L1 on the waveform + multi-resolution STFT (``vqlearn.losses``)

Frame path (``models.get("speech_frames", q)``): precomputed features such as MFCCs or SSL
features, normalised per utterance (CMVN: mean and variance per feature over the real frames),
encoded by ``depth`` Conv1d(3) + LayerNorm + GELU layers (the first with stride ``hop``) and a
1x1 projection; the decoder mirrors it (upsampling when hop > 1) back to the features.

Padding: each conv layer's output is zeroed at frames with no real sample, and every conv's
output length is exactly input / stride (the "same"-style padding (k - s) // 2 on the left,
the rest on the right). So a clip padded at the end gives the same latents, hence the same
codes, on its real frames as the clip alone, as long as its length is a multiple of the hop.
"""

from __future__ import annotations

import math
from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from vqlearn.models.autoencoder import Autoencoder, make_autoencoder
from vqlearn.models.timeseries import conv1d, revin_denormalize, revin_normalize
from vqlearn.quantizers.base import Quantizer
from vqlearn.types import Array

F32 = jnp.float32
VQ_WAV2VEC_KERNELS, VQ_WAV2VEC_STRIDES = (10, 8, 4, 4, 4), (5, 4, 2, 2, 2)  # 160 = 10 ms
WAV2VEC2_KERNELS, WAV2VEC2_STRIDES = (10, 3, 3, 3, 3, 2, 2), (5, 2, 2, 2, 2, 2, 2)  # 20 ms


class WaveformAutoencoder(Autoencoder):
  """An ``Autoencoder`` over waveforms (B, T, 1): the speech task gives it the waveform loss."""
  __slots__ = ()


def downsample_mask(mask: Array, stride: int) -> Array:
  """(B, T) -> (B, T / stride): a frame is real when its block of ``stride`` holds a real one."""
  b, t = mask.shape
  return jnp.max(mask.reshape(b, t // stride, stride), axis=-1)


def strided_conv(x: Array, features: int, kernel: int, stride: int, name: str) -> Array:
  """Conv1d whose output length is exactly len(x) / stride ("same"-style padding: (k - s) // 2
  zeros on the left, the rest on the right), as a child of the calling compact method."""
  left = (kernel - stride) // 2
  x = jnp.pad(x, ((0, 0), (left, kernel - stride - left), (0, 0)))
  return conv1d(x, features, kernel, stride=stride, name=name)


def _norm_act(x: Array, mask: Array, name: str) -> Array:
  """LayerNorm over channels (per frame, so padding cannot leak in), GELU, padding zeroed."""
  x = nn.gelu(nn.LayerNorm(name=name)(x), approximate=False)
  return jnp.where(mask[..., None] > 0, x, 0.0)


class ConvEncoder(nn.Module):
  """(B, T, C) normalised input and (B, T) mask -> latents (B, T / hop, d) and their mask."""
  channels: int
  kernels: Sequence[int]
  strides: Sequence[int]
  latent_dim: int

  @nn.compact
  def __call__(self, x: Array, mask: Array, *, train: bool = False) -> tuple[Array, Array]:
    del train
    h, m = x, mask.astype(F32)
    for i, (kernel, stride) in enumerate(zip(self.kernels, self.strides)):
      m = downsample_mask(m, stride)
      h = _norm_act(strided_conv(h, self.channels, kernel, stride, f"conv_{i}"), m, f"norm_{i}")
    z = conv1d(h, self.latent_dim, 1, name="project")
    return jnp.where(m[..., None] > 0, z, 0.0), m


def upsample(x: Array, features: int, stride: int, name: str) -> Array:
  """(N, T, C) -> (N, T * stride, features) by a sub-pixel convolution (Shi et al. 2016): a
  kernel-3 conv to stride * features channels, each frame's channels laid out as ``stride``
  consecutive outputs. It is a transposed conv (kernel 3 stride, stride ``stride``, padding
  ``stride``) with its weights re-indexed, written with a stride-1 conv because XLA:CPU's
  gradient of ``lax.conv_transpose`` is pathologically slow (see ``timeseries.ConvTranspose1d``;
  even that per-tap form took 1.4 s per step for a 64-channel stride-5 layer at 16 kHz)."""
  y = conv1d(x, features * stride, 3, padding=1, name=name)
  return y.reshape(x.shape[0], x.shape[1] * stride, features)


class ConvDecoder(nn.Module):
  """Quantized latents (B, T', d) -> (B, T' * hop, out_features): the encoder's layers in
  reverse, each upsampling by its stride (``upsample``) or, for stride 1, a kernel-3 conv,
  then LayerNorm and GELU; the last layer (the encoder's first) maps straight to the output,
  so no full-rate tensor with ``channels`` channels is ever formed."""
  channels: int
  strides: Sequence[int]
  out_features: int

  @nn.compact
  def __call__(self, z: Array, *, train: bool = False) -> Array:
    del train
    h = conv1d(z, self.channels, 1, name="project")
    reverse = list(self.strides[::-1])
    for i, stride in enumerate(reverse[:-1]):
      h = upsample(h, self.channels, stride, f"up_{i}")
      h = nn.gelu(nn.LayerNorm(name=f"norm_{i}")(h), approximate=False)
    return upsample(h, self.out_features, reverse[-1], "out")


def _positive_ints(name: str, values, minimum: int = 1) -> tuple[int, ...]:
  values = tuple(values) if isinstance(values, (list, tuple)) else (values,)
  if not values or any(isinstance(v, bool) or not isinstance(v, int) or v < minimum
                       for v in values):
    raise ValueError(f"{name} must be integers >= {minimum} (a non-empty tuple), got {values!r}")
  return values


def speech_waveform(quantizer: Quantizer, *, channels: int = 64,
                    kernels: Sequence[int] = WAV2VEC2_KERNELS,
                    strides: Sequence[int] = WAV2VEC2_STRIDES,
                    latent_dim: int = 64) -> WaveformAutoencoder:
  """The waveform tokenizer (module docstring) around any quantizer.

  Args:
    quantizer: any registered quantizer; it quantizes latent_dim-dimensional frames.
    channels: conv channels (512 in vq-wav2vec; 64 keeps a CPU run small).
    kernels, strides: one per encoder layer; hop = prod(strides) samples per token
      (``VQ_WAV2VEC_*`` for 10 ms, ``WAV2VEC2_*`` for 20 ms at 16 kHz).
    latent_dim: token dimension d given to the quantizer.

  Returns:
    A ``WaveformAutoencoder``: x (B, T, 1) with mask (B, T), T a multiple of the hop ->
    codes (B, T / hop, S) and a reconstruction (B, T, 1) of the normalised waveform.
  """
  (channels,), (latent_dim,) = _positive_ints("channels", channels), _positive_ints(
      "latent_dim", latent_dim)
  kernels, strides = _positive_ints("kernels", kernels), _positive_ints("strides", strides)
  if len(kernels) != len(strides) or any(k < s for k, s in zip(kernels, strides)):
    raise ValueError(f"kernels {kernels} and strides {strides} must pair up, each kernel >= "
                     f"its stride")
  encoder = ConvEncoder(channels, kernels, strides, latent_dim)
  decoder = ConvDecoder(channels, strides, 1)
  model = make_autoencoder(encoder, quantizer, decoder, compression=math.prod(strides),
                           input_ndim=3, normalize=revin_normalize,
                           denormalize=revin_denormalize)
  return WaveformAutoencoder(*model)


def speech_frames(quantizer: Quantizer, *, features: int = 13, channels: int = 128,
                  depth: int = 2, hop: int = 1, latent_dim: int = 64) -> Autoencoder:
  """The frame-feature tokenizer (module docstring) around any quantizer.

  Args:
    quantizer: any registered quantizer.
    features: F, the size of each input frame (13 for FSDD's MFCCs); the decoder's output.
    channels: conv channels.
    depth: conv layers in the encoder (and the decoder).
    hop: input frames per token (the first encoder layer's stride).
    latent_dim: token dimension d.

  Returns:
    An ``Autoencoder``: features (B, T, F) with mask (B, T), T a multiple of ``hop`` -> codes
    (B, T / hop, S) and a reconstruction (B, T, F) of the CMVN-normalised features.
  """
  (features,), (channels,), (depth,), (hop,), (latent_dim,) = (
      _positive_ints("features", features), _positive_ints("channels", channels),
      _positive_ints("depth", depth), _positive_ints("hop", hop),
      _positive_ints("latent_dim", latent_dim))
  kernels = (max(3, hop),) + (3,) * (depth - 1)
  strides = (hop,) + (1,) * (depth - 1)
  encoder = ConvEncoder(channels, kernels, strides, latent_dim)
  decoder = ConvDecoder(channels, strides, features)
  model = make_autoencoder(encoder, quantizer, decoder, compression=hop, input_ndim=3,
                           normalize=revin_normalize, denormalize=revin_denormalize)
  init = model.init

  def checked_init(rng, x_spec):
    if tuple(x_spec.shape)[-1:] != (features,):
      raise ValueError(f"speech_frames was built for {features} features per frame "
                       f"(config.model.features) but the input has shape {tuple(x_spec.shape)}")
    return init(rng, x_spec)

  return model._replace(init=checked_init)
