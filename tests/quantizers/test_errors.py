"""Bad input gets a clear ValueError naming the argument, raised at trace time."""

import functools

import jax
import jax.numpy as jnp
import pytest

from tests.quantizers.cases import CASES, batch, make
from vqlearn import quantizers

STOCHASTIC_IN_TRAINING = ["vq_kmeans_revive", "ema_vq_kmeans_revive", "gumbel", "binary",
                          "residual_gumbel", "residual_ema_kmeans", "product_binary"]


@pytest.mark.parametrize("case", sorted(CASES))
def test_wrong_feature_size(case):
  q = make(case)
  x, mask = batch()
  params, state = q.init(jax.random.PRNGKey(0), x)
  bad = jnp.zeros(x.shape[:-1] + (x.shape[-1] * 2,))
  with pytest.raises(ValueError, match="last"):
    jax.jit(functools.partial(q.apply, train=True))(params, state, bad,
                                                    rng=jax.random.PRNGKey(0))


@pytest.mark.parametrize("case", sorted(CASES))
def test_mask_of_the_wrong_shape(case):
  q = make(case)
  x, mask = batch()
  params, state = q.init(jax.random.PRNGKey(0), x)
  with pytest.raises(ValueError, match="mask"):
    jax.jit(functools.partial(q.apply, train=True))(params, state, x, mask=mask[:, :-1],
                                                    rng=jax.random.PRNGKey(0))


@pytest.mark.parametrize("case", STOCHASTIC_IN_TRAINING)
def test_missing_rng_in_training(case):
  q = make(case)
  x, mask = batch()
  params, state = q.init(jax.random.PRNGKey(0), x)
  with pytest.raises(ValueError, match="rng"):
    jax.jit(functools.partial(q.apply, train=True))(params, state, x, mask=mask)


@pytest.mark.parametrize("name", [n for n in quantizers.names() if n != "binary"])
def test_codebook_size_below_two(name):
  with pytest.raises(ValueError, match="codebook_size"):
    quantizers.get(name, codebook_size=1)


def test_unknown_family_and_option():
  with pytest.raises(ValueError, match="unknown quantizer 'vqq'"):
    quantizers.get("vqq")
  with pytest.raises(ValueError, match="codebok_size"):
    quantizers.get("vq", codebok_size=8)
  with pytest.raises(ValueError, match="codebok_size"):
    quantizers.get("residual", base="ema_vq", codebok_size=8)
  with pytest.raises(ValueError, match="base"):
    quantizers.get("product", base="residual")
  with pytest.raises(ValueError, match="estimator"):
    quantizers.get("vq", estimator="gumbel")


def test_product_groups_must_divide_features():
  q = quantizers.get("product", groups=3)
  with pytest.raises(ValueError, match="groups"):
    q.init(jax.random.PRNGKey(0), jax.ShapeDtypeStruct((4, 8), jnp.float32))
