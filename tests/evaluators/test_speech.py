"""Speech evaluators against hand-derived values and reference implementations."""

import math

import numpy as np
import pytest
from sklearn.metrics import normalized_mutual_info_score

from vqlearn.evaluators import speech


def naive_dtw(a, b):
  """The textbook O(nm) recurrence with Euclidean frame costs."""
  d = np.full((len(a) + 1, len(b) + 1), np.inf)
  d[0, 0] = 0.0
  for i in range(len(a)):
    for j in range(len(b)):
      cost = np.linalg.norm(a[i] - b[j])
      d[i + 1, j + 1] = cost + min(d[i, j], d[i, j + 1], d[i + 1, j])
  return d[-1, -1]


def test_dtw_matches_the_textbook_recurrence_on_variable_lengths():
  rng = np.random.default_rng(0)
  a, b = rng.normal(size=(5, 20, 3)), rng.normal(size=(4, 23, 3))
  la, lb = np.array([20, 3, 1, 17, 9]), np.array([23, 2, 18, 1])
  a_mask = np.arange(20)[None] < la[:, None]
  b_mask = np.arange(23)[None] < lb[:, None]
  got = speech.dtw_distances(a, a_mask, b, b_mask, block=2, bucket=8)
  expected = [[naive_dtw(a[i, :la[i]], b[j, :lb[j]]) for j in range(4)] for i in range(5)]
  np.testing.assert_allclose(got, expected, rtol=1e-5)
  # A time-stretched copy is at distance 0: DTW's reason to exist.
  stretched = np.repeat(a[:1, :10], 2, axis=1)
  assert speech.dtw_distances(a[:1, :10], None, stretched, None)[0, 0] == pytest.approx(0, abs=1e-4)


def test_dtw_1nn_classifies_by_the_nearest_warped_template():
  t = np.linspace(0, 1, 30)
  templates = np.stack([np.sin(2 * np.pi * t), np.cos(2 * np.pi * t)])[..., None]
  test = np.stack([np.sin(2 * np.pi * t ** 1.3), np.cos(2 * np.pi * t ** 0.8)])[..., None]
  assert speech.dtw_1nn_accuracy(templates, None, [0, 1], test, None, [0, 1]) == 1.0


def test_snr_is_the_ratio_of_powers_in_decibels():
  x = np.ones((2, 100, 1))
  noise = np.zeros_like(x)
  noise[0, ::2], noise[1, ::4] = 0.1, 1.0  # powers 0.005 and 0.25 against 1
  mask = np.ones((2, 100))
  expected = (10 * math.log10(1 / 0.005) + 10 * math.log10(1 / 0.25)) / 2
  assert speech.snr_db(x, x + noise, mask) == pytest.approx(expected)
  mask[1, 50:] = 0  # padding is ignored: clip 1 keeps 13 noisy samples of its first 50
  y = x + noise
  y[1, 50:] = 1e6
  expected = (10 * math.log10(1 / 0.005) + 10 * math.log10(50 / 13)) / 2
  assert speech.snr_db(x, y, mask) == pytest.approx(expected)


def test_mel_filters_peak_at_one_on_the_mel_grid_and_log_mel_distance():
  bank = speech.mel_filterbank(16000, 8192, 40)  # fine bins: each peak lands near its centre
  assert bank.shape == (4097, 40) and bank.max() <= 1.0 and (bank.max(axis=0) > 0.9).all()
  centres = np.argmax(bank, axis=0)
  assert (np.diff(centres) >= 0).all() and (np.diff(centres[-5:]) > np.diff(centres[:5])).all()
  rng = np.random.default_rng(1)
  x = rng.normal(size=(2, 4000)).astype(np.float32)
  mask = np.ones((2, 4000))
  assert speech.log_mel_distance(x, x, mask, 16000) == 0.0
  # Scaling by a multiplies every mel energy by a^2: distance |2 log a| (up to the floor).
  assert speech.log_mel_distance(x, 3 * x, mask, 16000) == pytest.approx(2 * math.log(3), rel=1e-3)


def test_nmi_purity_against_scikit_learn_and_hand_counts():
  codes = np.array([[[0], [0], [1], [-1]], [[1], [2], [2], [2]], [[0], [3], [-1], [-1]]])
  mask = codes[..., 0] >= 0
  labels = np.array([0, 1, 0])
  got = speech.nmi_purity(codes, mask, labels)
  units = [0, 0, 1, 1, 2, 2, 2, 0, 3]
  frame_labels = [0, 0, 0, 1, 1, 1, 1, 0, 0]
  assert got["nmi"] == pytest.approx(normalized_mutual_info_score(frame_labels, units))
  # unit 0: 3 frames all label 0; unit 1: one of each; unit 2: 3 of label 1; unit 3: one.
  assert got["purity"] == pytest.approx((3 + 1 + 3 + 1) / 9)
  perfect = speech.nmi_purity(np.array([[[0], [0]], [[1], [1]]]), None, np.array([0, 1]))
  assert perfect == {"purity": 1.0, "nmi": pytest.approx(1.0), "label_mi": pytest.approx(1.0)}


def test_group_pairs_form_one_unit():
  codes = np.array([[[0, 1], [1, 0], [0, 1]]])
  assert speech.unit_ids(codes, None).tolist() == [0, 1, 0]


def test_group_perplexities_of_uniform_and_degenerate_use():
  codes = np.stack([np.arange(8) % 4, np.zeros(8, int)], axis=-1)[None]  # (1, 8, 2)
  probs = np.full((8, 2, 4), 0.25)
  got = speech.group_perplexities(codes, None, 4, prob_sums=probs.sum(axis=0))
  assert got["code_perplexity/0"] == pytest.approx(4.0)
  assert got["code_perplexity/1"] == pytest.approx(1.0)
  assert got["prob_perplexity/0"] == pytest.approx(4.0)


def test_soft_units_pool_to_the_expected_histogram():
  probs = np.zeros((1, 3, 1, 2))
  probs[0, :, 0, 0] = [1.0, 0.5, 0.0]
  probs[0, :, 0, 1] = [0.0, 0.5, 1.0]
  mask = np.array([[1, 1, 0]])
  np.testing.assert_allclose(speech.soft_unit_features(probs, mask), [[0.75, 0.25]])
