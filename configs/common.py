"""What every modality's config shares: argument parsing, top-level keys, quantizer presets.

A config file is ``configs/<modality>.py`` with ``get_config(arg)``, where ``arg`` is the text
after the colon in ``--config configs/timeseries.py:quantizer=gumbel,dataset=ArrowHead,smoke``:
comma-separated ``key=value`` pairs and bare flags (big_vision's convention).
"""

from __future__ import annotations

from typing import Any

import ml_collections

# Reference options and loss weights per quantizer family, at the codebook size the modality
# chooses. Weights are the papers' (REFERENCE.md): the quantizer returns UNWEIGHTED terms.
QUANTIZER_PRESETS: dict[str, tuple[dict[str, Any], dict[str, float]]] = {
    "vq": ({}, {"codebook": 1.0, "commitment": 0.25}),  # VQ-VAE / TOTEM
    "ema_vq": ({"decay": 0.99}, {"commitment": 0.25}),  # VQ-VAE-2 / haiku
    "kmeans": ({"num_groups": 1, "projection": False}, {"kmeans": 1.0}),  # vq-wav2vec (γ inside)
    "online_kmeans": ({"decay": 0.9}, {"commitment": 0.25}),  # DinoSR
    "gumbel": ({"num_groups": 1}, {"diversity": 0.1}),  # wav2vec 2.0 diversity weight
    "wasserstein": ({"weights": "global"}, {"ot": 1e-3, "kl": 1.0}),  # VQ-WAE
    "binary": ({}, {}),  # Binary Latent Diffusion: the code loss is off by default
}


def parse_arg(arg: str | None, **defaults: Any) -> ml_collections.ConfigDict:
  """Parses ``"k=v,flag"`` into a ConfigDict typed like ``defaults``.

  Args:
    arg: the text after ``:`` in ``--config file.py:arg``; may be None or empty.
    **defaults: every accepted key with its default; the default's type converts the value
      (a bool default makes the key a flag: ``smoke`` or ``smoke=false``).

  Returns:
    A locked ConfigDict of the defaults updated from ``arg``.

  Raises:
    ValueError: a key not in ``defaults`` or a value that does not convert, naming the key.
  """
  result = ml_collections.ConfigDict(defaults)
  for item in filter(None, (arg or "").split(",")):
    key, has_value, value = item.partition("=")
    key = key.strip()
    if key not in defaults:
      raise ValueError(f"unknown config argument {key!r}; accepted: {sorted(defaults)}")
    default = defaults[key]
    if isinstance(default, bool):
      if has_value and value.lower() not in ("true", "false", "1", "0"):
        raise ValueError(f"config argument {key!r} is a flag: give {key} or {key}=true/false")
      result[key] = (not has_value) or value.lower() in ("true", "1")
    elif not has_value:
      raise ValueError(f"config argument {key!r} needs a value: {key}=...")
    else:
      try:
        result[key] = type(default)(value)
      except ValueError:
        raise ValueError(f"config argument {key!r} expects {type(default).__name__}, "
                         f"got {value!r}") from None
  return result


def quantizer_config(name: str, **options: Any) -> tuple[ml_collections.ConfigDict,
                                                         ml_collections.ConfigDict]:
  """(config.quantizer, config.loss_weights) for a family's preset plus ``options``.

  ``residual`` and ``product`` take the preset of their ``base`` family (default ``vq``).
  """
  family = options.get("base", "vq") if name in ("residual", "product") else name
  if family not in QUANTIZER_PRESETS:
    raise ValueError(f"unknown quantizer {name!r}; presets exist for {sorted(QUANTIZER_PRESETS)} "
                     "and the combinators residual/product")
  preset, weights = QUANTIZER_PRESETS[family]
  quantizer = ml_collections.ConfigDict({"name": name, **preset, **options})
  return quantizer, ml_collections.ConfigDict(weights)


def base_config() -> ml_collections.ConfigDict:
  """The top-level keys every modality sets (DESIGN.md, "Configs, sweeps, ablations")."""
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.total_steps = 1000
  config.batch_size = 256  # global, over all processes and devices
  config.mesh = [("data", -1)]  # -1: every device
  config.log_every = 50
  config.eval_every = 0  # 0: only at the end
  config.checkpoint_every = 200
  config.keep_checkpoints = 2
  config.optimizer = ml_collections.ConfigDict(dict(
      name="adam",  # any optax optimizer taking learning_rate (adam, adamw, sgd, lamb, ...)
      learning_rate=1e-3,
      schedule="constant",  # constant | cosine | warmup_cosine
      warmup_steps=0,
      grad_clip_norm=0.0,  # 0: no clipping
      weight_decay=0.0,  # for optimizers that take it (adamw, lamb)
  ))
  config.evals = ml_collections.ConfigDict(dict(
      split="test",
      batch_size=256,
      classify=True,  # linear probe, kNN on histograms, kNN-Levenshtein, raw 1-NN baseline
      knn_k=1,
      plots=True,
  ))
  return config


def smoke(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Shrinks a config to a run of a few seconds that still exercises every code path."""
  config.total_steps = 12
  config.batch_size = 16
  config.log_every = 4
  config.eval_every = 6
  config.checkpoint_every = 6
  config.evals.batch_size = 64
  return config
