"""vqlearn: vector-quantized representation learners in JAX.

The public surface is re-exported here; users never import deep paths.
"""

from vqlearn import quantizers
from vqlearn.quantizers import CodeSpec, Quantizer, QuantizerOutput

__all__ = ["quantizers", "CodeSpec", "Quantizer", "QuantizerOutput"]
