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


def test_evaluation_scores_whole_multichannel_series(data_dir):
  from configs import timeseries
  from vqlearn import data
  from vqlearn.train.evaluate import component_configs

  config = timeseries.get_config("dataset=BasicMotions+GunPoint")
  config.data.dir = data_dir
  assert config.data.split_channels  # training sees univariate channels (TOTEM)
  basic_motions, gun_point = component_configs(config.data)
  assert (basic_motions.name, gun_point.name) == ("BasicMotions", "GunPoint")
  test = data.load_split(basic_motions, "test", pad_multiple=4)
  assert test.series.shape[0] == 40 and test.series.shape[2] == 6  # 40 series of 6 channels
