"""Downstream quality of codes on labelled splits, each beside its classic baseline.

Three views of the same codes, from the bag of codes to their order to their vectors:
- kNN on per-series code histograms (which codes occur, not where);
- kNN with the Levenshtein distance between code sequences, as the seed study on animal
  vocalisations classifies call types from VQ codes (REFERENCE.md §7);
- a linear probe (multinomial logistic regression) on the time-pooled quantized vectors.
The baseline is 1-NN with the Euclidean distance on the raw normalised series, the standard
UCR reference point.

Shapes (DESIGN.md): codes ``(n, C, T', S)`` int, -1 at padding, with a token mask
``(n, C, T')`` (1 = real); quantized vectors ``(n, C, T', d)``, zero at padding; series
``(n, T, C)`` with a mask ``(n, T)``; labels ``(n,)`` int, >= 0. Codes without a channel axis,
``(n, T', S)`` with a mask ``(n, T')``, are read as one channel. Everything here runs once per
evaluation on the host (numpy), except the Levenshtein and logistic-regression kernels, which
are jitted JAX.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from vqlearn.quantizers.base import CodeSpec

U32 = jnp.uint32
WORD = 32  # bits per machine word in the bit-parallel Levenshtein kernel


# ----------------------------------------------------------------------------------------------
# Argument checking.
# ----------------------------------------------------------------------------------------------

def _vocab_size(vocab_size: CodeSpec | int) -> int:
  vocab = vocab_size.vocab_size if isinstance(vocab_size, CodeSpec) else vocab_size
  if isinstance(vocab, bool) or not isinstance(vocab, (int, np.integer)) or vocab < 1:
    raise ValueError(f"vocab_size must be a positive integer or a CodeSpec, got {vocab_size!r}")
  return int(vocab)


def _channels(codes, mask, name: str = "codes") -> tuple[np.ndarray, np.ndarray]:
  """(n, C, T', S) codes and a boolean (n, C, T') mask; (n, T', S) becomes one channel."""
  codes = np.asarray(codes)
  if codes.ndim == 3:
    codes = codes[:, None]
    mask = None if mask is None else np.asarray(mask)[:, None]
  if codes.ndim != 4:
    raise ValueError(f"{name} must have shape (n, C, T', S) (or (n, T', S)), got {codes.shape}")
  keep = np.ones(codes.shape[:3], bool) if mask is None else np.asarray(mask) > 0
  if keep.shape != codes.shape[:3]:
    raise ValueError(f"the mask of {name} must have shape (n, C, T') = {codes.shape[:3]}, "
                     f"got {keep.shape}")
  return codes, keep


def _labels(labels, n: int, name: str) -> np.ndarray:
  labels = np.asarray(labels).reshape(-1)
  if labels.shape[0] != n:
    raise ValueError(f"{name} must have one label per series ({n}), got {labels.shape[0]}")
  if labels.size and labels.min() < 0:
    raise ValueError(f"{name} must be >= 0 (labelled series only), found {labels.min()}")
  return labels


# ----------------------------------------------------------------------------------------------
# Features of a series: histogram of codes, sequence of tokens, pooled vectors.
# ----------------------------------------------------------------------------------------------

def code_histograms(codes, mask, vocab_size: CodeSpec | int) -> np.ndarray:
  """Per series, the normalised histogram of its codes, per channel and symbol.

  Each (channel, symbol) block sums to 1 over the real tokens of that channel (0 if it has
  none), so series of different lengths are on one scale.

  Args:
    codes: int (n, C, T', S), -1 at padding.
    mask: token mask (n, C, T'), 1 = real; None when every token is real.
    vocab_size: entries per symbol, or the quantizer's ``CodeSpec``.

  Returns:
    float32 (n, C * S * V), blocks ordered channel-major, then symbol, then code.
  """
  vocab = _vocab_size(vocab_size)
  codes, keep = _channels(codes, mask)
  n, c, _, s = codes.shape
  real = codes[keep]
  if real.size and (real.min() < 0 or real.max() >= vocab):
    raise ValueError(f"codes at real tokens must lie in [0, {vocab}), found values in "
                     f"[{real.min()}, {real.max()}]")
  block = (np.arange(n)[:, None, None, None] * c + np.arange(c)[None, :, None, None]) * s
  block = block + np.arange(s)[None, None, None, :]  # (n, C, 1, S): one block per series x C x S
  index = block * vocab + np.clip(codes, 0, vocab - 1)
  weights = np.broadcast_to(keep[..., None], codes.shape).astype(np.float64)
  counts = np.bincount(index.reshape(-1), weights.reshape(-1), minlength=n * c * s * vocab)
  counts = counts.reshape(n, c, s, vocab)
  totals = counts.sum(axis=-1, keepdims=True)
  return (counts / np.maximum(totals, 1.0)).reshape(n, -1).astype(np.float32)


def code_sequences(codes, mask) -> tuple[np.ndarray, np.ndarray]:
  """Series as sequences of vector tokens, for the Levenshtein distance.

  The token at time t holds every channel's symbols, ``codes[:, :, t, :]`` flattened, so two
  tokens are equal iff all channels and symbols agree. A time step is real when any channel is
  real there; real steps are moved to the front in order (padding is usually at the end).

  Args:
    codes: int (n, C, T', S), -1 at padding.
    mask: token mask (n, C, T'), 1 = real; None when every token is real.

  Returns:
    tokens int32 (n, T', C * S) and lengths int32 (n,).
  """
  codes, keep = _channels(codes, mask)
  n, c, t, s = codes.shape
  tokens = np.where(keep[..., None], codes, -1).transpose(0, 2, 1, 3).reshape(n, t, c * s)
  real = keep.any(axis=1)  # (n, T')
  order = np.argsort(~real, axis=1, kind="stable")
  tokens = np.take_along_axis(tokens, order[..., None], axis=1)
  return tokens.astype(np.int32), real.sum(axis=1).astype(np.int32)


def pooled_embeddings(quantized, mask) -> np.ndarray:
  """Masked mean over time of the quantized vectors, channels concatenated.

  Args:
    quantized: float (n, C, T', d) (or (n, T', d) for one channel), zero at padding.
    mask: token mask (n, C, T'), 1 = real; None when every token is real.

  Returns:
    float32 (n, C * d); a channel without real tokens pools to zeros.
  """
  quantized = np.asarray(quantized, np.float64)
  if quantized.ndim == 3:
    quantized = quantized[:, None]
    mask = None if mask is None else np.asarray(mask)[:, None]
  if quantized.ndim != 4:
    raise ValueError(f"quantized must have shape (n, C, T', d), got {quantized.shape}")
  keep = np.ones(quantized.shape[:3]) if mask is None else (np.asarray(mask) > 0).astype(float)
  if keep.shape != quantized.shape[:3]:
    raise ValueError(f"mask must have shape (n, C, T') = {quantized.shape[:3]}, "
                     f"got {keep.shape}")
  sums = np.sum(np.where(keep[..., None] > 0, quantized, 0.0), axis=2)
  means = sums / np.maximum(keep.sum(axis=2), 1.0)[..., None]
  return means.reshape(quantized.shape[0], -1).astype(np.float32)


# ----------------------------------------------------------------------------------------------
# k nearest neighbours.
# ----------------------------------------------------------------------------------------------

def euclidean_distances(a, b) -> np.ndarray:
  """(na, nb) Euclidean distances between the rows of a and b (any trailing shape), float64."""
  a = np.asarray(a, np.float64).reshape(len(a), -1)
  b = np.asarray(b, np.float64).reshape(len(b), -1)
  if a.shape[1] != b.shape[1]:
    raise ValueError(f"a and b must have the same number of features, got {a.shape[1]} "
                     f"and {b.shape[1]}")
  sq = np.sum(a * a, 1)[:, None] + np.sum(b * b, 1)[None, :] - 2.0 * (a @ b.T)
  return np.sqrt(np.maximum(sq, 0.0))


def knn_predict(distances, train_labels, k: int = 1) -> np.ndarray:
  """Majority vote of the k nearest training series, with deterministic ties.

  Ties are resolved so that the prediction does not depend on the order of the training set,
  which matters for integer distances such as Levenshtein, where ties are common:
  1. every training series as close as the k-th nearest one votes (so a tie at the k-th
     distance may give more than k voters);
  2. among classes with the most votes, the class with the closest voter wins;
  3. if still tied, the smallest label wins.
  Without ties this is the plain kNN vote (scikit-learn's ``KNeighborsClassifier``).

  Args:
    distances: (n_test, n_train) distances, smaller = closer.
    train_labels: (n_train,) int labels.
    k: number of neighbours, 1 <= k <= n_train.

  Returns:
    (n_test,) predicted labels, train_labels' dtype.
  """
  d = np.asarray(distances, np.float64)
  if d.ndim != 2:
    raise ValueError(f"distances must have shape (n_test, n_train), got {d.shape}")
  labels = _labels(train_labels, d.shape[1], "train_labels")
  if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= d.shape[1]:
    raise ValueError(f"k must be an integer in [1, n_train = {d.shape[1]}], got {k!r}")
  if np.isnan(d).any():
    raise ValueError("distances must not contain NaN")
  if d.shape[0] == 0:
    return labels[:0]
  classes, y = np.unique(labels, return_inverse=True)
  kth = np.partition(d, k - 1, axis=1)[:, k - 1:k]
  voter = d <= kth
  votes = np.stack([np.sum(voter & (y == j)[None, :], axis=1) for j in range(len(classes))], 1)
  closest = np.stack([np.min(np.where(voter & (y == j)[None, :], d, np.inf), axis=1)
                      for j in range(len(classes))], 1)
  closest = np.where(votes == votes.max(axis=1, keepdims=True), closest, np.inf)
  return classes[np.argmin(closest, axis=1)]  # argmin keeps the first (smallest) class on ties


def knn_accuracy(distances, train_labels, test_labels, k: int = 1) -> float:
  """Accuracy of ``knn_predict`` on the test labels (see there for the tie rules).

  Args:
    distances: (n_test, n_train) distances, smaller = closer.
    train_labels: (n_train,) int labels.
    test_labels: (n_test,) int labels.
    k: number of neighbours.

  Returns:
    Fraction of test series whose predicted label is their label.
  """
  test_labels = _labels(test_labels, np.shape(distances)[0], "test_labels")
  return float(np.mean(knn_predict(distances, train_labels, k) == test_labels))


# ----------------------------------------------------------------------------------------------
# Levenshtein distance, bit-parallel (Myers 1999; Hyyro 2003's formulation for edit distance).
#
# Sequence a (the "pattern") is held as bit vectors over its positions: Peq[c] has bit i set
# where a[i] == c. The DP column over a's positions is encoded by its vertical deltas (Pv, Mv:
# +1 / -1 between consecutive rows), and one step over b (the "text") updates all of them with
# ~20 word operations, so a pair costs len(b) * ceil(len(a) / 32) word steps instead of
# len(a) * len(b) cells. Deltas above a's length never reach lower bits (carries and shifts go
# upwards), so sequences of different lengths share one padded layout.
# ----------------------------------------------------------------------------------------------

def _peq_table(a: jax.Array, a_len: jax.Array, num_ids: int, words: int) -> jax.Array:
  """(words, num_ids, ca) uint32: bit i of word w of [., c, p] set iff a[p, 32 w + i] == c."""
  ca, la_max = a.shape
  pos = jnp.arange(la_max)
  bit = jnp.left_shift(U32(1), (pos % WORD).astype(U32))
  bits = jnp.where(pos[None, :] < a_len[:, None], bit[None, :], U32(0))
  word = jnp.broadcast_to((pos // WORD)[None, :], (ca, la_max))
  seq = jnp.broadcast_to(jnp.arange(ca)[:, None], (ca, la_max))
  # Positions are distinct bits of their word, so adding them is OR-ing them.
  return jnp.zeros((words, num_ids, ca), U32).at[word, a, seq].add(bits)


def _add_words(x: jax.Array, y: jax.Array) -> jax.Array:
  """x + y for multi-word unsigned integers stored (words, ...) least significant first."""
  out, carry = [], None
  for w in range(x.shape[0]):
    total = x[w] + y[w]
    overflow = total < x[w]
    if carry is not None:
      with_carry = total + carry.astype(U32)
      overflow = overflow | (with_carry < total)
      total = with_carry
    out.append(total)
    carry = overflow
  return jnp.stack(out)


def _shift_up(x: jax.Array, fill: int) -> jax.Array:
  """Multi-word x << 1 with ``fill`` shifted into the lowest bit."""
  low = jnp.full((1,) + x.shape[1:], fill, U32)
  return (x << 1) | jnp.concatenate([low, x[:-1] >> (WORD - 1)])


@functools.partial(jax.jit, static_argnames=("num_ids",))
def _levenshtein_block(a, a_len, b, b_len, num_ids: int):
  """Edit distances (ca, cb) between token-id sequences a (ca, La) and b (cb, Lb)."""
  ca, la_max = a.shape
  cb, lb_max = b.shape
  words = max(1, -(-la_max // WORD))
  peq = _peq_table(a, a_len, num_ids, words)
  last = a_len - 1  # the row whose vertical delta moves the score D[len(a), j]
  last_bit = jnp.left_shift(U32(1), (last % WORD).astype(U32))
  top = jnp.where((jnp.arange(words)[:, None] == (last // WORD)[None, :]) & (a_len > 0)[None, :],
                  last_bit[None, :], U32(0))[:, None, :]  # (words, 1, ca)
  all_ones = jnp.full((words, cb, ca), 0xFFFFFFFF, U32)

  def step(carry, x):
    pv, mv, score = carry
    b_j, j = x
    eq = jnp.take(peq, b_j, axis=1, mode="clip")  # (words, cb, ca)
    xv = eq | mv
    xh = (_add_words(eq & pv, pv) ^ pv) | eq
    ph = mv | ~(xh | pv)
    mh = pv & xh
    up = jnp.any((ph & top) != 0, axis=0).astype(jnp.int32)
    down = jnp.any((mh & top) != 0, axis=0).astype(jnp.int32)
    score = score + jnp.where((j < b_len)[:, None], up - down, 0)
    ph = _shift_up(ph, 1)  # D[0, j] = j: the top row grows by one per step (global distance)
    mh = _shift_up(mh, 0)
    return (mh | ~(xv | ph), ph & xv, score), None

  score = jnp.broadcast_to(a_len[None, :], (cb, ca)).astype(jnp.int32)
  (_, _, score), _ = jax.lax.scan(step, (all_ones, jnp.zeros_like(all_ones), score),
                                  (b.T, jnp.arange(lb_max)))
  return jnp.where((a_len == 0)[None, :], b_len[:, None], score).T


def _sequences(tokens, lengths, name: str) -> tuple[np.ndarray, np.ndarray]:
  tokens = np.asarray(tokens)
  if tokens.ndim < 2 or not np.issubdtype(tokens.dtype, np.integer):
    raise ValueError(f"{name}_tokens must be an integer array (n, L) or (n, L, ...) of vector "
                     f"tokens, got dtype {tokens.dtype} and shape {tokens.shape}")
  tokens = tokens.reshape(tokens.shape[:2] + (int(np.prod(tokens.shape[2:])),))
  lengths = np.asarray(lengths).reshape(-1)
  if lengths.shape[0] != tokens.shape[0]:
    raise ValueError(f"{name}_lengths must have one length per sequence ({tokens.shape[0]}), "
                     f"got {lengths.shape[0]}")
  if lengths.size and (lengths.min() < 0 or lengths.max() > tokens.shape[1]):
    raise ValueError(f"{name}_lengths must lie in [0, {tokens.shape[1]}], found "
                     f"[{lengths.min()}, {lengths.max()}]")
  return tokens, lengths.astype(np.int32)


def _token_ids(a, la, b, lb) -> tuple[np.ndarray, np.ndarray, int]:
  """Vector tokens -> int32 ids, equal iff the vectors are equal, over both sets."""
  real_a = np.arange(a.shape[1])[None, :] < la[:, None]
  real_b = np.arange(b.shape[1])[None, :] < lb[:, None]
  rows = np.concatenate([a[real_a], b[real_b]]).astype(np.int64)
  # Mixed-radix keys, one column at a time, renumbered when they would overflow: much faster
  # than np.unique(rows, axis=0), which sorts rows lexicographically.
  keys, size = np.zeros(len(rows), np.int64), 1
  for column in rows.T:
    column = column - column.min(initial=0)
    span = int(column.max(initial=0)) + 1
    if size * span >= 1 << 62:
      keys = np.unique(keys, return_inverse=True)[1].reshape(-1)
      size = int(keys.max()) + 1
    keys, size = keys * span + column, size * span
  inverse = np.unique(keys, return_inverse=True)[1].reshape(-1).astype(np.int32)
  ids_a = np.zeros(a.shape[:2], np.int32)
  ids_b = np.zeros(b.shape[:2], np.int32)
  ids_a[real_a] = inverse[:int(real_a.sum())]
  ids_b[real_b] = inverse[int(real_a.sum()):]
  return ids_a, ids_b, int(inverse.max(initial=0)) + 1


def _pad_rows(x: np.ndarray, rows: int) -> np.ndarray:
  return np.concatenate([x, np.zeros((rows - len(x),) + x.shape[1:], x.dtype)])


def levenshtein_distances(a_tokens, a_lengths, b_tokens, b_lengths, *,
                          normalize: bool = False, block_pairs: int = 4096) -> np.ndarray:
  """Edit distances between every sequence of a and every sequence of b.

  Insertions, deletions and substitutions cost 1; a token may be a vector (all channels x
  symbols at one time step), and two tokens are equal iff all their entries are. Computed in
  JAX with the bit-parallel algorithm of Myers (1999) in Hyyro's (2003) edit-distance form: a
  ``lax.scan`` over the positions of b updates a's whole DP column as 32-bit words, for a
  block of pairs at once (pairs on the minor axes, so every step is one wide vector op).
  Blocks of about ``block_pairs`` pairs keep memory bounded and reuse one compilation.

  Args:
    a_tokens: int (na, La) or (na, La, ...) tokens; entries past a sequence's length ignored.
    a_lengths: (na,) lengths in [0, La].
    b_tokens: int (nb, Lb) or (nb, Lb, ...) tokens, same trailing shape as a_tokens.
    b_lengths: (nb,) lengths in [0, Lb].
    normalize: divide each distance by max(len(a), len(b)) (0 for two empty sequences), so it
      lies in [0, 1] and a long pair is not far merely for being long.
    block_pairs: pairs per compiled block.

  Returns:
    (na, nb) int32 distances, or float64 in [0, 1] with ``normalize``.
  """
  a, la = _sequences(a_tokens, a_lengths, "a")
  b, lb = _sequences(b_tokens, b_lengths, "b")
  if a.shape[2:] != b.shape[2:]:
    raise ValueError(f"a_tokens and b_tokens must have the same token shape, got "
                     f"{a.shape[2:]} and {b.shape[2:]}")
  na, nb = len(a), len(b)
  out = np.zeros((na, nb), np.int32)
  if na and nb:
    # Only the longest real sequence matters; at least one position keeps shapes non-empty.
    a, b = a[:, :max(1, int(la.max()))], b[:, :max(1, int(lb.max()))]
    ids_a, ids_b, num_ids = _token_ids(a, la, b, lb)
    pow2 = lambda x: 1 << max(0, x - 1).bit_length()  # fewer distinct shapes to compile
    cb = min(nb, 1024)
    ca = max(1, min(na, block_pairs // cb))
    # Peq has one row per token id. With many distinct tokens (multichannel or many-bit codes)
    # the rows are indexed by the ids of the a-block alone, and b's other tokens share one
    # all-zero row: they match nothing in this block anyway.
    table_rows = min(pow2(num_ids), pow2(ca * ids_a.shape[1] + 1))
    ids_a, la_p = _pad_rows(ids_a, -(-na // ca) * ca), _pad_rows(la, -(-na // ca) * ca)
    ids_b, lb_p = _pad_rows(ids_b, -(-nb // cb) * cb), _pad_rows(lb, -(-nb // cb) * cb)
    blocks = {}
    for i in range(0, na, ca):
      block_a, block_b = ids_a[i:i + ca], ids_b
      if table_rows < num_ids:
        local = np.full(num_ids, table_rows - 1, np.int32)
        present = np.unique(block_a)
        local[present] = np.arange(len(present), dtype=np.int32)
        block_a, block_b = local[block_a], local[ids_b]
      for j in range(0, nb, cb):
        blocks[i, j] = _levenshtein_block(block_a, la_p[i:i + ca], block_b[j:j + cb],
                                          lb_p[j:j + cb], num_ids=table_rows)
    for (i, j), block in blocks.items():  # dispatch is asynchronous: collect after queueing
      block = np.asarray(block)
      out[i:i + ca, j:j + cb] = block[:min(ca, na - i), :min(cb, nb - j)]
  if normalize:
    longer = np.maximum(np.maximum(la[:, None], lb[None, :]), 1)
    return out / longer
  return out


# ----------------------------------------------------------------------------------------------
# Linear probe: multinomial logistic regression with L2, full-batch L-BFGS in JAX.
# ----------------------------------------------------------------------------------------------

@functools.partial(jax.jit, static_argnames=("max_iter",))
def _fit_logistic(x, onehot, l2, tol, max_iter: int):
  """Minimises mean cross-entropy + l2 / 2 * ||W||^2 (bias unpenalised) from zero."""

  def loss(params):
    logits = x @ params["w"] + params["b"][None, :]
    ce = -jnp.mean(jnp.sum(onehot * jax.nn.log_softmax(logits, axis=-1), axis=-1))
    return ce + 0.5 * l2 * jnp.sum(jnp.square(params["w"]))

  opt = optax.lbfgs()
  value_and_grad = optax.value_and_grad_from_state(loss)

  def body(carry):
    params, state = carry
    value, grad = value_and_grad(params, state=state)
    updates, state = opt.update(grad, state, params, value=value, grad=grad, value_fn=loss)
    return optax.apply_updates(params, updates), state

  def keep_going(carry):
    _, state = carry
    count = optax.tree_utils.tree_get(state, "count")
    grad_norm = optax.tree_utils.tree_norm(optax.tree_utils.tree_get(state, "grad"))
    return (count == 0) | ((count < max_iter) & (grad_norm >= tol))

  params = {"w": jnp.zeros((x.shape[1], onehot.shape[1]), jnp.float32),
            "b": jnp.zeros((onehot.shape[1],), jnp.float32)}
  params, _ = jax.lax.while_loop(keep_going, body, (params, opt.init(params)))
  return params


def linear_probe_accuracy(train_features, train_labels, test_features, test_labels, *,
                          l2: float | None = None, tol: float = 1e-5,
                          max_iter: int = 500) -> float:
  """Test accuracy of a multinomial logistic regression trained on the train features.

  Features are standardised with the train mean and standard deviation (constant features
  become 0). The objective is mean cross-entropy + ``l2`` / 2 * ||W||^2 with an unpenalised
  bias, minimised from zero by full-batch L-BFGS (optax) until the gradient norm is below
  ``tol`` or ``max_iter`` iterations: deterministic. The default ``l2 = 1 / n_train`` is
  scikit-learn's ``LogisticRegression()`` default (C = 1).

  Args:
    train_features: (n_train, f) float features.
    train_labels: (n_train,) int labels.
    test_features: (n_test, f) float features.
    test_labels: (n_test,) int labels; labels absent from train count as errors.
    l2: L2 weight on the mean loss; None = 1 / n_train.
    tol: gradient-norm tolerance.
    max_iter: most L-BFGS iterations.

  Returns:
    Fraction of test series classified correctly.
  """
  x_train = np.asarray(train_features, np.float64)
  x_test = np.asarray(test_features, np.float64)
  if x_train.ndim != 2 or x_test.ndim != 2 or x_train.shape[1] != x_test.shape[1]:
    raise ValueError(f"train_features and test_features must be (n, f) with the same f, got "
                     f"{x_train.shape} and {x_test.shape}")
  y_train = _labels(train_labels, len(x_train), "train_labels")
  y_test = _labels(test_labels, len(x_test), "test_labels")
  if len(x_train) == 0:
    raise ValueError("train_features must hold at least one series")
  classes, y = np.unique(y_train, return_inverse=True)
  if len(classes) == 1:
    return float(np.mean(y_test == classes[0]))
  mean, std = x_train.mean(axis=0), x_train.std(axis=0)
  std = np.where(std > 1e-8 * np.maximum(np.abs(mean), 1.0), std, 1.0)
  standardise = lambda x: jnp.asarray((x - mean) / std, jnp.float32)
  onehot = jnp.asarray(np.eye(len(classes))[y], jnp.float32)
  l2 = 1.0 / len(x_train) if l2 is None else float(l2)
  params = _fit_logistic(standardise(x_train), onehot, jnp.float32(l2), jnp.float32(tol),
                         max_iter=int(max_iter))
  logits = np.asarray(standardise(x_test) @ params["w"] + params["b"][None, :])
  return float(np.mean(classes[np.argmax(logits, axis=1)] == y_test))


# ----------------------------------------------------------------------------------------------
# The baseline: 1-NN on the raw series.
# ----------------------------------------------------------------------------------------------

def _flat_series(series, mask, length: int, name: str) -> np.ndarray:
  series = np.asarray(series, np.float64)
  if series.ndim != 3:
    raise ValueError(f"{name}_series must have shape (n, T, C), got {series.shape}")
  keep = np.ones(series.shape[:2], bool) if mask is None else np.asarray(mask) > 0
  if keep.shape != series.shape[:2]:
    raise ValueError(f"{name}_mask must have shape (n, T) = {series.shape[:2]}, "
                     f"got {keep.shape}")
  series = np.where(keep[..., None], series, 0.0)
  series = np.pad(series, ((0, 0), (0, length - series.shape[1]), (0, 0)))
  return series.reshape(len(series), -1)


def raw_1nn_accuracy(train_series, train_mask, train_labels, test_series, test_mask,
                     test_labels) -> float:
  """1-NN accuracy with the Euclidean distance on the raw (normalised) series: UCR's baseline.

  Variable lengths are handled by zero-padding: samples outside the mask are set to 0 and both
  splits are padded at the end to their common length, so the distance compares the series
  sample by sample from their start and a missing tail counts as zeros (for z-normalised
  series, the mean). For equal-length sets this is exactly the classic 1-NN-ED.

  Args:
    train_series: (n_train, T, C) float series; train_mask: (n_train, T), 1 = real (or None).
    train_labels: (n_train,) int labels.
    test_series: (n_test, T2, C) float series; test_mask: (n_test, T2) (or None).
    test_labels: (n_test,) int labels.

  Returns:
    Fraction of test series whose nearest training series has their label (ties as in
    ``knn_predict``).
  """
  length = max(np.shape(train_series)[1], np.shape(test_series)[1])
  train = _flat_series(train_series, train_mask, length, "train")
  test = _flat_series(test_series, test_mask, length, "test")
  if train.shape[1] != test.shape[1]:
    raise ValueError(f"train and test series must have the same number of channels, got "
                     f"{np.shape(train_series)[2]} and {np.shape(test_series)[2]}")
  return knn_accuracy(euclidean_distances(test, train), train_labels, test_labels, k=1)


# ----------------------------------------------------------------------------------------------
# All three code probes at once.
# ----------------------------------------------------------------------------------------------

def classify_codes(train_codes, train_mask, train_quantized, train_labels,
                   test_codes, test_mask, test_quantized, test_labels,
                   vocab_size: CodeSpec | int, *, k: int = 1,
                   l2: float | None = None) -> dict[str, float]:
  """Test accuracies of the three code probes, trained on the train split.

  Args:
    train_codes: int (n, C, T', S) codes, -1 at padding; train_mask: (n, C, T') token mask.
    train_quantized: (n, C, T', d) quantized vectors, zero at padding.
    train_labels: (n,) int labels.
    test_codes, test_mask, test_quantized, test_labels: the same for the test split.
    vocab_size: entries per symbol, or the quantizer's ``CodeSpec``.
    k: neighbours of both kNN probes.
    l2: L2 weight of the linear probe (None = 1 / n_train, see ``linear_probe_accuracy``).

  Returns:
    - ``linear_probe``: logistic regression on ``pooled_embeddings``;
    - ``knn_histogram``: kNN, Euclidean distance between ``code_histograms``;
    - ``knn_levenshtein``: kNN, edit distance between ``code_sequences``, summed over
      channels: each channel is its own token sequence, as a channel-independent tokenizer
      (TOTEM) makes it. Tokens joining all channels almost never match once there are more
      than a few channels (BasicMotions, 6; JapaneseVowels, 12), and the distance then only
      counts lengths;
    - ``knn_levenshtein_normalized``: the same with each channel's distance divided by the
      longer length (identical to ``knn_levenshtein`` when all sequences have one length).
  """
  vocab = _vocab_size(vocab_size)
  histogram = euclidean_distances(code_histograms(test_codes, test_mask, vocab),
                                  code_histograms(train_codes, train_mask, vocab))
  test_codes, test_keep = _channels(test_codes, test_mask, "test_codes")
  train_codes, train_keep = _channels(train_codes, train_mask, "train_codes")
  edits = normalized = 0.0
  for c in range(test_codes.shape[1]):
    test_tokens, test_lengths = code_sequences(test_codes[:, c:c + 1], test_keep[:, c:c + 1])
    train_tokens, train_lengths = code_sequences(train_codes[:, c:c + 1],
                                                 train_keep[:, c:c + 1])
    channel = levenshtein_distances(test_tokens, test_lengths, train_tokens, train_lengths)
    longer = np.maximum(np.maximum(test_lengths[:, None], train_lengths[None, :]), 1)
    edits, normalized = edits + channel, normalized + channel / longer
  probe = linear_probe_accuracy(pooled_embeddings(train_quantized, train_mask), train_labels,
                                pooled_embeddings(test_quantized, test_mask), test_labels, l2=l2)
  return {
      "linear_probe": probe,
      "knn_histogram": knn_accuracy(histogram, train_labels, test_labels, k),
      "knn_levenshtein": knn_accuracy(edits, train_labels, test_labels, k),
      "knn_levenshtein_normalized": knn_accuracy(normalized, train_labels, test_labels, k),
  }

