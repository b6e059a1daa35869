"""vqlearn: vector-quantized representation learners in JAX.

The public surface is re-exported here; users never import deep paths. ``quantizers`` loads
eagerly; the heavier subpackages (``data`` pulls in tensorflow-datasets and grain, ``train``
orbax) load on first attribute access, so ``import vqlearn`` stays quick.
"""

import importlib

from vqlearn import quantizers
from vqlearn.quantizers import CodeSpec, Quantizer, QuantizerOutput

_LAZY = ("data", "evaluators", "losses", "models", "sharding", "train")

__all__ = ["quantizers", "CodeSpec", "Quantizer", "QuantizerOutput", *_LAZY]


def __getattr__(name):
  if name in _LAZY:
    return importlib.import_module(f"vqlearn.{name}")
  raise AttributeError(f"module 'vqlearn' has no attribute {name!r}")
