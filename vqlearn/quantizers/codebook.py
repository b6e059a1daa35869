"""Codebook kernels shared by the families: distances, nearest entry, k-means, dead codes.

Everything here works on float32 and on the rows of the global batch; families gather rows
across shards (``base.gather_rows``) before calling the functions that need the whole batch.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from vqlearn.quantizers.base import F32, row_noise
from vqlearn.types import Array, PRNGKey


def l2_normalize(x: Array, eps: float = 1e-12) -> Array:
  """Unit-norm rows, for cosine-similarity codebooks (VQGraph, big_vision)."""
  return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(jnp.square(x), axis=-1, keepdims=True), eps))


def squared_distances(x: Array, codebook: Array) -> Array:
  """||x - e||^2 = ||x||^2 - 2 x.e + ||e||^2 for x (N, G, d) and codebook (G, K, d) -> (N, G, K).

  The whole matrix: for losses that need every distance (Wasserstein) and as the simple
  reference that ``nearest`` is tested against.
  """
  x = x.astype(F32)
  codebook = codebook.astype(F32)
  cross = jnp.einsum("ngd,gkd->ngk", x, codebook, precision=jax.lax.Precision.HIGHEST)
  x_sq = jnp.sum(jnp.square(x), axis=-1)[..., None]
  e_sq = jnp.sum(jnp.square(codebook), axis=-1)[None]
  return x_sq - 2.0 * cross + e_sq


ARGMIN_BLOCK = 64  # codes per block of the two-level argmin (PERF_NOTES.md).
# Distances held at once per group, K x rows. On the CPU 2**22 (16 MiB) was the fastest tile
# from K=1024 to K=65536 (2**20 and 2**21 were within noise, 2**18 slower); a GPU wants few,
# large matmuls instead (a 4 MiB tile ran K=8192 at 37% of the H200's matmul+min rate, in 128
# sequential tiles), and 2**26 (256 MiB) still bounds the memory.
TILE_ELEMENTS = 1 << 22
ACCELERATOR_TILE_ELEMENTS = 1 << 26
MIN_TILE_ROWS = 64  # ... but at least 64 rows, or huge codebooks starve the matmul (1.6x at K=65536).


def _first_index_of(values: Array, target: Array) -> Array:
  """Index of the first entry <= target along axis 0, by an integer min-reduction."""
  size = values.shape[0]
  positions = jnp.arange(size, dtype=jnp.int32).reshape((size,) + (1,) * (values.ndim - 1))
  return jnp.min(jnp.where(values <= target[None], positions, size), axis=0)


def _nearest_tile(x_h: Array, codebook_h: Array) -> tuple[Array, Array]:
  """Exact first-occurrence argmin over K of ||e||^2 - 2 x.e for one tile of rows.

  x_h (rows, d + 1) is [x, 1] and codebook_h (K, d + 1) is [-2 e, ||e||^2], so one matmul
  yields the distances with nothing left to add: on the CPU the separate elementwise pass
  cost as much as the matmul. They come out transposed, (K, rows), so that every reduction
  runs over the major axis, elementwise across rows, which vectorises. XLA's argmin on the
  CPU is several times slower than a min, so the index is found in two levels: the min
  over blocks of ARGMIN_BLOCK codes, the first block holding the overall min, then the
  first code inside that block; both by an integer min-reduction, never an argmin.
  """
  dist = jnp.dot(codebook_h, x_h.T, precision=jax.lax.Precision.HIGHEST)
  blocks = dist.reshape(-1, ARGMIN_BLOCK, dist.shape[1])
  block_min = jnp.min(blocks, axis=1)
  best = jnp.min(block_min, axis=0)
  block = _first_index_of(block_min, best)
  inside = jnp.take_along_axis(blocks, block[None, None, :], axis=0)[0]
  return block * ARGMIN_BLOCK + _first_index_of(inside, best), best


def _nearest_one_group(x: Array, codebook: Array) -> tuple[Array, Array]:
  """x (N, d), codebook (K, d): rows are processed in tiles so memory is O(tile + K d)."""
  n, k = x.shape[0], codebook.shape[0]
  e_sq = jnp.sum(jnp.square(codebook), axis=-1)
  codebook_h = jnp.concatenate([-2.0 * codebook, e_sq[:, None]], axis=1)
  # Padding codes sit at the largest finite distance, so they are never chosen over a real one
  # (inf would turn into NaN in the split-precision matmuls of accelerators).
  pad = (-k) % ARGMIN_BLOCK
  codebook_h = jnp.pad(codebook_h, ((0, pad), (0, 0)))
  codebook_h = codebook_h.at[k:, -1].set(jnp.finfo(F32).max)
  x_h = jnp.concatenate([x, jnp.ones((n, 1), F32)], axis=1)
  # Tiling changes only speed and memory, never a result: each row's argmin is its own.
  budget = TILE_ELEMENTS if jax.default_backend() == "cpu" else ACCELERATOR_TILE_ELEMENTS
  tile = min(n, max(MIN_TILE_ROWS, budget // (k + pad)))
  if tile >= n:
    idx, best = _nearest_tile(x_h, codebook_h)
  else:
    tiles = jnp.pad(x_h, ((0, (-n) % tile), (0, 0))).reshape(-1, tile, x_h.shape[-1])
    idx, best = jax.lax.map(lambda t: _nearest_tile(t, codebook_h), tiles)
    idx, best = idx.reshape(-1)[:n], best.reshape(-1)[:n]
  # Only a non-finite row can reach past the real codes; it gets the last one, not a bad index.
  return jnp.minimum(idx, k - 1), best + jnp.sum(jnp.square(x), axis=-1)


def nearest(x: Array, codebook: Array) -> tuple[Array, Array]:
  """Index (N, G) of the nearest entry per group and its squared distance (N, G).

  x (N, G, d), codebook (G, K, d). Equal to ``argmin(squared_distances(x, codebook))``
  (first index on ties) without materialising the N x K matrix.
  """
  x = x.astype(F32)
  codebook = codebook.astype(F32)
  idx, dist = jax.vmap(_nearest_one_group, in_axes=(1, 0), out_axes=1)(x, codebook)
  return idx.astype(jnp.int32), dist


def gather_codewords(codebook: Array, codes: Array) -> Array:
  """codebook (G, K, d), codes (N, G) -> (N, G, d); negative codes (padding) give zeros."""
  groups = jnp.arange(codebook.shape[0])[None, :]
  vectors = codebook[groups, jnp.clip(codes, 0, codebook.shape[1] - 1)]
  return jnp.where((codes >= 0)[..., None], vectors, 0.0)


def cluster_sums(x: Array, codes: Array, weights: Array, num_codes: int) -> tuple[Array, Array]:
  """Per-entry sums of x (N, d) and of weights (N,) for codes (N,) in [0, num_codes)."""
  sums = jax.ops.segment_sum(x.astype(F32) * weights[:, None], codes, num_segments=num_codes)
  counts = jax.ops.segment_sum(weights.astype(F32), codes, num_segments=num_codes)
  return sums, counts


def sample_rows(rng: PRNGKey, mask: Array, num: int) -> Array:
  """``num`` indices of real rows: distinct while there are enough real rows, else cycled.

  Gumbel top-k over the real rows, with each row's noise keyed by its index so that appending
  padding never changes the draw. (Sampling the shortfall with ``random.categorical`` instead
  would draw num x N Gumbel variates: 2 s for 1024 seeds from 100k rows on 2 cores.)
  """
  n = mask.shape[0]
  noise = row_noise(rng, jnp.arange(n), lambda k: jax.random.gumbel(k, (), F32))
  _, picks = jax.lax.top_k(jnp.where(mask > 0, noise, -jnp.inf), min(n, num))
  real = jnp.minimum(jnp.sum(mask > 0), picks.shape[0]).astype(jnp.int32)
  return picks[jnp.arange(num) % jnp.maximum(real, 1)].astype(jnp.int32)


def kmeans(rng: PRNGKey, x: Array, mask: Array, num_codes: int,
           iterations: int) -> tuple[Array, Array]:
  """Lloyd's k-means on the real rows of x (N, d); returns centroids (K, d) and counts (K,).

  Seeds are random real rows; empty clusters keep their previous centroid
  (vector-quantize-pytorch ``kmeans_init``, REFERENCE.md §1).
  """
  x = x.astype(F32)
  centroids = x[sample_rows(rng, mask, num_codes)]

  def assign(c):
    idx, _ = nearest(x[:, None], c[None])
    return cluster_sums(x, idx[:, 0], mask, num_codes)

  def lloyd_step(_, c):
    sums, counts = assign(c)
    return jnp.where(counts[:, None] > 0, sums / jnp.maximum(counts, 1.0)[:, None], c)

  centroids = jax.lax.fori_loop(0, iterations, lloyd_step, centroids)
  _, counts = assign(centroids)
  return centroids, counts


def replace_with_rows(rng: PRNGKey, codebook: Array, replace: Array, x: Array,
                      mask: Array) -> Array:
  """Entries flagged in ``replace`` (K,) become random real rows of x (vector-quantize-pytorch)."""
  fresh = x.astype(F32)[sample_rows(rng, mask, codebook.shape[0])]
  return jnp.where(replace[:, None], fresh, codebook)


def split_most_used(rng: PRNGKey, sums: Array, counts: Array, min_count: float,
                    max_splits: int) -> tuple[Array, Array]:
  """Splits the most-used entry into the least-used one while any count < ``min_count``.

  big_vision's UViM dictionary learning: sums/counts are global, the loop is a
  ``lax.while_loop`` and rng is the same on every device, so all replicas stay identical by
  construction. The copy is nudged by 1% of the codeword's RMS so the two halves separate.
  """
  def needs_split(carry):
    i, _, s, c = carry
    return (i < max_splits) & (jnp.min(c) < min_count) & (jnp.max(c) >= 2.0 * min_count)

  def split(carry):
    i, key, s, c = carry
    key, sub = jax.random.split(key)
    top, low = jnp.argmax(c), jnp.argmin(c)
    half = c[top] / 2.0
    centre = s[top] / c[top]
    rms = jnp.sqrt(jnp.mean(jnp.square(centre)) + 1e-12)
    nudged = centre + 0.01 * rms * jax.random.normal(sub, centre.shape, F32)
    c = c.at[top].set(half).at[low].set(half)
    s = s.at[top].set(centre * half).at[low].set(nudged * half)
    return i + 1, key, s, c

  _, _, sums, counts = jax.lax.while_loop(
      needs_split, split, (jnp.zeros((), jnp.int32), rng, sums, counts))
  return sums, counts
