"""Speech tokenizers: padding never changes the codes of real frames, the conv layers compute
what they claim, shapes follow the hop, and the waveform losses match hand-derived values."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vqlearn import losses, models, quantizers
from vqlearn.models import speech

WAVE = dict(channels=8, kernels=(10, 3, 2), strides=(5, 2, 2), latent_dim=8)  # hop 20


def padded_pair(rng, length, pad, features):
  x = rng.normal(size=(2, length, features)).astype(np.float32)
  garbage = 100 * rng.normal(size=(2, pad, features)).astype(np.float32)  # must not matter
  mask = np.concatenate([np.ones((2, length)), np.zeros((2, pad))], 1).astype(np.float32)
  return x, np.concatenate([x, garbage], 1), mask


@pytest.mark.parametrize("model_name,family,options", [
    ("speech_waveform", "vq", dict(codebook_size=16)),
    ("speech_waveform", "gumbel", dict(codebook_size=16, num_groups=2)),
    # k-means' GroupNorm takes statistics over each example's real frames.
    ("speech_frames", "kmeans", dict(codebook_size=16, num_groups=2)),
])
def test_padding_gives_the_same_codes_on_real_frames(model_name, family, options):
  quantizer = quantizers.get(family, **options)
  if model_name == "speech_waveform":
    model, features = models.get(model_name, quantizer, **WAVE), 1
  else:
    model, features = models.get(model_name, quantizer, features=5, channels=8, hop=2,
                                 latent_dim=8), 5
  hop = model.compression
  x, padded, mask = padded_pair(np.random.default_rng(0), 6 * hop, 3 * hop, features)
  params, state = model.init(jax.random.PRNGKey(0), jax.ShapeDtypeStruct(x.shape, jnp.float32))
  alone, _ = model.apply(params, state, x)
  with_pad, _ = model.apply(params, state, padded, mask=mask)
  np.testing.assert_array_equal(with_pad.quantizer.codes[:, :6], alone.quantizer.codes)
  assert (with_pad.quantizer.codes[:, 6:] == -1).all()
  np.testing.assert_allclose(with_pad.quantizer.quantized[:, :6], alone.quantizer.quantized,
                             atol=1e-5)


def test_upsample_is_a_transposed_conv():
  """Output frame s*t + r is sum_j x[t + j] W[j, :, r] for j in {-1, 0, 1}: a transposed conv
  of kernel 3s, stride s and padding s."""
  x = np.random.default_rng(2).normal(size=(1, 6, 3)).astype(np.float32)
  module = _Upsample()
  variables = module.init(jax.random.PRNGKey(0), x)
  w = np.asarray(variables["params"]["up"]["kernel"]).reshape(3, 3, 4, 2)  # (k, in, s, F)
  b = np.asarray(variables["params"]["up"]["bias"]).reshape(4, 2)
  got = np.asarray(module.apply(variables, x))
  padded = np.pad(x, ((0, 0), (1, 1), (0, 0)))
  for t in range(6):
    for r in range(4):
      expected = sum(padded[0, t + j] @ w[j, :, r, :] for j in range(3)) + b[r]
      np.testing.assert_allclose(got[0, 4 * t + r], expected, atol=1e-5)


class _Upsample(speech.nn.Module):
  @speech.nn.compact
  def __call__(self, x):
    return speech.upsample(x, 2, 4, "up")


def test_shapes_follow_the_hop_and_bad_options_are_named():
  q = quantizers.get("vq", codebook_size=8)
  model = models.get("speech_waveform", q, **WAVE)
  assert model.compression == 20 and isinstance(model, speech.WaveformAutoencoder)
  default = models.get("speech_waveform", q)
  assert default.compression == math.prod(speech.WAV2VEC2_STRIDES) == 320  # 20 ms at 16 kHz
  assert math.prod(speech.VQ_WAV2VEC_STRIDES) == 160  # 10 ms
  x = jnp.zeros((2, 100, 1))
  params, state = model.init(jax.random.PRNGKey(0), x)
  out, _ = model.apply(params, state, x)
  assert out.reconstruction.shape == x.shape and out.quantizer.codes.shape == (2, 5, 1)
  with pytest.raises(ValueError, match="not a multiple of the model's compression 20"):
    model.init(jax.random.PRNGKey(0), jnp.zeros((1, 90, 1)))
  with pytest.raises(ValueError, match="kernels .* and strides .* must pair up"):
    models.get("speech_waveform", q, kernels=(10, 3), strides=(5, 2, 2))
  frames = models.get("speech_frames", q, features=13)
  with pytest.raises(ValueError, match=r"built for 13 features per frame \(config.model.features\)"):
    frames.init(jax.random.PRNGKey(0), jnp.zeros((1, 10, 20)))


def test_multi_resolution_stft_of_a_scaled_signal_is_hand_derived():
  """prediction = a x gives |S_hat| = a |S| in every bin, so spectral convergence is |1 - a|
  and the log-magnitude term |log a| at every resolution (Yamamoto et al. 2020, eqs. 4-6)."""
  x = jnp.asarray(np.random.default_rng(3).normal(size=(2, 4000)), jnp.float32)
  for a in (0.5, 2.0):
    got = losses.multi_resolution_stft(x, a * x)
    np.testing.assert_allclose(got, abs(1 - a) + abs(math.log(a)), rtol=1e-4)
  assert float(losses.multi_resolution_stft(x, x)) == 0.0


def test_stft_loss_ignores_padding_and_finds_a_tone():
  rng = np.random.default_rng(4)
  x = rng.normal(size=(1, 3000, 1)).astype(np.float32)
  y = x + 0.1 * rng.normal(size=x.shape).astype(np.float32)
  mask = np.concatenate([np.ones((1, 2000)), np.zeros((1, 1000))], 1)
  y_other = y.copy()
  y_other[:, 2000:] = 50.0
  np.testing.assert_allclose(losses.multi_resolution_stft(x, y, mask),
                             losses.multi_resolution_stft(x, y_other, mask), rtol=1e-6)
  tone = np.sin(2 * np.pi * 1000 * np.arange(16000) / 16000)[None].astype(np.float32)
  spectrum = losses.stft_magnitude(jnp.asarray(tone), 512, 128, 512)
  assert int(jnp.argmax(spectrum[0, 20])) == 1000 * 512 // 16000  # bin 32
