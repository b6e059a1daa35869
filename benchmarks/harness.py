"""Shared measurement code for the benchmarks in this folder (PERF_NOTES.md, hygiene).

Every benchmark times vqlearn and its peers in one process, interleaved (A B A B ...), on the
same shapes and thread count, after an untimed call and a short pause before each timed block,
and reports medians and the median of per-round ratios: absolute times on the shared 2-core
machines swing up to 2x between runs, ratios measured side by side do not.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

# On an accelerator host JAX's default backend is the GPU, and the PyTorch peers run there too
# (same device for both); the CPU-only peers (faiss, scikit-learn) get every host core.
ON_GPU = jax.default_backend() == "gpu"
TORCH_DEVICE = "cuda" if ON_GPU else "cpu"
# The development/CI machines have 2 cores; every framework gets both.
THREADS = os.cpu_count() if ON_GPU else 2
PAUSE_S = 0.05  # lets the other frameworks' thread pools go idle before a timed block.


def set_threads(threads: int = THREADS) -> None:
  """Same thread count for torch and faiss (XLA and OpenBLAS use every core)."""
  try:
    import torch
    torch.set_num_threads(threads)
  except ImportError:
    pass
  try:
    import faiss
    faiss.omp_set_num_threads(threads)
  except ImportError:
    pass


def _version(module: str) -> str | None:
  try:
    return __import__(module).__version__
  except ImportError:
    return None


def environment() -> dict:
  """What a quoted number depends on: versions, threads, and the two malloc/BLAS switches."""
  try:
    import torch
    torch_threads = torch.get_num_threads()
  except ImportError:
    torch_threads = None
  return {
      "threads": THREADS, "torch_threads": torch_threads, "cpu_count": os.cpu_count(),
      "machine": _cpu_model(), "jax_device": jax.devices()[0].device_kind,
      "torch_device": TORCH_DEVICE, "load_average": os.getloadavg(),
      "python": platform.python_version(), "jax": jax.__version__,
      "torch": _version("torch"), "faiss": _version("faiss"), "sklearn": _version("sklearn"),
      "vector_quantize_pytorch": _package_version("vector-quantize-pytorch"),
      "GLIBC_TUNABLES": os.environ.get("GLIBC_TUNABLES", "<unset>"),
      "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE", "<unset>"),
  }


def _cpu_model() -> str:
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def _package_version(name: str) -> str | None:
  from importlib import metadata
  try:
    return metadata.version(name)
  except metadata.PackageNotFoundError:
    return None


def block(value):
  """Waits for JAX's asynchronous dispatch and, on a GPU, for PyTorch's CUDA stream."""
  if ON_GPU:
    import torch
    torch.cuda.synchronize()
  return jax.block_until_ready(value)


def tensor(array, *, requires_grad: bool = False):
  """A PyTorch copy of ``array`` on the peers' device."""
  import torch
  return torch.tensor(array, device=TORCH_DEVICE, requires_grad=requires_grad)


def timed(fn: Callable[[], object]) -> float:
  start = time.perf_counter()
  block(fn())
  return time.perf_counter() - start


def first_call_seconds(fn: Callable[[], object], steady_calls: int = 3) -> tuple[float, float]:
  """(first call, median steady call): their difference is trace + compile time."""
  first = timed(fn)
  steady = statistics.median(timed(fn) for _ in range(steady_calls))
  return first, steady


def interleave(fns: dict[str, Callable[[], object]], rounds: int,
               calls: int = 1) -> dict[str, list[float]]:
  """Per-round times (the median of ``calls`` timed calls) for each fn, interleaved A B A B.

  Before each timed block: a pause, then one untimed call, so no framework is measured while
  another's threads still spin or its caches are cold.
  """
  times = {name: [] for name in fns}
  for _ in range(rounds):
    for name, fn in fns.items():
      time.sleep(PAUSE_S)
      block(fn())
      times[name].append(statistics.median(timed(fn) for _ in range(calls)))
  return times


def median_ratio(times: dict[str, list[float]], peer: str, ours: str) -> float:
  """Median over rounds of peer/ours: each ratio compares neighbours in time."""
  return statistics.median(p / o for p, o in zip(times[peer], times[ours]))


def limit_fn(n: int, k: int, d: int, seed: int = 0) -> Callable[[], object]:
  """The machine limit: a jitted, fused (N x d)(d x K) matmul + row-min in XLA (2NKd flops).

  Nearest-codeword search cannot beat it: it is the distance matmul with the cheapest possible
  reduction, and XLA fuses the min into the matmul's consumer.
  """
  kx, ke = jax.random.split(jax.random.PRNGKey(seed))
  x = jax.random.normal(kx, (n, d), jnp.float32)
  e = jax.random.normal(ke, (k, d), jnp.float32)
  fused = jax.jit(lambda a, b: jnp.min(
      jnp.dot(a, b.T, precision=jax.lax.Precision.HIGHEST), axis=-1))
  block(fused(x, e))
  return lambda: fused(x, e)


def gflops(n: int, k: int, d: int, seconds: float) -> float:
  return 2.0 * n * k * d / seconds / 1e9


def markdown_table(header: list[str], rows: list[list]) -> str:
  def cell(v):
    return f"{v:.4g}" if isinstance(v, float) else str(v)
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
  return "\n".join(lines)


def emit(name: str, table: str, record: dict) -> None:
  """Prints the table, then one JSON line (prefixed, so logs can be grepped) with everything."""
  print(table)
  print("JSON " + json.dumps({"benchmark": name, **record, "env": environment()},
                             default=_jsonable))


def _jsonable(value):
  if isinstance(value, (np.floating, np.integer)):
    return value.item()
  if isinstance(value, np.ndarray):
    return value.tolist()
  raise TypeError(type(value))


def ms(seconds: float) -> float:
  return 1e3 * seconds


def met(ok: bool) -> str:
  return "met" if ok else "MISSED"
