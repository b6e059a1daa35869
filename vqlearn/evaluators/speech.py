"""Speech evaluators: reconstruction (SNR, log-mel distance), units without labels (NMI,
purity), per-group code and soft-unit perplexity, and the classic DTW 1-NN baseline.

Shapes: waveforms ``(n, T)`` or ``(n, T, 1)`` with a sample mask ``(n, T)``; frame features
``(n, T, F)`` with a frame mask; codes ``(n, T', S)`` (-1 at padding) with a token mask
``(n, T')``; soft units (``QuantizerOutput.probs``) ``(n, T', S, V)``. The code classifiers
(kNN with Levenshtein distance, kNN on histograms, linear probe) are ``vqlearn.evaluators.probe``'s.
Everything returns Python floats; the DTW kernel is jitted JAX, the rest numpy.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from vqlearn.evaluators import codebook, probe

LOG_FLOOR = 1e-5  # added to mel energies before the log (HiFi-GAN's clamp)


def _waveforms(x, name: str) -> np.ndarray:
  x = np.asarray(x, np.float64)
  if x.ndim == 3 and x.shape[-1] == 1:
    x = x[..., 0]
  if x.ndim != 2:
    raise ValueError(f"{name} must be waveforms (n, T) or (n, T, 1), got shape {x.shape}")
  return x


def _mask(mask, shape, name: str = "mask") -> np.ndarray:
  keep = np.ones(shape, bool) if mask is None else np.asarray(mask) > 0
  if keep.shape != tuple(shape):
    raise ValueError(f"{name} must have shape {tuple(shape)}, got {keep.shape}")
  return keep


# ----------------------------------------------------------------------------------------------
# Reconstruction.
# ----------------------------------------------------------------------------------------------

def snr_db(target, reconstruction, mask=None) -> float:
  """Mean over clips of 10 log10(sum x^2 / sum (x - x_hat)^2) over each clip's real samples.

  A clip reconstructed exactly counts as +inf, so the mean is inf only if one is perfect.
  """
  x, y = _waveforms(target, "target"), _waveforms(reconstruction, "reconstruction")
  if x.shape != y.shape:
    raise ValueError(f"reconstruction must have target's shape {x.shape}, got {y.shape}")
  keep = _mask(mask, x.shape)
  signal = np.sum(np.where(keep, x * x, 0.0), axis=1)
  noise = np.sum(np.where(keep, (x - y) ** 2, 0.0), axis=1)
  with np.errstate(divide="ignore"):
    return float(np.mean(10.0 * np.log10(signal / noise)))


def mel_filterbank(rate: int, fft: int, bands: int) -> np.ndarray:
  """(fft // 2 + 1, bands) triangular filters, equally spaced on the HTK mel scale
  m = 2595 log10(1 + f / 700) from 0 Hz to rate / 2, each with a peak of 1."""
  to_mel = lambda f: 2595.0 * np.log10(1.0 + f / 700.0)
  to_hz = lambda m: 700.0 * (10.0 ** (m / 2595.0) - 1.0)
  edges = to_hz(np.linspace(0.0, to_mel(rate / 2.0), bands + 2))
  freqs = np.linspace(0.0, rate / 2.0, fft // 2 + 1)
  lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]
  rising = (freqs[:, None] - lower[None]) / (centre - lower)[None]
  falling = (upper[None] - freqs[:, None]) / (upper - centre)[None]
  return np.maximum(0.0, np.minimum(rising, falling))


def log_mel(waveforms, mask, rate: int, *, window: float = 0.025, hop: float = 0.010,
            bands: int = 80) -> tuple[np.ndarray, np.ndarray]:
  """Log mel energies of each clip (Hann window, frames starting every ``hop`` seconds).

  Args:
    waveforms: (n, T) or (n, T, 1); mask: (n, T), 1 = real sample.
    rate: samples per second.
    window, hop: seconds.
    bands: mel bands.

  Returns:
    (log_mel float32 (n, frames, bands), frame mask (n, frames)): a frame is real when it
    starts at a real sample. Padded samples are zeroed first.
  """
  x = _waveforms(waveforms, "waveforms")
  keep = _mask(mask, x.shape)
  win, step = int(round(window * rate)), int(round(hop * rate))
  fft = 1 << (win - 1).bit_length()
  x = np.pad(np.where(keep, x, 0.0).astype(np.float32), ((0, 0), (0, win)))
  frames = (x.shape[1] - win) // step
  windows = np.lib.stride_tricks.sliding_window_view(x, win, axis=1)[:, :frames * step:step]
  hann = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win) / win)).astype(np.float32)
  spectrum = np.fft.rfft(windows * hann, n=fft, axis=-1)
  power = (spectrum.real ** 2 + spectrum.imag ** 2).astype(np.float32)
  mel = power @ mel_filterbank(rate, fft, bands).astype(np.float32)
  frame_mask = keep[:, np.minimum(np.arange(frames) * step, keep.shape[1] - 1)]
  return np.log(mel + LOG_FLOOR).astype(np.float32), frame_mask.astype(np.float32)


def log_mel_distance(target, reconstruction, mask, rate: int) -> float:
  """Mean |log mel(x) - log mel(x_hat)| over real frames and 80 bands (25 ms / 10 ms)."""
  a, frame_mask = log_mel(target, mask, rate)
  b, _ = log_mel(reconstruction, mask, rate)
  real = frame_mask > 0
  return float(np.mean(np.abs(a[real] - b[real])))


# ----------------------------------------------------------------------------------------------
# Units: NMI and purity against labels, per-group perplexities.
# ----------------------------------------------------------------------------------------------

def unit_ids(codes, mask) -> np.ndarray:
  """Each real token's symbols joined into one unit id (mixed radix), as in vq-wav2vec where
  a token is the pair of group codes. Returns int64 (number of real tokens,)."""
  real = codebook.real_codes(codes, mask)
  return np.unique(real, axis=0, return_inverse=True)[1].reshape(-1)


def nmi_purity(codes, mask, labels) -> dict[str, float]:
  """How well frame units align with utterance labels, without training anything.

  Every real token takes its utterance's label. ``purity`` = sum_u max_y n(u, y) / N;
  ``nmi`` = 2 I(U; Y) / (H(U) + H(Y)) (scikit-learn's arithmetic normalisation);
  ``label_mi`` = I(U; Y) / H(Y), HuBERT's "phone-normalised MI" with labels for phones.

  Args:
    codes: (n, T', S), -1 at padding; mask: (n, T'), 1 = real token.
    labels: (n,) int labels >= 0.
  """
  codes = np.asarray(codes)
  keep = _mask(mask, codes.shape[:-1])
  labels = np.asarray(labels).reshape(-1)
  if labels.shape[0] != codes.shape[0] or (labels.size and labels.min() < 0):
    raise ValueError(f"labels must be ({codes.shape[0]},) ints >= 0, got shape "
                     f"{labels.shape} (min {labels.min() if labels.size else None})")
  units = unit_ids(codes, keep)
  y = np.unique(np.broadcast_to(labels[:, None], keep.shape)[keep], return_inverse=True)[1]
  joint = np.zeros((units.max(initial=-1) + 1, y.max(initial=-1) + 1))
  np.add.at(joint, (units, y), 1.0)
  n = joint.sum()
  if n == 0:
    raise ValueError("no real tokens to score")
  p = joint / n
  pu, py = p.sum(axis=1), p.sum(axis=0)
  entropy = lambda q: float(-np.sum(q[q > 0] * np.log(q[q > 0])))
  nz = p > 0
  mi = float(np.sum(p[nz] * np.log(p[nz] / (pu[:, None] * py[None, :])[nz])))
  hu, hy = entropy(pu), entropy(py)
  return {"purity": float(joint.max(axis=1).sum() / n),
          "nmi": 2.0 * mi / (hu + hy) if hu + hy > 0 else 1.0,
          "label_mi": mi / hy if hy > 0 else 1.0}


def _perplexity(frequencies: np.ndarray) -> float:
  p = frequencies / max(frequencies.sum(), 1e-30)
  return float(np.exp(-np.sum(p[p > 0] * np.log(p[p > 0]))))


def group_perplexities(codes, mask, vocab_size: int, prob_sums=None) -> dict[str, float]:
  """Per group g: ``code_perplexity/g`` = exp(H(mean one-hot)) over real tokens and, given
  ``prob_sums`` (S, V) = the soft assignments (``probs``) summed over real tokens,
  ``prob_perplexity/g`` = exp(H(mean softmax)): fairseq's two perplexities, masked. Summed over
  groups they are the quantizers' batch metrics ``perplexity`` and ``prob_perplexity``."""
  counts = codebook.code_counts_per_symbol(codes, mask, vocab_size)  # (S, V)
  out = {f"code_perplexity/{g}": _perplexity(c) for g, c in enumerate(counts)}
  if prob_sums is not None:
    out.update({f"prob_perplexity/{g}": _perplexity(np.asarray(m, np.float64))
                for g, m in enumerate(prob_sums)})
  return out


def soft_unit_features(probs, mask) -> np.ndarray:
  """Utterance features from soft units: the mean probability vector over real frames, the
  expected code histogram (the soft counterpart of ``probe.code_histograms``), (n, S * V)."""
  probs = np.asarray(probs, np.float64)
  keep = _mask(mask, probs.shape[:2]).astype(np.float64)
  sums = np.einsum("nt,ntsv->nsv", keep, probs)
  return (sums / np.maximum(keep.sum(axis=1), 1.0)[:, None, None]).reshape(len(probs), -1)


def classify_soft_units(train_features, train_labels, test_features, test_labels, *,
                        k: int = 1) -> dict[str, float]:
  """Soft units scored as hard ones are: kNN on (expected) histograms and a linear probe on
  them (features from ``soft_unit_features``). Levenshtein has no soft counterpart."""
  distances = probe.euclidean_distances(test_features, train_features)
  return {"soft_knn_histogram": probe.knn_accuracy(distances, train_labels, test_labels, k),
          "soft_linear_probe": probe.linear_probe_accuracy(train_features, train_labels,
                                                           test_features, test_labels)}


# ----------------------------------------------------------------------------------------------
# Dynamic time warping 1-NN: the classic template-matching baseline for spoken digits.
# ----------------------------------------------------------------------------------------------

@jax.jit
def _dtw_block(a, a_len, b, b_len):
  """DTW with Euclidean frame costs between every a (Pa, T1, F) and b (Pb, T2, F): (Pa, Pb).

  Row recurrence D[i, j] = c[i, j] + min(D[i-1, j-1], D[i-1, j], D[i, j-1]) with D[-1, -1] = 0
  and inf elsewhere outside the grid (Sakoe & Chiba 1978, symmetric steps, no window). With
  A[j] = c[i, j] + min(D[i-1, j-1], D[i-1, j]) and C = cumsum_j c[i, :], unrolling the
  D[i, j-1] term gives D[i, :] = C + cummin(A - C): one vector step per frame of a. Frames
  past a pair's lengths never reach D[len_a - 1, len_b - 1], so padding needs no masking.
  """
  big = jnp.float32(1e30)
  b_sq = jnp.sum(b * b, axis=-1)  # (Pb, T2)
  last_b = (b_len - 1)[None, :, None]

  def row(carry, inputs):
    previous, corner, result = carry
    i, a_i = inputs
    sq = (jnp.sum(a_i * a_i, -1)[:, None, None] + b_sq[None]
          - 2 * jnp.einsum("pf,qtf->pqt", a_i, b, precision=jax.lax.Precision.HIGHEST))
    cost = jnp.sqrt(jnp.maximum(sq, 0.0))  # (Pa, Pb, T2)
    diagonal = jnp.concatenate([jnp.broadcast_to(corner, previous[..., :1].shape),
                                previous[..., :-1]], axis=-1)
    step = cost + jnp.minimum(diagonal, previous)
    cumulative = jnp.cumsum(cost, axis=-1)
    current = cumulative + jax.lax.cummin(step - cumulative, axis=2)
    ends = jnp.take_along_axis(current, jnp.broadcast_to(last_b, current.shape[:2] + (1,)),
                               axis=2)[..., 0]
    result = jnp.where((a_len - 1 == i)[:, None], ends, result)
    return (current, big, result), None

  shape = (a.shape[0], b.shape[0])
  init = (jnp.full(shape + (b.shape[1],), big), jnp.float32(0.0), jnp.zeros(shape, jnp.float32))
  (_, _, result), _ = jax.lax.scan(row, init, (jnp.arange(a.shape[1]), jnp.swapaxes(a, 0, 1)))
  return result


def _round_up(n: int, multiple: int) -> int:
  return -(-n // multiple) * multiple


def dtw_distances(a, a_mask, b, b_mask, *, block: int = 32, bucket: int = 16) -> np.ndarray:
  """(na, nb) DTW distances between variable-length sequences of frames.

  Sequences are grouped by length (rounded up to ``bucket`` frames), so short pairs are not
  computed at the longest length: spoken digits vary 5x in length.

  Args:
    a: (na, T1, F) float frames; a_mask: (na, T1), 1 = real (real frames first).
    b: (nb, T2, F); b_mask: (nb, T2).
    block: rows of a per kernel call (memory is block * nb * T2 floats).
    bucket: length granularity of the groups (each group shape compiles once).
  """
  a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
  if a.ndim != 3 or b.ndim != 3 or a.shape[2] != b.shape[2]:
    raise ValueError(f"a and b must be (n, T, F) with the same F, got {a.shape} and {b.shape}")
  la = _mask(a_mask, a.shape[:2], "a_mask").sum(axis=1).astype(np.int32)
  lb = _mask(b_mask, b.shape[:2], "b_mask").sum(axis=1).astype(np.int32)
  if (la < 1).any() or (lb < 1).any():
    raise ValueError("every sequence needs at least one real frame")
  out = np.zeros((len(a), len(b)), np.float32)
  b_groups = [np.flatnonzero(_round_up(lb, bucket) == t) for t in np.unique(_round_up(lb, bucket))]
  a_order = np.argsort(la, kind="stable")
  for start in range(0, len(a), block):
    rows = a_order[start:start + block]
    t1 = min(_round_up(int(la[rows].max()), bucket), a.shape[1])
    chunk, lengths = a[rows, :t1], la[rows]
    real = len(rows)
    if real < block:  # one compiled shape per length for every block
      chunk = np.concatenate([chunk, np.zeros((block - real,) + chunk.shape[1:], np.float32)])
      lengths = np.concatenate([lengths, np.ones((block - real,), np.int32)])
    for group in b_groups:
      t2 = min(_round_up(int(lb[group].max()), bucket), b.shape[1])
      d = _dtw_block(chunk, lengths, b[group, :t2], lb[group])
      out[np.ix_(rows, group)] = np.asarray(d)[:real]
  return out


def dtw_1nn_accuracy(train_series, train_mask, train_labels, test_series, test_mask,
                     test_labels) -> float:
  """1-NN accuracy under DTW on raw frame features: the template-matching baseline for
  isolated words (ties as in ``probe.knn_predict``)."""
  distances = dtw_distances(test_series, test_mask, train_series, train_mask)
  return probe.knn_accuracy(distances, train_labels, test_labels, k=1)
