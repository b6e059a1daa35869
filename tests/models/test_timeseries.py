"""TOTEM's tokenizer: shapes, parameter count and init, PyTorch layer semantics, RevIN,
channel independence, padding, and the in-place-ReLU quirk."""

import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.models.helpers import (SHAPE, TINY, evaluate, init, padded_batch, series,
                                  tiny_model)
from vqlearn import models, quantizers
from vqlearn.models import timeseries

KEY = jax.random.PRNGKey(0)


# ----------------------------------------------------------------------------------------------
# Shapes, parameter count, initialisation.
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("compression", [2, 4, 8])
def test_shapes(compression):
  """Shapes only, so abstract evaluation (no compilation) is enough."""
  model = tiny_model(compression=compression)
  b, t, c = SHAPE
  x = jax.ShapeDtypeStruct(SHAPE, jnp.float32)
  params, state = jax.eval_shape(model.init, KEY, x)
  assert model.compression == compression
  downs = [k for k in params["encoder"] if k.startswith("down_")]
  ups = [k for k in params["decoder"] if k.startswith("up_")]
  assert len(downs) == len(ups) == int(math.log2(compression))
  out, _ = jax.eval_shape(lambda p, s, x: model.apply(p, s, x, rng=KEY, train=True),
                          params, state, x)
  assert out.quantizer.codes.shape == (b, c, t // compression, 1)
  assert out.quantizer.codes.dtype == jnp.int32
  assert out.quantizer.quantized.shape == (b, c, t // compression, TINY["latent_dim"])
  assert out.latent_mask.shape == (b, c, t // compression)
  assert out.reconstruction.shape == out.target.shape == (b, t, c)
  assert out.reconstruction.dtype == jnp.float32
  assert out.stats.mean.shape == out.stats.std.shape == (b, 1, c)


def _count(tree):
  return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(tree))


def test_parameter_count_matches_totem():
  # Hand count (PyTorch layer sizes, REFERENCE.md §8; residual convs have no bias):
  # encoder 320 + 32,896 + 49,280 + 2 x (24,576 + 8,192) + 8,256 = 156,288
  # decoder 24,704 + 2 x 32,768 + 32,832 + 257 = 123,329; codebook 256 x 64 = 16,384.
  model = models.get("totem", quantizers.get("vq", codebook_size=256))
  params, state = jax.eval_shape(model.init, KEY, jax.ShapeDtypeStruct((4096, 96, 1), jnp.float32))
  assert _count(params["encoder"]) == 156_288
  assert _count(params["decoder"]) == 123_329
  assert _count(params["quantizer"]) == 256 * 64
  assert _count(params) == 296_001
  assert set(params) == {"encoder", "quantizer", "decoder"} and set(state) == {"quantizer"}


def test_init_is_pytorchs_default():
  """kaiming_uniform(a=sqrt(5)): U(+-1/sqrt(fan_in)) for weights and biases, where PyTorch's
  fan_in is in*k for Conv1d and out*k for ConvTranspose1d. Both of our kernel layouts, (k, in,
  out) and (k, out, in), put that fan_in in the first two axes. Every value divided by its
  layer's bound must look like one U(-1, 1) sample."""
  model = tiny_model()
  params, _ = init(model)
  layers = [layer for part in ("encoder", "decoder") for layer in
            jax.tree.leaves(params[part], is_leaf=lambda t: isinstance(t, dict) and "kernel" in t)]
  assert len(layers) == 6 + 5  # encoder: 2 down, conv, 2 residual, project; decoder: 2 up
  scaled = []
  for layer in layers:
    kernel = np.asarray(layer["kernel"])
    bound = 1 / math.sqrt(kernel.shape[0] * kernel.shape[1])
    for w in [kernel] + ([np.asarray(layer["bias"])] if "bias" in layer else []):
      u = w.ravel() / bound
      assert np.abs(u).max() <= 1
      if u.size >= 64:  # a wrong fan_in (e.g. in*k for a transposed conv) shrinks the spread
        assert np.abs(u).max() > 0.9
      scaled.append(u)
  scaled = np.concatenate(scaled)
  assert scaled.size > 800
  np.testing.assert_allclose(scaled.std(), 1 / math.sqrt(3), rtol=0.05)
  np.testing.assert_allclose(scaled.mean(), 0, atol=0.05)
  codebook = np.asarray(params["quantizer"]["codebook"])  # TOTEM's U(-1/K, 1/K), K = 8 here
  assert np.abs(codebook).max() <= 1 / 8 and np.abs(codebook).max() > 0.9 / 8


# ----------------------------------------------------------------------------------------------
# PyTorch layer semantics, against hand-written numpy.
# ----------------------------------------------------------------------------------------------

def _np_conv1d(x, w, b, stride, padding):
  """torch.nn.functional.conv1d on one example: x (in, T), w (out, in, k)."""
  out_ch, _, k = w.shape
  xp = np.pad(x, ((0, 0), (padding, padding)))
  length = (xp.shape[1] - k) // stride + 1
  y = np.zeros((out_ch, length))
  for t in range(length):
    y[:, t] = np.einsum("oij,ij->o", w, xp[:, t * stride:t * stride + k])
  return y + (0 if b is None else b[:, None])


def _np_conv_transpose1d(x, w, b, stride, padding):
  """torch.nn.functional.conv_transpose1d on one example: x (in, T), w (in, out, k):
  every input sample scatters its kernel at stride spacing, then `padding` is cropped."""
  _, out_ch, k = w.shape
  full = np.zeros((out_ch, (x.shape[1] - 1) * stride + k))
  for t in range(x.shape[1]):
    full[:, t * stride:t * stride + k] += np.einsum("i,iok->ok", x[:, t], w)
  return full[:, padding:full.shape[1] - padding] + b[:, None]


class _Layer(nn.Module):
  transpose: bool
  features: int
  kernel: int
  stride: int
  padding: int

  @nn.compact
  def __call__(self, x):
    if self.transpose:
      return timeseries.conv_transpose1d(x, self.features, self.kernel, stride=self.stride,
                                         padding=self.padding, name="layer")
    return timeseries.conv1d(x, self.features, self.kernel, stride=self.stride,
                             padding=self.padding, name="layer")


@pytest.mark.parametrize("transpose,kernel,stride,padding", [
    (False, 4, 2, 1), (False, 3, 1, 1), (True, 4, 2, 1), (True, 5, 3, 1)])
def test_conv_layers_match_pytorch_definitions(transpose, kernel, stride, padding):
  rng = np.random.default_rng(0)
  t, c_in, c_out = 8, 3, 2
  x = rng.normal(size=(2, t, c_in)).astype(np.float32)
  layer = _Layer(transpose, c_out, kernel, stride, padding)
  variables = layer.init(KEY, x)
  y = np.asarray(layer.apply(variables, x))
  k_flax = np.asarray(variables["params"]["layer"]["kernel"], np.float64)
  b = np.asarray(variables["params"]["layer"]["bias"], np.float64)
  w_torch = k_flax.transpose(2, 1, 0)  # both layouts: torch weight = kernel.transpose(2, 1, 0)
  reference = _np_conv_transpose1d if transpose else _np_conv1d
  for i in range(2):
    expected = reference(x[i].T.astype(np.float64), w_torch, b, stride, padding).T
    assert y[i].shape == expected.shape
    np.testing.assert_allclose(y[i], expected, atol=1e-5, rtol=1e-5)
  if (transpose, kernel, stride, padding) == (True, 4, 2, 1):
    assert y.shape[1] == 2 * t  # TOTEM's decoder doubles the length exactly


def test_residual_stack_faithful_relu_matches_numpy():
  rng = np.random.default_rng(1)
  x = rng.normal(size=(2, 6, 5)).astype(np.float32)
  relu = lambda v: np.maximum(v, 0.0)
  outs = {}
  for faithful in (True, False):
    stack = timeseries.ResidualStack(hidden=5, res_hidden=3, blocks=1, faithful_relu=faithful)
    variables = stack.init(KEY, x)
    p = variables["params"]
    assert set(p["block_0_conv_0"]) == set(p["block_0_conv_1"]) == {"kernel"}  # no biases
    w0 = np.asarray(p["block_0_conv_0"]["kernel"], np.float64).transpose(2, 1, 0)
    w1 = np.asarray(p["block_0_conv_1"]["kernel"], np.float64).transpose(2, 1, 0)
    outs[faithful] = out = np.asarray(stack.apply(variables, x))
    for i in range(2):
      xi = x[i].T.astype(np.float64)
      f = _np_conv1d(relu(_np_conv1d(relu(xi), w0, None, 1, 1)), w1, None, 1, 0)
      skip = relu(xi) if faithful else xi  # TOTEM's in-place ReLU overwrites the skip input
      np.testing.assert_allclose(out[i].T, relu(skip + f), atol=1e-5, rtol=1e-5)
  assert np.abs(outs[True] - outs[False]).max() > 1e-3


def test_faithful_relu_changes_the_model_output():
  x = jnp.asarray(series())
  recons = []
  for faithful in (True, False):
    model = tiny_model(faithful_relu=faithful)
    params, state = init(model)  # same key: same parameters
    recons.append(np.asarray(evaluate(model, params, state, x).reconstruction))
  assert np.abs(recons[0] - recons[1]).max() > 1e-4


def test_matches_a_pytorch_totem_with_ported_weights():
  """A PyTorch build of REFERENCE.md §8 (in-place ReLUs and all), given our weights, computes
  the same latents and reconstructions as faithful_relu=True (and not as False)."""
  torch = pytest.importorskip("torch")
  tnn = torch.nn
  hidden, res_hidden, latent, blocks = (TINY[k] for k in ("hidden", "res_hidden", "latent_dim",
                                                         "residual_blocks"))

  class Residual(tnn.Module):
    def __init__(self):
      super().__init__()
      self.block = tnn.Sequential(tnn.ReLU(inplace=True),
                                  tnn.Conv1d(hidden, res_hidden, 3, padding=1, bias=False),
                                  tnn.ReLU(inplace=True),
                                  tnn.Conv1d(res_hidden, hidden, 1, bias=False))

    def forward(self, x):
      return x + self.block(x)  # the in-place ReLU has already overwritten x here

  def stack():
    return [Residual() for _ in range(blocks)] + [tnn.ReLU()]

  encoder = tnn.Sequential(tnn.Conv1d(1, hidden // 2, 4, 2, 1), tnn.ReLU(),
                           tnn.Conv1d(hidden // 2, hidden, 4, 2, 1), tnn.ReLU(),
                           tnn.Conv1d(hidden, hidden, 3, 1, 1), *stack(),
                           tnn.Conv1d(hidden, latent, 1)).double()
  decoder = tnn.Sequential(tnn.Conv1d(latent, hidden, 3, 1, 1), *stack(),
                           tnn.ConvTranspose1d(hidden, hidden // 2, 4, 2, 1), tnn.ReLU(),
                           tnn.ConvTranspose1d(hidden // 2, 1, 4, 2, 1)).double()

  def port(torch_seq, ours, names):
    convs = [m for m in torch_seq.modules() if isinstance(m, (tnn.Conv1d, tnn.ConvTranspose1d))]
    assert len(convs) == len(names)
    with torch.no_grad():
      for m, name in zip(convs, names):
        layer = ours["residual"][name] if name.startswith("block") else ours[name]
        m.weight.copy_(torch.from_numpy(np.asarray(layer["kernel"], np.float64).transpose(2, 1, 0)))
        if m.bias is not None:
          m.bias.copy_(torch.from_numpy(np.asarray(layer["bias"], np.float64)))

  res_names = [f"block_{i}_conv_{j}" for i in range(blocks) for j in range(2)]
  b, t, c = SHAPE
  x = jnp.asarray(series())
  for faithful in (True, False):
    model = tiny_model(faithful_relu=faithful)
    params, state = init(model)
    port(encoder, params["encoder"], ["down_0", "down_1", "conv"] + res_names + ["project"])
    port(decoder, params["decoder"], ["conv"] + res_names + ["up_0", "up_1"])
    out = evaluate(model, params, state, x)
    target = np.asarray(out.target, np.float64)  # (B, T, C) -> (B*C, 1, T)
    with torch.no_grad():
      z = encoder(torch.from_numpy(target.transpose(0, 2, 1).reshape(b * c, 1, t))).numpy()
      quantized = np.asarray(out.quantizer.quantized, np.float64)  # (B, C, T', d)
      y = decoder(torch.from_numpy(quantized.reshape(b * c, -1, latent).transpose(0, 2, 1)))
    y = y.numpy().reshape(b, c, t).transpose(0, 2, 1)
    latents, _ = model_encoder(params, out.target, faithful_relu=faithful)
    ours_z = np.asarray(latents).reshape(b * c, -1, latent).transpose(0, 2, 1)
    close = lambda u, v: np.allclose(u, v, atol=1e-4, rtol=1e-4)
    assert close(ours_z, z) == faithful
    assert close(np.asarray(out.reconstruction), y) == faithful


@functools.lru_cache(maxsize=None)
def _encoder_apply(faithful_relu):
  return jax.jit(timeseries.TotemEncoder(**TINY, faithful_relu=faithful_relu).apply)


def model_encoder(params, target, mask=None, faithful_relu=True):
  """The tiny model's encoder alone: latents before quantization, and the latent mask."""
  mask = jnp.ones(target.shape[:-1]) if mask is None else mask
  return _encoder_apply(faithful_relu)({"params": params["encoder"]}, target, mask)


# ----------------------------------------------------------------------------------------------
# RevIN and channel independence.
# ----------------------------------------------------------------------------------------------

def test_revin_statistics_over_real_samples_only():
  b, t, c = 3, 16, 2
  x = series((b, t, c))
  mask = np.ones((b, t), np.float32)
  mask[1, 11:] = 0
  mask[2, :3] = 0
  x[mask == 0] = np.nan  # padding may hold anything
  target, stats = timeseries.revin_normalize(jnp.asarray(x), jnp.asarray(mask))
  target = np.asarray(target)
  assert np.isfinite(target).all() and (target[mask == 0] == 0).all()
  for i in range(b):
    real = x[i][mask[i] > 0]  # (n, C)
    np.testing.assert_allclose(stats.mean[i, 0], real.mean(0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(stats.std[i, 0], np.sqrt(real.var(0) + 1e-5), rtol=1e-5)
    normalised = target[i][mask[i] > 0]
    np.testing.assert_allclose(normalised.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(normalised.std(0), 1, atol=1e-4)  # var / (var + eps), var >> eps
    back = np.asarray(timeseries.revin_denormalize(jnp.asarray(target), stats))[i]
    np.testing.assert_allclose(back[mask[i] > 0], real, rtol=1e-5, atol=1e-4)


def test_model_target_and_denormalize():
  model = tiny_model()
  x = series()
  params, state = init(model)
  out = evaluate(model, params, state, jnp.asarray(x))
  np.testing.assert_allclose(np.asarray(out.target).mean(1), 0, atol=1e-5)
  np.testing.assert_allclose(model.denormalize(out.target, out.stats), x, rtol=1e-5, atol=1e-4)
  without = tiny_model(revin=False)
  out = evaluate(without, params, state, jnp.asarray(x))
  assert out.stats is None
  np.testing.assert_array_equal(out.target, x)


def test_channel_independence():
  model = tiny_model()
  x = series()
  params, state = init(model)
  out = evaluate(model, params, state, jnp.asarray(x))
  swapped = evaluate(model, params, state, jnp.asarray(x[..., ::-1]))
  np.testing.assert_array_equal(swapped.quantizer.codes, np.asarray(out.quantizer.codes)[:, ::-1])
  np.testing.assert_allclose(swapped.reconstruction, np.asarray(out.reconstruction)[..., ::-1],
                             atol=1e-6)
  other = x.copy()
  other[..., 1] = 100 * series(seed=7)[..., 1]  # change one channel only
  changed = evaluate(model, params, state, jnp.asarray(other))
  np.testing.assert_array_equal(changed.quantizer.codes[:, 0], out.quantizer.codes[:, 0])
  np.testing.assert_allclose(changed.reconstruction[..., 0], out.reconstruction[..., 0],
                             atol=1e-6)
  assert np.abs(np.asarray(changed.reconstruction[..., 1] - out.reconstruction[..., 1])).max() > 0


# ----------------------------------------------------------------------------------------------
# Padding.
# ----------------------------------------------------------------------------------------------

def test_padding_values_never_matter():
  """Garbage (NaN, huge) under mask 0 gives bit-for-bit the outputs of zeros there: losses,
  metrics, codes, reconstructions and the trained state."""
  model = tiny_model("ema_vq")  # EMA statistics would show any leak into the state
  x0, mask = padded_batch(0.0)
  params, state = init(model)
  step = jax.jit(lambda p, s, x, m: model.apply(p, s, x, mask=m, rng=KEY, train=True))
  reference, ref_state = step(params, state, x0, mask)
  for fill in (np.nan, 1e30):
    x, _ = padded_batch(fill)
    out, new_state = step(params, state, x, mask)
    for a, b in zip(jax.tree.leaves((out, new_state)), jax.tree.leaves((reference, ref_state))):
      np.testing.assert_array_equal(a, b)
  assert np.isfinite(np.asarray(reference.reconstruction)).all()


def test_latent_mask_and_quantizer_statistics_exclude_padding():
  model = tiny_model()
  x, mask = padded_batch(np.nan)
  params, state = init(model)
  out = evaluate(model, params, state, jnp.asarray(x), jnp.asarray(mask))
  expected = np.ones((2, 2, 4), np.float32)  # (B, C, T')
  expected[1, :, 3] = 0  # samples 12..15 are all padding; token 2 still has samples 8 and 9
  np.testing.assert_array_equal(out.latent_mask, expected)
  codes = np.asarray(out.quantizer.codes)[..., 0]
  assert ((codes == -1) == (expected == 0)).all()
  assert (np.asarray(out.quantizer.quantized)[expected == 0] == 0).all()
  # The model's quantizer metrics equal the quantizer's on the real latents alone.
  latents, _ = model_encoder(params, out.target, jnp.asarray(mask))
  real = np.asarray(latents)[expected > 0][None]
  direct, _ = jax.jit(model.quantizer.apply)(params["quantizer"], state["quantizer"],
                                             jnp.asarray(real))
  for key in ("perplexity", "usage", "quantization_error"):
    np.testing.assert_allclose(out.quantizer.metrics[key], direct.metrics[key], rtol=1e-5)
  for key in direct.losses:
    np.testing.assert_allclose(out.quantizer.losses[key], direct.losses[key], rtol=1e-5)


def test_appended_padding_leaves_early_tokens_unchanged():
  """A series alone vs the same series with garbage padding appended: same RevIN statistics,
  and the same codes and reconstruction wherever the receptive field stays inside the real
  samples. Tiny model (1 residual block): token j reads samples up to 4j + 6 through the two
  stride-2 convs, plus 1 token each for the k3 conv and the residual block, i.e. up to
  4j + 14 < 32 for j <= 4; decoder samples 0..7 read tokens <= 1 + 3 = 4 (k3 conv, block,
  and the two transposed convs' overlap)."""
  model = tiny_model()
  t_real, t_pad = 32, 48
  x = series((1, t_real, 2))
  padded = np.concatenate([x, np.full((1, t_pad - t_real, 2), np.nan, np.float32)], axis=1)
  mask = np.zeros((1, t_pad), np.float32)
  mask[:, :t_real] = 1
  params, state = init(model)  # the parameters do not depend on T
  alone = evaluate(model, params, state, jnp.asarray(x))
  with_pad = evaluate(model, params, state, jnp.asarray(padded), jnp.asarray(mask))
  np.testing.assert_allclose(with_pad.stats.mean, alone.stats.mean, rtol=1e-6)
  np.testing.assert_allclose(with_pad.stats.std, alone.stats.std, rtol=1e-6)
  np.testing.assert_allclose(with_pad.target[:, :t_real], alone.target, rtol=1e-6)
  latents_alone, _ = model_encoder(params, alone.target)
  latents_pad, _ = model_encoder(params, with_pad.target, jnp.asarray(mask))
  np.testing.assert_allclose(latents_pad[:, :, :5], latents_alone[:, :, :5], atol=1e-5)
  # The last real token does see the padding (as zeros), which is why the bound above matters.
  assert np.abs(np.asarray(latents_pad[:, :, 7] - latents_alone[:, :, 7])).max() > 1e-4
  np.testing.assert_array_equal(with_pad.quantizer.codes[:, :, :5],
                                alone.quantizer.codes[:, :, :5])
  np.testing.assert_allclose(with_pad.reconstruction[:, :8], alone.reconstruction[:, :8],
                             atol=1e-5)
  assert (np.asarray(with_pad.quantizer.codes)[:, :, t_real // 4:] == -1).all()
