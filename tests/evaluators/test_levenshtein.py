"""The JAX Levenshtein kernel against a plain-Python dynamic programme, and metric axioms."""

import itertools

import numpy as np
import pytest

from vqlearn.evaluators import probe


def edit_distance(a, b) -> int:
  """Wagner-Fischer: the textbook O(len(a) len(b)) table; tokens compared with ==."""
  previous = list(range(len(b) + 1))
  for i, x in enumerate(a, 1):
    current = [i]
    for j, y in enumerate(b, 1):
      current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
    previous = current
  return previous[-1]


def reference(a, la, b, lb):
  as_tokens = lambda seq, n: [tuple(np.ravel(t).tolist()) for t in seq[:n]]
  return np.array([[edit_distance(as_tokens(x, m), as_tokens(y, n)) for y, n in zip(b, lb)]
                   for x, m in zip(a, la)])


def random_sequences(rng, n, length, alphabet, token_shape=()):
  tokens = rng.integers(0, alphabet, (n, length) + token_shape)
  lengths = rng.integers(0, length + 1, n)
  lengths[0] = 0  # always one empty sequence
  lengths[-1] = length
  return tokens, lengths


@pytest.mark.parametrize("la_max,lb_max,alphabet", [(7, 9, 3), (70, 40, 4), (33, 66, 2),
                                                     (7, 9, 1000)])
def test_matches_python_dp_on_scalar_tokens(la_max, lb_max, alphabet):
  # Lengths cross the 32-bit word boundaries of the bit-parallel kernel (32, 64); the large
  # alphabet has more distinct tokens than one block of a holds (block-local token ids).
  rng = np.random.default_rng(la_max)
  a, la = random_sequences(rng, 6, la_max, alphabet)
  b, lb = random_sequences(rng, 5, lb_max, alphabet)
  got = probe.levenshtein_distances(a, la, b, lb)
  assert got.dtype == np.int32
  np.testing.assert_array_equal(got, reference(a, la, b, lb))


def test_vector_tokens_are_equal_only_when_all_entries_are():
  rng = np.random.default_rng(1)
  a, la = random_sequences(rng, 5, 12, 2, (2, 2))  # e.g. 2 channels x 2 bits per time step
  b, lb = random_sequences(rng, 4, 10, 2, (2, 2))
  np.testing.assert_array_equal(probe.levenshtein_distances(a, la, b, lb),
                                reference(a, la, b, lb))
  # One differing entry makes a substitution.
  x = np.zeros((1, 3, 4), int)
  y = x.copy()
  y[0, 1, 3] = 1
  assert probe.levenshtein_distances(x, [3], y, [3])[0, 0] == 1


def test_entries_past_the_length_are_ignored_and_blocks_agree():
  rng = np.random.default_rng(2)
  a, la = random_sequences(rng, 9, 20, 3)
  b, lb = random_sequences(rng, 7, 15, 3)
  whole = probe.levenshtein_distances(a, la, b, lb)
  garbage = a.copy()
  for row, n in zip(garbage, la):
    row[n:] = rng.integers(0, 50, len(row) - n)
  # Tiny blocks: several a-blocks, a padded last block, one compilation reused.
  np.testing.assert_array_equal(probe.levenshtein_distances(garbage, la, b, lb, block_pairs=8),
                                whole)


def test_empty_sets_and_empty_sequences():
  tokens = np.zeros((3, 4), np.int32)
  np.testing.assert_array_equal(probe.levenshtein_distances(tokens, [0, 0, 0], tokens[:2], [0, 2]),
                                [[0, 2]] * 3)
  assert probe.levenshtein_distances(tokens[:0], [], tokens, [1, 2, 3]).shape == (0, 3)
  np.testing.assert_array_equal(probe.levenshtein_distances(tokens, [0] * 3, tokens, [0] * 3), 0)


def test_metric_axioms_and_normalisation():
  rng = np.random.default_rng(3)
  x, lx = random_sequences(rng, 8, 12, 3)
  d = probe.levenshtein_distances(x, lx, x, lx)
  np.testing.assert_array_equal(d, d.T)
  np.testing.assert_array_equal(np.diag(d), 0)
  for i, j, k in itertools.product(range(8), repeat=3):
    assert d[i, k] <= d[i, j] + d[j, k]
  longer = np.maximum(lx[:, None], lx[None, :])
  assert np.all(d >= np.abs(lx[:, None] - lx[None, :])) and np.all(d <= longer)
  normalized = probe.levenshtein_distances(x, lx, x, lx, normalize=True)
  np.testing.assert_allclose(normalized, d / np.maximum(longer, 1))
  assert normalized[0, 0] == 0.0  # two empty sequences
  assert np.all((normalized >= 0) & (normalized <= 1))


def test_bad_arguments_name_the_field():
  tokens = np.zeros((2, 4), np.int32)
  with pytest.raises(ValueError, match="a_lengths"):
    probe.levenshtein_distances(tokens, [1, 5], tokens, [1, 1])
  with pytest.raises(ValueError, match="b_lengths"):
    probe.levenshtein_distances(tokens, [1, 1], tokens, [1])
  with pytest.raises(ValueError, match="token shape"):
    probe.levenshtein_distances(tokens, [1, 1], np.zeros((2, 4, 2), np.int32), [1, 1])
  with pytest.raises(ValueError, match="integer"):
    probe.levenshtein_distances(tokens.astype(float), [1, 1], tokens, [1, 1])
