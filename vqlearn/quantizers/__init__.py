"""Quantizers behind one protocol, and the registry that builds them by name.

    q = vqlearn.quantizers.get("gumbel", num_groups=2, codebook_size=320)
    params, state = q.init(rng, x_spec)
    out, state = q.apply(params, state, x, rng=rng, mask=mask, train=True)
    vectors = q.lookup(params, state, out.codes)

Combinators are registered too: ``get("residual", base="ema_vq", levels=4, codebook_size=512)``
builds four EMA-VQ levels; every keyword other than ``base`` and ``levels``/``groups`` goes to
the base family (``axis_name`` to both).
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

from vqlearn.quantizers import metrics
from vqlearn.quantizers.base import CodeSpec, Quantizer, QuantizerOutput
from vqlearn.quantizers.binary import binary, bits_to_index, index_to_bits
from vqlearn.quantizers.combinators import product, residual
from vqlearn.quantizers.ema_vq import ema_vq
from vqlearn.quantizers.gumbel import gumbel
from vqlearn.quantizers.kmeans import kmeans, online_kmeans
from vqlearn.quantizers.vq import vq
from vqlearn.quantizers.wasserstein import wasserstein

FAMILIES: dict[str, Callable[..., Quantizer]] = {
    "vq": vq,
    "ema_vq": ema_vq,
    "kmeans": kmeans,
    "online_kmeans": online_kmeans,
    "gumbel": gumbel,
    "wasserstein": wasserstein,
    "binary": binary,
}
COMBINATORS = {"residual": (residual, "levels", 4), "product": (product, "groups", 2)}


def names() -> tuple[str, ...]:
  """Every name ``get`` accepts: the families, then the combinators."""
  return tuple(FAMILIES) + tuple(COMBINATORS)


def _build(name: str, factory: Callable[..., Quantizer], kwargs: dict[str, Any]) -> Quantizer:
  accepted = set(inspect.signature(factory).parameters)
  unknown = sorted(set(kwargs) - accepted)
  if unknown:
    raise ValueError(f"unknown option(s) {unknown} for quantizer {name!r}; "
                     f"accepted: {sorted(accepted)}")
  return factory(**kwargs)


def get(name: str, **kwargs: Any) -> Quantizer:
  """Builds the quantizer registered as ``name`` with reference defaults for unset options."""
  if name in FAMILIES:
    return _build(name, FAMILIES[name], kwargs)
  if name in COMBINATORS:
    combinator, count_name, default_count = COMBINATORS[name]
    base_name = kwargs.pop("base", "vq")
    if base_name not in FAMILIES:
      raise ValueError(f"base must be one of {tuple(FAMILIES)} for {name!r}, got {base_name!r}")
    count = kwargs.pop(count_name, default_count)
    axis_name = kwargs.get("axis_name")
    return combinator(_build(base_name, FAMILIES[base_name], kwargs), count,
                      axis_name=axis_name)
  raise ValueError(f"unknown quantizer {name!r}; registered: {names()}")


__all__ = [
    "CodeSpec", "Quantizer", "QuantizerOutput", "FAMILIES", "get", "names", "metrics",
    "vq", "ema_vq", "kmeans", "online_kmeans", "gumbel", "wasserstein", "binary",
    "residual", "product", "bits_to_index", "index_to_bits",
]
