"""Autoencoders (encoder -> quantizer -> decoder) per modality, and the registry by name.

    q = vqlearn.quantizers.get("vq", codebook_size=256)
    model = vqlearn.models.get("totem", q, hidden=128, latent_dim=64, compression=4)
    params, state = model.init(rng, jax.ShapeDtypeStruct((batch, time, channels), jnp.float32))
    out, state = model.apply(params, state, x, mask=mask, rng=rng, train=True)

Any registered quantizer plugs into any model: the quantizer's input dimension is set by
``init`` from the encoder's latent size.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

from vqlearn.models.autoencoder import (Autoencoder, AutoencoderOutput, Tokenizer,
                                        make_autoencoder)
from vqlearn.models.timeseries import (RevinStats, TotemDecoder, TotemEncoder,
                                       revin_denormalize, revin_normalize, totem)
from vqlearn.models.speech import WaveformAutoencoder, speech_frames, speech_waveform
from vqlearn.models.eeg import SensorAutoencoder, brain_tokenizer
from vqlearn.models.graph import GraphModel, KgModel, bag_of_codes, kg_codes, vqgraph
from vqlearn.quantizers.base import Quantizer

MODELS: dict[str, Callable[..., Autoencoder]] = {
    "totem": totem,
    "brain_tokenizer": brain_tokenizer,
    "eeg_totem": totem,  # TOTEM, channel-independent, on EEG windows (the EEG task runs it)
    "speech_waveform": speech_waveform,
    "speech_frames": speech_frames,
    "vqgraph": vqgraph,
    "kg_codes": kg_codes,
}

# Model name -> its modality, which picks the trainer's Task (vqlearn.train.tasks.TASKS).
MODALITY: dict[str, str] = {
    "totem": "timeseries",
    "brain_tokenizer": "eeg",
    "eeg_totem": "eeg",
    "speech_waveform": "speech",
    "speech_frames": "speech",
    "vqgraph": "graph",
    "kg_codes": "kg",
}


def names() -> tuple[str, ...]:
  """Every name ``get`` accepts."""
  return tuple(MODELS)


def get(name: str, quantizer: Quantizer, **kwargs: Any) -> Autoencoder:
  """Builds the model registered as ``name`` around ``quantizer``.

  Args:
    name: a registered model name (``names()``).
    quantizer: any ``Quantizer`` (e.g. from ``vqlearn.quantizers.get``).
    **kwargs: the model factory's options; unset ones keep the reference defaults.

  Returns:
    An ``Autoencoder``.
  """
  if name not in MODELS:
    raise ValueError(f"unknown model {name!r}; registered: {names()}")
  factory = MODELS[name]
  if not isinstance(quantizer, Quantizer):
    raise ValueError(f"quantizer must be a vqlearn Quantizer (quantizers.get(...)), "
                     f"got {type(quantizer).__name__}")
  accepted = sorted(set(inspect.signature(factory).parameters) - {"quantizer"})
  unknown = sorted(set(kwargs) - set(accepted))
  if unknown:
    raise ValueError(f"unknown option(s) {unknown} for model {name!r}; accepted: {accepted}")
  return factory(quantizer, **kwargs)


__all__ = [
    "Autoencoder", "AutoencoderOutput", "Tokenizer", "make_autoencoder", "MODALITY", "MODELS",
    "get", "names", "totem", "TotemEncoder", "TotemDecoder", "RevinStats", "revin_normalize",
    "revin_denormalize",
    "brain_tokenizer", "SensorAutoencoder",
    "speech_waveform", "speech_frames", "WaveformAutoencoder",
    "vqgraph", "kg_codes", "bag_of_codes", "GraphModel", "KgModel",
]
