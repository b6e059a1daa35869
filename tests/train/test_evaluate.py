"""Whole-token statistics of the trainer's evaluation, by hand."""

import numpy as np

from vqlearn.train.evaluate import token_statistics


def test_token_statistics_count_whole_tokens_and_skip_padding():
  # Tokens (0,1), (0,1), (1,0) are real; the padded fourth token must not count.
  codes = np.array([[[[0, 1], [0, 1], [1, 0], [-1, -1]]]])
  mask = np.array([[[1, 1, 1, 0]]])
  stats = token_statistics(codes, mask)
  p = np.array([2 / 3, 1 / 3])
  np.testing.assert_allclose(stats["token_perplexity"], np.exp(-np.sum(p * np.log(p))))
  assert stats["distinct_tokens"] == 2
  codes[0, 0, 2] = [0, 1]  # every real token the same
  assert token_statistics(codes, mask) == {"token_perplexity": 1.0, "distinct_tokens": 1.0}


def test_token_statistics_of_an_empty_set():
  assert token_statistics(np.zeros((1, 1, 2, 3), np.int32), np.zeros((1, 1, 2))) == {
      "token_perplexity": 0.0, "distinct_tokens": 0.0}
