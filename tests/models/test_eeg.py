"""The sensor-aware EEG tokenizer: montage invariance, any sensors decoded, channel hiding, the
BrainOmni loss by hand, and the TOTEM-for-EEG preset."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import eeg as eeg_config
from vqlearn import losses, models, quantizers
from vqlearn.data import eeg as eeg_data
from vqlearn.models.eeg import hidden_channels

B, T, C = 2, 32, 6
TINY = dict(dim=16, heads=2, num_sources=3, latent_dim=4, compression=4)


def batch(channels=C, seed=0):
  """Real-looking sensors: the first ``channels`` Emotiv electrodes on the 10-05 montage."""
  rng = np.random.default_rng(seed)
  table = eeg_data.montage_positions("standard_1005")
  names = ("AF3", "F7", "F3", "FC5", "T7", "P7", "O1", "O2")[:channels]
  positions = np.stack([table[n.lower()] for n in names]) / eeg_data.HEAD_RADIUS_M
  signal = np.cumsum(rng.normal(size=(B, T, 8)), axis=1)[..., :channels]  # prefixes agree
  return {"signal": signal.astype(np.float32),
          "positions": np.broadcast_to(positions, (B, channels, 3)).astype(np.float32),
          "channel_type": np.zeros((B, channels), np.int32),
          "channel_mask": np.ones((B, channels), np.float32)}


@functools.lru_cache(maxsize=None)
def tiny(quantizer="vq", **kwargs):
  q = quantizers.get(quantizer, **({"codebook_size": 8} if quantizer != "binary" else {}))
  model = models.get("brain_tokenizer", q, **{**TINY, **kwargs})
  params, state = jax.jit(model.init)(jax.random.PRNGKey(0), batch())
  return model, params, state


@functools.lru_cache(maxsize=None)
def evaluate(model):
  return jax.jit(lambda p, s, b, m: model.apply(p, s, b, input_mask=m)[0])


def run(b, input_mask=None, quantizer="vq"):
  model, params, state = tiny(quantizer)
  mask = b["channel_mask"] if input_mask is None else input_mask
  return evaluate(model)(params, state, b, mask)


def permute(b, order):
  return {k: (v[:, :, order] if k == "signal" else v[:, order]) for k, v in b.items()}


def test_codes_do_not_depend_on_channel_order():
  b = batch()
  order = np.asarray([4, 0, 5, 2, 1, 3])
  out, shuffled = run(b), run(permute(b, order))
  np.testing.assert_array_equal(out.quantizer.codes, shuffled.quantizer.codes)
  np.testing.assert_allclose(shuffled.reconstruction, out.reconstruction[:, :, order],
                             atol=1e-5)


def test_fewer_channels_tokenize_to_the_same_latent_shape_and_padding_is_ignored():
  full, three = run(batch()), run(batch(channels=3))
  assert full.quantizer.codes.shape == three.quantizer.codes.shape == (B, 3, T // 4, 1)
  # The 3-channel montage padded to 6 with masked channels: the same codes, the same signal.
  padded = batch()
  padded["channel_mask"][:, 3:] = 0
  padded["signal"][:, :, 3:] = 1e6  # whatever a padded channel holds never reaches the codes
  out = run(padded)
  np.testing.assert_array_equal(out.quantizer.codes, three.quantizer.codes)
  np.testing.assert_allclose(out.reconstruction[..., :3], three.reconstruction, atol=1e-5)


def test_decoder_reconstructs_any_requested_sensors():
  model, params, state = tiny()
  b = batch()
  out = run(b)
  queries = batch(channels=8)  # two sensors the encoder never saw
  decoded = jax.jit(model.decode)(params, state, out.quantizer.codes, queries["positions"],
                                  queries["channel_type"])
  assert decoded.shape == (B, T, 8)
  np.testing.assert_allclose(decoded[..., :C], out.reconstruction, atol=1e-5)
  assert np.isfinite(decoded).all() and np.abs(decoded[..., C:]).sum() > 0


def test_input_mask_hides_channels_from_the_encoder_only():
  b = batch()
  shown = b["channel_mask"].copy()
  shown[:, :2] = 0
  hidden = run(b, shown)
  changed = dict(b, signal=b["signal"].copy())
  changed["signal"][:, :, :2] *= -3.0  # the hidden channels' signals do not matter
  np.testing.assert_array_equal(run(changed, shown).quantizer.codes, hidden.quantizer.codes)
  assert hidden.reconstruction.shape == (B, T, C)  # every channel is still reconstructed


def test_hidden_channels_follow_brainomni_quarter():
  mask = np.ones((64, 14), np.float32)
  mask[1, 9:] = 0  # 9 real channels
  mask[2, 1:] = 0  # a single real channel is never hidden
  shown = np.asarray(hidden_channels(jnp.asarray(mask), jax.random.PRNGKey(0), 0.25))
  hidden = mask.sum(1) - shown.sum(1)
  assert hidden[0] == 3 and hidden[1] == 2 and hidden[2] == 0  # floor(14/4), floor(9/4)
  assert (shown <= mask).all()  # padding is never "shown"
  assert len({tuple(row) for row in shown[3:]}) > 10  # different channels per example


def test_training_hides_channels_adds_noise_and_needs_an_rng():
  model, params, state = tiny("residual")
  b = batch()
  with pytest.raises(ValueError, match="needs an rng"):
    model.apply(params, state, b, train=True)
  out, new_state = jax.jit(lambda p, s, b, r: model.apply(p, s, b, rng=r, train=True))(
      params, state, b, jax.random.PRNGKey(1))
  assert out.quantizer.codes.shape == (B, 3, T // 4, 4)  # 4 residual levels
  assert jax.tree.structure(new_state) == jax.tree.structure(state)


def test_bad_batches_raise_clear_errors():
  model, params, state = tiny()
  b = batch()
  with pytest.raises(ValueError, match=r"missing \['positions'\]"):
    model.apply(params, state, {k: v for k, v in b.items() if k != "positions"})
  with pytest.raises(ValueError, match=r"batch\['channel_type'\] must have shape \(2, 6\)"):
    model.apply(params, state, dict(b, channel_type=b["channel_type"][:, :3]))
  with pytest.raises(ValueError, match="not a multiple of the compression 4"):
    model.apply(params, state, dict(b, signal=b["signal"][:, :30]))
  with pytest.raises(ValueError, match="heads"):
    models.get("brain_tokenizer", quantizers.get("vq"), dim=10, heads=4)


def test_brainomni_loss_by_hand():
  rng = np.random.default_rng(0)
  t = rng.normal(size=(3, 64, 4)).astype(np.float32)
  loss = jax.jit(losses.brainomni_loss)
  same = loss(t, t)
  np.testing.assert_allclose(float(same["pcc"]), 1.0, atol=1e-5)
  np.testing.assert_allclose(float(same["total"]), np.exp(-1.0), atol=1e-5)
  for key in ("l1", "amplitude", "phase"):
    np.testing.assert_allclose(float(same[key]), 0.0, atol=1e-6)
  # -t: PCC -1, the same amplitudes, every phase off by exactly pi, L1 = mean |2 t|.
  flipped = loss(t, -t)
  l1 = np.mean(np.abs(2 * t))
  np.testing.assert_allclose(float(flipped["pcc"]), -1.0, atol=1e-5)
  np.testing.assert_allclose(float(flipped["amplitude"]), 0.0, atol=1e-6)
  np.testing.assert_allclose(float(flipped["phase"]), np.pi, atol=1e-5)
  np.testing.assert_allclose(float(flipped["total"]), l1 + np.e + 0.5 * np.pi, rtol=1e-5)


def test_brainomni_loss_ignores_padded_channels_and_their_gradients_stay_finite():
  rng = np.random.default_rng(1)
  t = rng.normal(size=(2, 32, 3)).astype(np.float32)
  p = t + 0.3 * rng.normal(size=t.shape).astype(np.float32)
  mask = np.asarray([[1, 1, 0], [1, 1, 0]], np.float32)
  garbage_t, garbage_p = t.copy(), p.copy()
  garbage_t[..., 2], garbage_p[..., 2] = np.nan, 0.0
  value = jax.jit(losses.brainomni_loss)(t[..., :2], p[..., :2])["total"]
  masked, grad = jax.jit(jax.value_and_grad(
      lambda p: losses.brainomni_loss(garbage_t, p, mask)["total"]))(garbage_p)
  np.testing.assert_allclose(float(masked), float(value), rtol=1e-6)
  assert np.isfinite(grad).all() and not np.asarray(grad)[..., 2].any()


def test_totem_for_eeg_preset_is_totems_model():
  config = eeg_config.get_config("model=totem")
  assert (config.model.name, config.quantizer.name, config.quantizer.codebook_size) == (
      "eeg_totem", "vq", 256)
  assert models.MODALITY["eeg_totem"] == "eeg" and models.MODELS["eeg_totem"] is models.totem
  options = config.model.to_dict()
  model = models.get(options.pop("name"), quantizers.get("vq", codebook_size=256), **options)
  params, _ = jax.eval_shape(model.init, jax.random.PRNGKey(0),
                             jax.ShapeDtypeStruct((1, 128, 14), jnp.float32))
  assert sum(x.size for x in jax.tree.leaves(params)) == 296_001  # TOTEM's count
