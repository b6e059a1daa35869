r"""SSQR-style entity codes on the knowledge graphs pykeen ships (Nations, Kinships, UMLS).

Launch (from the repository root):

    python -m vqlearn.main --config configs/kg.py:dataset=kinships --workdir runs/kg_kinships
    python -m vqlearn.main --config configs/kg.py:dataset=umls,score_with=continuous \
        --workdir runs/kg_umls_continuous
    python -m vqlearn.main --config configs/kg.py:smoke --workdir /tmp/kg_smoke

Arguments after the colon: ``quantizer`` (default ``residual``: 4 levels of a 32-entry VQ, so
4 tokens of 5 bits per entity; ``product`` cuts the latent into 4 groups instead; any family
gives 1 token), ``base`` (the family inside residual/product), ``dataset`` (nations, kinships,
umls, or ``files`` with ``--config.data.path=<folder>`` holding train.txt/valid.txt/test.txt),
``score_with`` (quantized = link prediction from the codes; continuous = the same model scoring
from the latents, the baseline), ``seed`` and the flag ``smoke``. The model's dataset, path and
data dir are references to ``config.data``'s, so overriding those moves both.
"""

from __future__ import annotations

import ml_collections

from configs import common

STEPS = {"nations": 400, "kinships": 1500, "umls": 1000}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """The config for ``arg``: quantizer, base, dataset, score_with, seed and the flag smoke."""
  arg = common.parse_arg(arg, quantizer="residual", base="vq", dataset="nations",
                         score_with="quantized", seed=0, smoke=False)
  config = common.base_config()
  config.seed = arg.seed
  config.total_steps = STEPS.get(arg.dataset, 1000)
  config.batch_size = 256  # triples (and inverse triples) per step
  config.log_every = 50
  config.checkpoint_every = 500

  config.data = ml_collections.ConfigDict(dict(name=arg.dataset, path="", dir=""))
  config.model = ml_collections.ConfigDict(dict(
      name="kg_codes", dataset=config.data.get_ref("name"), path=config.data.get_ref("path"),
      data_dir=config.data.get_ref("dir"), dim=64, layers=1, score_with=arg.score_with))
  if arg.quantizer in ("residual", "product"):
    count = {"residual": "levels", "product": "groups"}[arg.quantizer]
    config.quantizer, config.loss_weights = common.quantizer_config(
        arg.quantizer, base=arg.base, codebook_size=32, **{count: 4})
  else:
    config.quantizer, config.loss_weights = common.quantizer_config(
        arg.quantizer, **({"num_bits": 20} if arg.quantizer == "binary"
                          else {"codebook_size": 256}))
  config.optimizer.learning_rate = 1e-2
  config.evals.classify = False  # link prediction is the downstream task
  config.evals.plots = False

  if arg.smoke:
    common.smoke(config)
    config.batch_size = 32
    config.model.dim = 8
    if arg.quantizer in ("residual", "product"):
      config.quantizer.codebook_size = 8
  return config


def sweep(add):
  """The README's table: codes vs continuous, residual and product codes, 3 sets x 3 seeds."""
  for dataset in STEPS:
    for seed in range(3):
      for quantizer, score_with in (("residual", "quantized"), ("residual", "continuous"),
                                    ("product", "quantized")):
        add(config=f"quantizer={quantizer},dataset={dataset},score_with={score_with},"
                   f"seed={seed}")
