"""Codebook health over a set, by hand and against the batch metrics."""

import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import entropy

from vqlearn.evaluators import codebook
from vqlearn.quantizers import CodeSpec, metrics

# Two series, one channel, three tokens, two symbols, V = 4; the last token of series 1 is
# padding and holds codes that would change every statistic if counted.
CODES = np.array([[[[0, 1], [0, 1], [2, 1]]],
                  [[[3, 0], [0, 1], [3, 3]]]])
MASK = np.array([[[1, 1, 1]], [[1, 1, 0]]])


def test_counts_exclude_padding():
  counts = codebook.code_counts_per_symbol(CODES, MASK, 4)
  np.testing.assert_array_equal(counts, [[3, 0, 1, 1], [1, 4, 0, 0]])
  # The batch metrics' counter agrees on the flattened tokens.
  flat = metrics.code_counts(jnp.asarray(CODES.reshape(-1, 2)), jnp.asarray(MASK.reshape(-1)),
                             4, None)
  np.testing.assert_array_equal(flat, counts)


def test_health_by_hand():
  health = codebook.codebook_health(CODES, MASK, CodeSpec(2, 4))
  p0, p1 = np.array([3, 0, 1, 1]) / 5, np.array([1, 4, 0, 0]) / 5
  assert health["perplexity"] == pytest.approx(np.exp(entropy(p0)) + np.exp(entropy(p1)),
                                               rel=1e-5)
  assert health["entropy_bits"] == pytest.approx(entropy(p0, base=2) + entropy(p1, base=2))
  assert health["usage"] == pytest.approx(5 / 8)
  assert health["dead_codes"] == 3
  assert health["max_code_ratio"] == pytest.approx((3 / 5 + 4 / 5) / 2)
  assert health["bits_per_token"] == 4
  assert health["num_tokens"] == 5


def test_uniform_codes_reach_the_maximum():
  # Binary quantizer: 3 bits per token, every bit balanced over the set.
  bits = np.array([[[[0, 0, 1], [1, 1, 0]]], [[[0, 1, 0], [1, 0, 1]]]])
  health = codebook.codebook_health(bits, np.ones(bits.shape[:3]), 2)
  assert health["perplexity"] == pytest.approx(3 * 2, rel=1e-5)
  assert health["entropy_bits"] == pytest.approx(3.0)
  assert health["usage"] == 1.0 and health["dead_codes"] == 0
  assert health["max_code_ratio"] == pytest.approx(0.5)


def test_bad_codes_are_reported():
  with pytest.raises(ValueError, match=r"\[0, 3\)"):
    codebook.codebook_health(CODES, MASK, 3)
  with pytest.raises(ValueError, match="symbols"):
    codebook.codebook_health(CODES, MASK, CodeSpec(3, 4))
  with pytest.raises(ValueError, match="mask"):
    codebook.codebook_health(CODES, MASK[:, :, :2], 4)
  # Padding holds -1; a mask that calls it real is caught.
  padded = np.where(MASK[..., None] > 0, CODES, -1)
  with pytest.raises(ValueError, match="real tokens"):
    codebook.codebook_health(padded, np.ones(MASK.shape), 4)


def test_token_statistics_count_whole_tokens_and_skip_padding():
  # Tokens (0,1), (0,1), (1,0) are real; the padded fourth token must not count.
  codes = np.array([[[[0, 1], [0, 1], [1, 0], [-1, -1]]]])
  mask = np.array([[[1, 1, 1, 0]]])
  stats = codebook.token_statistics(codes, mask)
  p = np.array([2 / 3, 1 / 3])
  np.testing.assert_allclose(stats["token_perplexity"], np.exp(-np.sum(p * np.log(p))))
  assert stats["distinct_tokens"] == 2
  codes[0, 0, 2] = [0, 1]  # every real token the same
  assert codebook.token_statistics(codes, mask) == {"token_perplexity": 1.0, "distinct_tokens": 1.0}


def test_token_statistics_of_an_empty_set():
  assert codebook.token_statistics(np.zeros((1, 1, 2, 3), np.int32), np.zeros((1, 1, 2))) == {
      "token_perplexity": 0.0, "distinct_tokens": 0.0}
