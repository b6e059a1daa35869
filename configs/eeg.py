r"""EEG tokenizers on the real EEG that spkit ships (or the user's EDF/BDF/FIF folder).

Launch (from the repository root):

    python -m vqlearn.main --config configs/eeg.py --workdir runs/eeg_brain
    python -m vqlearn.main --config configs/eeg.py:model=totem --workdir runs/eeg_totem
    python -m vqlearn.main --config configs/eeg.py:quantizer=gumbel,seed=1 --workdir runs/eeg_gumbel
    python -m vqlearn.main --config configs/eeg.py:cross --workdir runs/eeg_cross_brain
    python -m vqlearn.main --config configs/eeg.py:dataset=files --workdir runs/my_eeg \
        --config.data.path=/data/eegmmidb --config.data.montage=standard_1005 \
        --config.data.sample_rate=160 --config.data.notch=60
    python -m vqlearn.main --config configs/eeg.py:smoke --workdir /tmp/eeg_smoke

Arguments after the colon:
- ``model``: ``brain`` (default), the BrainOmni preset: ``brain_tokenizer`` (sensor embedding,
  attention onto 8 latent sources) with residual EMA-VQ, 4 levels x 512 entries, k-means init
  and dead-code revival, trained with BrainOmni's L1 + exp(-PCC) + amplitude + 0.5 * phase
  loss; or ``totem``, TOTEM for EEG: every channel tokenized on its own (``eeg_totem``), VQ with
  K=256, d=64, compression 4, trained with MSE.
- ``quantizer``: any registry name to replace the preset's family (``residual`` keeps the
  preset's base and levels); one level of ``codebook_size`` 512 otherwise.
- ``dataset``: ``spkit`` (default: 2 raw recordings + 3 cleaned versions of one), ``spkit_raw``,
  ``spkit_cleaned`` or ``files`` (``--config.data.path``).
- ``cross``: the cross-montage experiment: train on the 8 channels in ``SEEN`` only; the
  evaluation also scores the 6 others (``vqlearn/train/tasks/eeg.py``).
- ``seed``, and ``smoke`` (a few steps of a tiny model).

Data defaults: 128 Hz, 0.5-45 Hz band-pass, 50 Hz notch (the spkit recordings are from India),
robust scaling, 1 s windows every 0.25 s, the last quarter of each recording held out.
"""

from __future__ import annotations

import ml_collections

from configs import common

# The 14 Emotiv channels split for the cross-montage experiment: the model sees these 8 (the
# rim of the layout), the other 6 (F3, FC5, P7, O2, FC6, F4) are never shown in training.
SEEN = ("AF3", "F7", "T7", "O1", "P8", "T8", "F8", "AF4")
# The BrainOmni preset's codebook (REFERENCE.md §7): residual EMA-VQ, 4 x 512.
BRAIN_QUANTIZER = dict(base="ema_vq", levels=4, codebook_size=512, kmeans_init=True,
                       revive_dead=True)
# Options per family when it replaces the preset's: one codebook of 512 (9 bits) or 9 bits.
SINGLE = {"binary": {"num_bits": 9}, "gumbel": {"codebook_size": 512},
          "kmeans": {"codebook_size": 512}}


def _quantizer(model: str, name: str):
  if model == "totem" and name in ("", "vq"):
    return common.quantizer_config("vq", codebook_size=256)  # TOTEM: K=256
  if model == "brain" and name in ("", "residual"):
    return common.quantizer_config("residual", **BRAIN_QUANTIZER)
  return common.quantizer_config(name, **SINGLE.get(name, {"codebook_size": 512}))


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """The config for ``arg`` = ``model=...,quantizer=...,dataset=...,seed=...,cross,smoke``."""
  arg = common.parse_arg(arg, model="brain", quantizer="", dataset="spkit", seed=0,
                         cross=False, smoke=False)
  if arg.model not in ("brain", "totem"):
    raise ValueError(f"config argument 'model' must be 'brain' or 'totem', got {arg.model!r}")
  config = common.base_config()
  config.seed = arg.seed
  # Sized for the README's runs on a 2-core CPU (about 1.5 min each): 200 steps of 16 windows
  # are 14 passes over the 225 training windows of spkit.
  config.total_steps = 200
  config.batch_size = 16
  config.log_every = 50
  config.checkpoint_every = 100
  config.data = ml_collections.ConfigDict(dict(
      name=arg.dataset,
      path="",  # dataset=files: a folder of .edf/.bdf/.fif files (searched recursively)
      montage="",  # '' = positions from the files (spkit: standard_1005); else an MNE name
      channel_types="eeg",  # comma-separated; add eog,ecg,emg,stim,misc to keep them
      sample_rate=128.0,
      bandpass_low=0.5,
      bandpass_high=45.0,
      notch=50.0,  # 0 = off; 60 for recordings from the Americas
      scaling="robust",
      window_seconds=1.0,
      stride_seconds=0.25,
      test_fraction=0.25,
      input_channels=",".join(SEEN) if arg.cross else "",
      dir="",
  ))
  if arg.model == "brain":
    config.model = ml_collections.ConfigDict(dict(
        name="brain_tokenizer", dim=32, heads=4, num_sources=8, latent_dim=32, compression=4,
        hide_ratio=0.25, input_noise=0.1))
  else:
    config.model = ml_collections.ConfigDict(dict(
        name="eeg_totem", hidden=128, res_hidden=64, residual_blocks=2, latent_dim=64,
        compression=4, revin=True, faithful_relu=True))
  config.quantizer, config.loss_weights = _quantizer(arg.model, arg.quantizer)
  config.optimizer.learning_rate = 1e-3
  config.evals.batch_size = 20  # the 20 held-out spkit windows in one chunk
  config.evals.classify = False  # the spkit recordings carry no labels

  if arg.smoke:
    common.smoke(config)
    config.evals.batch_size = 16
    if arg.model == "brain":
      config.model.update(dict(dim=16, heads=2, num_sources=4, latent_dim=8))
    else:
      config.model.update(dict(hidden=16, res_hidden=8, latent_dim=8))
    config.quantizer.update({"num_bits": 4} if config.quantizer.name == "binary"
                            else {"codebook_size": 16})
  return config


def sweep(add):
  """The README's tables: quantizer families on the brain tokenizer, the two presets, and the
  cross-montage experiment, three seeds each."""
  for seed in range(3):
    for quantizer in ("residual", "vq", "gumbel", "binary"):
      add(config=f"quantizer={quantizer},seed={seed}")
    add(config=f"model=totem,seed={seed}")
    add(config=f"cross,seed={seed}")
    add(config=f"model=totem,cross,seed={seed}")
