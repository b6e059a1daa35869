"""The quantizer configurations every registry-wide test runs: each registered name with small
sizes, plus the options that change code paths (k-means init, revival, cosine, rotation,
global weights, shared codebooks) and both combinators over several families."""

import jax
import jax.numpy as jnp

from vqlearn import quantizers

CASES = {
    "vq": ("vq", dict(codebook_size=16)),
    "vq_cosine_rotation": ("vq", dict(codebook_size=16, cosine=True, estimator="rotation")),
    "vq_kmeans_revive": ("vq", dict(codebook_size=16, kmeans_init=True, revive_dead=True,
                                    usage_window=2)),
    "ema_vq": ("ema_vq", dict(codebook_size=16)),
    "ema_vq_kmeans_revive": ("ema_vq", dict(codebook_size=16, kmeans_init=True,
                                            revive_dead=True, dead_threshold=0.5)),
    "kmeans": ("kmeans", dict(codebook_size=16)),
    "kmeans_shared": ("kmeans", dict(codebook_size=16, shared_codebook=True)),
    "online_kmeans": ("online_kmeans", dict(codebook_size=16)),
    "gumbel": ("gumbel", dict(codebook_size=16)),
    "gumbel_mlp_shared": ("gumbel", dict(codebook_size=16, logit_depth=2,
                                         shared_codebook=True)),
    "wasserstein": ("wasserstein", dict(codebook_size=16)),
    "wasserstein_global": ("wasserstein", dict(codebook_size=16, weights="global")),
    "binary": ("binary", dict(num_bits=6)),
    "residual": ("residual", dict(base="vq", levels=3, codebook_size=8)),
    "residual_ema_kmeans": ("residual", dict(base="ema_vq", levels=2, codebook_size=8,
                                             kmeans_init=True)),
    "residual_gumbel": ("residual", dict(base="gumbel", levels=2, codebook_size=8)),
    "product": ("product", dict(base="vq", groups=2, codebook_size=8)),
    "product_binary": ("product", dict(base="binary", groups=2, num_bits=3)),
}

REQUIRED_METRICS = ("perplexity", "usage", "dead_codes", "quantization_error")


def make(case: str, **extra) -> quantizers.Quantizer:
  name, kwargs = CASES[case]
  return quantizers.get(name, **kwargs, **extra)


def batch(shape=(4, 6, 8), seed=0, pad_from=4):
  """Real-valued inputs and a mask whose time steps from ``pad_from`` on are padding for the
  odd examples (so every shard of a batch split on axis 0 has both real and padded rows)."""
  x = jax.random.normal(jax.random.PRNGKey(seed), shape, jnp.float32)
  mask = jnp.ones(shape[:-1], jnp.float32)
  mask = mask.at[1::2, pad_from:].set(0.0)
  return x, mask
