r"""TOTEM-style time-series tokenizer on the UCR/UEA sets that aeon ships.

Launch (from the repository root):

    python -m vqlearn.main --config configs/timeseries.py:quantizer=vq,dataset=GunPoint \
        --workdir runs/ts_gunpoint_vq
    python -m vqlearn.main --config configs/timeseries.py:smoke --workdir /tmp/smoke \
        --config.quantizer.codebook_size=64

Arguments after the colon: ``quantizer`` (a registry name), ``dataset`` (a bundled set, several
joined by '+' for a generalist tokenizer, or ``files`` with ``--config.data.train_path``),
``seed``, and the flag ``smoke`` (a few steps on a tiny batch). Defaults follow TOTEM
(REFERENCE.md §8): RevIN, compression 4, K=256, d=64, Adam at 1e-3, windows of 96, channels
tokenized independently; the batch is 256 instead of 4096 so that a run fits a laptop CPU.
"""

from __future__ import annotations

import ml_collections

from configs import common

# Window length per bundled set: TOTEM's 96 where series are long enough, else whole series.
WINDOWS = {
    "GunPoint": 96, "ArrowHead": 96, "BasicMotions": 96, "ItalyPowerDemand": 0,
    "JapaneseVowels": 0, "OSULeaf": 96, "ACSF1": 96, "PickupGestureWiimoteZ": 96,
}
# Equal bits per token (8) for the families the README compares.
CODEBOOKS = {"gumbel": {"codebook_size": 256}, "binary": {"num_bits": 8}}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """The config for ``arg`` = ``quantizer=...,dataset=...,seed=...,smoke``."""
  arg = common.parse_arg(arg, quantizer="vq", dataset="GunPoint", seed=0, smoke=False)
  config = common.base_config()
  config.seed = arg.seed
  config.total_steps = 1000
  config.batch_size = 256
  config.log_every = 50
  config.checkpoint_every = 250

  config.data = ml_collections.ConfigDict(dict(
      name=arg.dataset,
      train_path="",
      test_path="",
      # A mixture cuts every set into windows of 96; shorter series become one padded window.
      window=WINDOWS[arg.dataset] if arg.dataset in WINDOWS else 96,
      stride=1,
      split_channels=True,  # TOTEM: every channel is its own univariate series
      normalize="none",  # RevIN in the model normalises each window
      validation_fraction=0.0,
      dir="",
  ))
  config.model = ml_collections.ConfigDict(dict(
      name="totem", hidden=128, res_hidden=64, residual_blocks=2, latent_dim=64,
      compression=4, revin=True, faithful_relu=True))
  options = CODEBOOKS.get(arg.quantizer, {"codebook_size": 256})
  config.quantizer, config.loss_weights = common.quantizer_config(arg.quantizer, **options)
  config.optimizer.learning_rate = 1e-3

  if arg.smoke:
    common.smoke(config)
    config.model.hidden = 16
    config.model.res_hidden = 8
    config.model.latent_dim = 8
    config.quantizer.update({"num_bits": 4} if arg.quantizer == "binary"
                            else {"codebook_size": 16})
  return config


def sweep(add):
  """The README's table: four families × every bundled set × three seeds."""
  for dataset in WINDOWS:
    for quantizer in ("vq", "ema_vq", "gumbel", "binary"):
      for seed in range(3):
        add(config=f"quantizer={quantizer},dataset={dataset},seed={seed}")
