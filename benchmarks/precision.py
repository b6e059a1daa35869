"""Assignment precision of `codebook.nearest` against a float64 reference on the same inputs.

    python benchmarks/precision.py            # N=16384, d=64, K=1024 and 8192
    python benchmarks/precision.py --quick    # K=1024 only

Random data (fixed seed): x and codebook ~ N(0, 1). For bf16 inputs, both are rounded to
bfloat16 and `nearest` computes in float32 inside; the reference is a float64 numpy argmin on
the very same bf16-rounded values, so only the kernel's arithmetic is judged, not the rounding
of the inputs. The same for float32 inputs. Disagreements are shown with the worst relative
excess distance of vqlearn's pick over the reference's, which tells a near-tie from a bug.
No timing here, hence no limit measurement.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np

import harness

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from vqlearn.quantizers import codebook as cb  # noqa: E402

N, D = 16384, 64
TARGET = 0.999


def reference_distances(x: np.ndarray, e: np.ndarray, chunk: int = 2048) -> np.ndarray:
  """Full float64 squared distances (N, K), chunked over rows."""
  x, e = x.astype(np.float64), e.astype(np.float64)
  e_sq = np.sum(e * e, axis=1)
  out = []
  for start in range(0, x.shape[0], chunk):
    rows = x[start:start + chunk]
    out.append(np.sum(rows * rows, axis=1, keepdims=True) - 2.0 * rows @ e.T + e_sq)
  return np.concatenate(out)


def compare(x: jnp.ndarray, e: jnp.ndarray) -> dict:
  idx, _ = jax.jit(cb.nearest)(x[:, None], e[None])
  idx = np.asarray(idx[:, 0])
  # The reference sees exactly what the kernel saw: the inputs' values, widened losslessly.
  dist = reference_distances(np.asarray(x.astype(jnp.float32)), np.asarray(e.astype(jnp.float32)))
  best = np.argmin(dist, axis=1)
  rows = np.arange(dist.shape[0])
  excess = (dist[rows, idx] - dist[rows, best]) / np.maximum(dist[rows, best], 1e-30)
  return {"agree": float(np.mean(idx == best)), "disagreements": int(np.sum(idx != best)),
          "max_rel_excess": float(np.max(excess))}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true", help="K=1024 only")
  args = parser.parse_args()
  sizes = (1024,) if args.quick else (1024, 8192)

  results, rows = [], []
  for k in sizes:
    rng = np.random.default_rng(k)
    x = jnp.asarray(rng.standard_normal((N, D), dtype=np.float32))
    e = jnp.asarray(rng.standard_normal((k, D), dtype=np.float32))
    for dtype in (jnp.bfloat16, jnp.float32):
      r = compare(x.astype(dtype), e.astype(dtype))
      r |= {"K": k, "dtype": jnp.dtype(dtype).name, "met": r["agree"] >= TARGET}
      results.append(r)
      rows.append([k, r["dtype"], f"{100 * r['agree']:.4f}%", r["disagreements"],
                   f"{r['max_rel_excess']:.2e}", harness.met(r["met"])])
  table = harness.markdown_table(
      ["K", "inputs", "agree with float64", "disagreements", "max rel. excess distance",
       f"target >= {100 * TARGET:.1f}%"], rows)
  harness.emit("precision", f"N={N}, d={D}\n\n" + table,
               {"N": N, "d": D, "quick": args.quick, "results": results})


if __name__ == "__main__":
  main()
