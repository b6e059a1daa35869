"""Masked reconstruction losses: means over real samples x channels, padding inert."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vqlearn import losses


def _data():
  rng = np.random.default_rng(0)
  target = rng.normal(size=(3, 7, 2)).astype(np.float32)
  prediction = rng.normal(size=(3, 7, 2)).astype(np.float32)
  mask = np.ones((3, 7), np.float32)
  mask[0, 4:] = 0
  mask[2, :] = 0  # an all-padding series counts for nothing
  prediction[mask == 0] = np.nan
  return target, prediction, mask


@pytest.mark.parametrize("name,error", [("masked_mse", np.square), ("masked_mae", np.abs)])
def test_means_over_real_samples_and_channels(name, error):
  fn = getattr(losses, name)
  target, prediction, mask = _data()
  real = mask > 0
  expected = error(target[real] - prediction[real]).mean()  # (n_real, C) -> all entries
  value = fn(jnp.asarray(target), jnp.asarray(prediction), jnp.asarray(mask))
  assert value.dtype == jnp.float32 and value.shape == ()
  np.testing.assert_allclose(value, expected, rtol=1e-6)
  grad = jax.grad(lambda p: fn(jnp.asarray(target), p, jnp.asarray(mask)))(
      jnp.asarray(prediction))
  assert np.isfinite(np.asarray(grad)).all()
  assert (np.asarray(grad)[~real] == 0).all()
  clean = np.nan_to_num(prediction)
  np.testing.assert_allclose(fn(jnp.asarray(target), jnp.asarray(clean)),
                             error(target - clean).mean(), rtol=1e-6)  # mask None: plain mean
  bf16 = fn(jnp.asarray(target, jnp.bfloat16), jnp.asarray(clean, jnp.bfloat16),
            jnp.asarray(mask))
  assert bf16.dtype == jnp.float32


def test_no_real_sample_is_zero_and_shapes_are_checked():
  target = jnp.ones((2, 4, 3))
  assert losses.masked_mse(target, target * 2, jnp.zeros((2, 4))) == 0
  with pytest.raises(ValueError, match="mask"):
    losses.masked_mse(target, target, jnp.ones((2, 3)))
  with pytest.raises(ValueError, match="prediction"):
    losses.masked_mae(target, target[:, :2], jnp.ones((2, 4)))
