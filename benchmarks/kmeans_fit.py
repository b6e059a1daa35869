"""k-means fit: vqlearn `codebook.kmeans` (jitted) against faiss and scikit-learn, same process.

    python benchmarks/kmeans_fit.py            # 100k x 64 float32, K=1024, 20 Lloyd iterations
    python benchmarks/kmeans_fit.py --quick    # 20k rows, K=256, fewer repeats

Data: a Gaussian mixture, fixed seed 0: 1024 centres drawn from N(0, I_64), each row a
uniformly chosen centre plus N(0, I_64) noise (clusters overlap somewhat, so Lloyd's iterations
have work to do). All three start from the same seeds: the rows that vqlearn's own kmeans picks
(`codebook.sample_rows` with the same key). faiss: niter=20, nredo=1,
max_points_per_centroid high enough that no subsampling happens. sklearn: n_init=1,
max_iter=20, algorithm="lloyd", tol=0. Inertia = sum over rows of the squared distance to the
nearest final centroid, computed for all three by the same float64 numpy code.
Fraction of the limit: 21 assignment passes (20 iterations + the final counts) x 2NKd flops
over the time, relative to the fused matmul + row-min rate at (N, K, d).
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import sys

import faiss
import jax
import jax.numpy as jnp
import numpy as np
from sklearn.cluster import KMeans

import harness

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from vqlearn.quantizers import codebook as cb  # noqa: E402

D, ITERATIONS, CENTRES = 64, 20, 1024


def mixture(n: int, seed: int = 0) -> np.ndarray:
  rng = np.random.default_rng(seed)
  centres = rng.standard_normal((CENTRES, D))
  picks = rng.integers(0, CENTRES, n)
  return (centres[picks] + rng.standard_normal((n, D))).astype(np.float32)


def inertia(x: np.ndarray, centroids: np.ndarray, chunk: int = 8192) -> float:
  """Sum of squared distances to the nearest centroid, float64, identical for every method."""
  c = centroids.astype(np.float64)
  c_sq = np.sum(c * c, axis=1)
  total = 0.0
  for start in range(0, x.shape[0], chunk):
    rows = x[start:start + chunk].astype(np.float64)
    dist = np.sum(rows * rows, axis=1, keepdims=True) - 2.0 * rows @ c.T + c_sq
    total += float(np.sum(np.maximum(np.min(dist, axis=1), 0.0)))
  return total


def vqlearn_fit(x: np.ndarray, k: int, rng):
  fit = jax.jit(cb.kmeans, static_argnums=(3, 4))
  xs, mask = jnp.asarray(x), jnp.ones((x.shape[0],), jnp.float32)
  return lambda: fit(rng, xs, mask, k, ITERATIONS)[0]


def faiss_fit(x: np.ndarray, seeds: np.ndarray):
  def run():
    km = faiss.Kmeans(D, seeds.shape[0], niter=ITERATIONS, nredo=1, verbose=False,
                      max_points_per_centroid=x.shape[0], seed=0)
    km.train(x, init_centroids=seeds)
    return km.centroids
  return run


def sklearn_fit(x: np.ndarray, seeds: np.ndarray):
  def run():
    km = KMeans(n_clusters=seeds.shape[0], init=seeds, n_init=1, max_iter=ITERATIONS,
                algorithm="lloyd", tol=0.0, random_state=0)
    return km.fit(x).cluster_centers_
  return run


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true", help="20k rows, K=256, fewer repeats")
  args = parser.parse_args()
  harness.set_threads()
  n, k, rounds = (20_000, 256, 2) if args.quick else (100_000, 1024, 3)

  x = mixture(n)
  rng = jax.random.PRNGKey(0)
  seeds = np.asarray(x[np.asarray(cb.sample_rows(rng, jnp.ones((n,), jnp.float32), k))])

  last = {}  # each fit's latest centroids: inertia comes from the timed runs, not extra fits

  def remember(name, fn):
    def run():
      last[name] = fn()
      return last[name]
    return run

  fns = {"vqlearn kmeans": remember("vqlearn kmeans", vqlearn_fit(x, k, rng)),
         "faiss.Kmeans": remember("faiss.Kmeans", faiss_fit(x, seeds)),
         "sklearn KMeans": remember("sklearn KMeans", sklearn_fit(x, seeds)),
         "limit": harness.limit_fn(n, k, D)}
  first, steady = harness.first_call_seconds(fns["vqlearn kmeans"], steady_calls=1)
  times = harness.interleave(fns, rounds)
  medians = {name: statistics.median(t) for name, t in times.items()}
  inertias = {name: inertia(x, np.asarray(c)) for name, c in last.items()}
  ratios = {p: harness.median_ratio(times, p, "vqlearn kmeans")
            for p in ("faiss.Kmeans", "sklearn KMeans")}
  passes = ITERATIONS + 1
  fraction = passes * statistics.median(
      l / v for l, v in zip(times["limit"], times["vqlearn kmeans"]))
  gap = inertias["vqlearn kmeans"] / inertias["faiss.Kmeans"] - 1.0
  ok = ratios["faiss.Kmeans"] >= 1.0 and abs(gap) <= 0.005

  rows = []
  for name in ("vqlearn kmeans", "faiss.Kmeans", "sklearn KMeans"):
    rel = inertias[name] / inertias["faiss.Kmeans"] - 1.0
    rows.append([name, medians[name], f"{ratios[name]:.2f}x" if name in ratios else "",
                 f"{inertias[name]:.6g}", f"{100 * rel:+.3f}%",
                 f"{100 * fraction:.1f}%" if name == "vqlearn kmeans" else ""])
  limit_gflops = harness.gflops(n, k, D, medians["limit"])
  rows.append([f"limit (one matmul+min pass, {limit_gflops:.0f} GFLOP/s)", medians["limit"], "",
               "", "", "100%"])
  table = harness.markdown_table(
      ["implementation", "median s", "peer/vqlearn", "inertia", "vs faiss inertia",
       "fraction of limit"], rows)
  table += "\n\n" + harness.markdown_table(
      ["target", "value", "status"],
      [["no slower than faiss, inertia within 0.5%",
        f"faiss/vqlearn {ratios['faiss.Kmeans']:.2f}x, inertia {100 * gap:+.3f}%",
        harness.met(ok)]])
  harness.emit("kmeans_fit", f"N={n}, d={D}, K={k}, {ITERATIONS} iterations, Gaussian mixture "
               f"of {CENTRES} centres (seed 0), threads={harness.THREADS}\n\n" + table,
               {"N": n, "d": D, "K": k, "iterations": ITERATIONS, "quick": args.quick,
                "rounds": rounds, "median_s": medians, "ratios": ratios, "inertia": inertias,
                "inertia_gap_vs_faiss": gap, "fraction_of_limit": fraction,
                "limit_gflops": limit_gflops, "vqlearn_compile_s": first - steady,
                "target_met": ok})


if __name__ == "__main__":
  main()
