"""Code probes against scikit-learn / scipy references and hand-derived values."""

import numpy as np
import pytest
from scipy.spatial.distance import cdist
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier

from vqlearn.evaluators import probe
from vqlearn.quantizers import CodeSpec


# ---------------------------------------------------------------------------------------------
# kNN
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("k,num_classes", [(1, 4), (3, 2), (5, 2)])
def test_knn_matches_sklearn(k, num_classes):
  # Odd k with two classes, or k = 1: no vote ties, so the plain kNN vote is defined.
  rng = np.random.default_rng(k)
  x_train, x_test = rng.normal(size=(40, 5)), rng.normal(size=(25, 5))
  y_train = rng.integers(0, num_classes, 40) * 3 + 1  # labels need not be 0..K-1
  y_test = rng.integers(0, num_classes, 25) * 3 + 1
  d = probe.euclidean_distances(x_test, x_train)
  np.testing.assert_allclose(d, cdist(x_test, x_train), atol=1e-9)
  sk = KNeighborsClassifier(n_neighbors=k, algorithm="brute").fit(x_train, y_train)
  np.testing.assert_array_equal(probe.knn_predict(d, y_train, k), sk.predict(x_test))
  assert probe.knn_accuracy(d, y_train, y_test, k) == pytest.approx(sk.score(x_test, y_test))


def test_knn_tie_rules_by_hand():
  # A tie at the k-th distance lets every tied series vote; then 1-1 -> smallest label.
  assert probe.knn_predict([[1.0, 1.0, 2.0]], [5, 3, 5], k=1)[0] == 3
  # A 1-1 vote goes to the class of the closest voter, not the smallest label.
  assert probe.knn_predict([[1.0, 2.0, 9.0]], [7, 4, 4], k=2)[0] == 7
  # Two equidistant voters of class 4 outvote the single nearest of class 7.
  assert probe.knn_predict([[1.0, 2.0, 2.0]], [7, 4, 4], k=2)[0] == 4


def test_knn_does_not_depend_on_training_order():
  rng = np.random.default_rng(0)
  d = rng.integers(0, 4, (30, 20)).astype(float)  # integer distances: many ties
  labels = rng.integers(0, 3, 20)
  perm = rng.permutation(20)
  for k in (1, 2, 3):
    np.testing.assert_array_equal(probe.knn_predict(d, labels, k),
                                  probe.knn_predict(d[:, perm], labels[perm], k))


def test_knn_bad_arguments():
  with pytest.raises(ValueError, match="k must"):
    probe.knn_predict(np.zeros((2, 3)), [0, 1, 0], k=4)
  with pytest.raises(ValueError, match="train_labels"):
    probe.knn_predict(np.zeros((2, 3)), [0, 1], k=1)
  with pytest.raises(ValueError, match="labelled"):
    probe.knn_accuracy(np.zeros((2, 3)), [0, 1, 0], [0, -1])


# ---------------------------------------------------------------------------------------------
# Features
# ---------------------------------------------------------------------------------------------

def test_code_histograms_by_hand():
  # One series, 2 channels, 3 tokens, 2 symbols, V = 3; channel 1's last token is padding.
  codes = np.array([[[[0, 2], [0, 1], [1, 2]],
                     [[2, 0], [2, 0], [1, 1]]]])
  mask = np.array([[[1, 1, 1], [1, 1, 0]]])
  hist = probe.code_histograms(codes, mask, CodeSpec(2, 3))
  expected = [2 / 3, 1 / 3, 0, 0, 1 / 3, 2 / 3,  # channel 0: symbol 0, symbol 1
              0, 0, 1, 1, 0, 0]  # channel 1, the padded token (1, 1) excluded
  np.testing.assert_allclose(hist, [expected], rtol=1e-6)
  with pytest.raises(ValueError, match=r"\[0, 2\)"):
    probe.code_histograms(codes, mask, 2)


def test_code_sequences_compact_real_steps_and_pooled_means():
  # Channels 0 and 1; step 1 is padding in both, step 2 only in channel 1.
  codes = np.array([[[[1], [-1], [3], [4]],
                     [[5], [-1], [-1], [6]]]])
  mask = np.array([[[1, 0, 1, 1], [1, 0, 0, 1]]])
  tokens, lengths = probe.code_sequences(codes, mask)
  np.testing.assert_array_equal(lengths, [3])
  np.testing.assert_array_equal(tokens[0, :3], [[1, 5], [3, -1], [4, 6]])
  quantized = np.arange(8, dtype=np.float32).reshape(1, 2, 4, 1) * mask[..., None]
  np.testing.assert_allclose(probe.pooled_embeddings(quantized, mask),
                             [[(0 + 2 + 3) / 3, (4 + 7) / 2]])


# ---------------------------------------------------------------------------------------------
# Linear probe and raw 1-NN
# ---------------------------------------------------------------------------------------------

def blobs(rng, n, means, scale):
  labels = rng.integers(0, len(means), n)
  return means[labels] + scale * rng.normal(size=(n, means.shape[1])), labels


def test_linear_probe_near_sklearn_logistic_regression():
  rng = np.random.default_rng(0)
  means = rng.normal(size=(3, 6)) * 1.5 + 4.0  # offset: standardisation matters
  x_train, y_train = blobs(rng, 120, means, 1.5)
  x_test, y_test = blobs(rng, 200, means, 1.5)
  ours = probe.linear_probe_accuracy(x_train, y_train, x_test, y_test)
  mean, std = x_train.mean(0), x_train.std(0)
  sk = LogisticRegression(C=1.0, tol=1e-8, max_iter=2000).fit((x_train - mean) / std, y_train)
  reference = sk.score((x_test - mean) / std, y_test)
  assert 0.5 < reference < 1.0  # a problem with errors, so agreement means something
  assert ours == pytest.approx(reference, abs=0.011)
  # Same objective (C = 1 <-> l2 = 1 / n, unpenalised bias), so the same weights.
  params = probe._fit_logistic(((x_train - mean) / std).astype(np.float32),
                               np.eye(3, dtype=np.float32)[y_train], np.float32(1 / 120),
                               np.float32(1e-5), max_iter=500)
  np.testing.assert_allclose(np.asarray(params["w"]).T, sk.coef_, atol=1e-3)


def test_linear_probe_trivially_separable_and_degenerate_labels():
  rng = np.random.default_rng(1)
  means = np.array([[0.0, 0.0, 0.0], [10.0, 0.0, 0.0], [0.0, 10.0, 0.0]])
  x_train, y_train = blobs(rng, 30, means, 0.1)
  x_test, y_test = blobs(rng, 30, means, 0.1)
  constant = np.ones((30, 1))  # a constant feature must not produce NaN
  x_train, x_test = np.hstack([x_train, constant]), np.hstack([x_test, constant])
  assert probe.linear_probe_accuracy(x_train, y_train, x_test, y_test) == 1.0
  # A test label never seen in training counts as an error.
  assert probe.linear_probe_accuracy(x_train, y_train, x_test, np.full(30, 9)) == 0.0
  # One training class predicts that class.
  assert probe.linear_probe_accuracy(x_train, np.zeros(30, int), x_test, y_test) == \
      pytest.approx(np.mean(y_test == 0))


def test_raw_1nn_matches_sklearn_with_zero_padding():
  rng = np.random.default_rng(2)
  train, test = rng.normal(size=(30, 12, 2)), rng.normal(size=(20, 9, 2))
  y_train, y_test = rng.integers(0, 3, 30), rng.integers(0, 3, 20)
  train_mask = (np.arange(12)[None, :] < rng.integers(5, 13, 30)[:, None]).astype(np.float32)
  test_mask = (np.arange(9)[None, :] < rng.integers(5, 10, 20)[:, None]).astype(np.float32)
  train[train_mask == 0] = 1e6  # whatever sits in the padding must not count
  padded_train = np.where(train_mask[..., None] > 0, train, 0).reshape(30, -1)
  padded_test = np.pad(np.where(test_mask[..., None] > 0, test, 0),
                       ((0, 0), (0, 3), (0, 0))).reshape(20, -1)
  sk = KNeighborsClassifier(n_neighbors=1, algorithm="brute").fit(padded_train, y_train)
  ours = probe.raw_1nn_accuracy(train, train_mask, y_train, test, test_mask, y_test)
  assert ours == pytest.approx(sk.score(padded_test, y_test))
  # A test set made of training series is classified perfectly.
  assert probe.raw_1nn_accuracy(train, train_mask, y_train, train[:10], train_mask[:10],
                                y_train[:10]) == 1.0


# ---------------------------------------------------------------------------------------------
# classify_codes
# ---------------------------------------------------------------------------------------------

def ordered_codes(labels, length=6):
  """Class 0: first half code 0 then code 1; class 1 the reverse. Same histogram, other order."""
  half = np.repeat([0, 1], length // 2)
  seq = np.where(np.asarray(labels)[:, None] == 0, half[None, :], half[::-1][None, :])
  codes = seq[:, None, :, None]  # (n, C=1, T', S=1)
  quantized = np.stack([codes[..., 0] == 0, codes[..., 0] == 1], -1).astype(np.float32)
  return codes, np.ones(codes.shape[:3]), quantized


def test_classify_codes_sees_order_that_histograms_miss():
  train_labels, test_labels = np.array([0, 1] * 4), np.array([0, 1] * 3)
  train_codes, train_mask, train_q = ordered_codes(train_labels)
  test_codes, test_mask, test_q = ordered_codes(test_labels)
  scores = probe.classify_codes(train_codes, train_mask, train_q, train_labels,
                                test_codes, test_mask, test_q, test_labels, vocab_size=2)
  assert scores["knn_levenshtein"] == 1.0
  assert scores["knn_levenshtein_normalized"] == 1.0
  # Identical histograms: every training series ties, the vote ties, the smallest label wins.
  assert scores["knn_histogram"] == 0.5
  # Pooled vectors are identical as well, so the probe cannot beat chance either.
  assert scores["linear_probe"] <= 0.5


def test_classify_codes_on_separable_codes_with_padding():
  rng = np.random.default_rng(3)
  labels = np.array([0, 1, 2] * 4)
  codes = np.repeat(labels[:, None, None, None] * 2 + rng.integers(0, 2, (12, 2, 5, 1)), 2, -1)
  mask = (np.arange(5)[None, None, :] < rng.integers(2, 6, 12)[:, None, None]).astype(float)
  mask = np.broadcast_to(mask, codes.shape[:3])
  codes = np.where(mask[..., None] > 0, codes, -1)
  quantized = np.eye(6, dtype=np.float32)[np.clip(codes[..., 0], 0, 5)] * mask[..., None]
  scores = probe.classify_codes(codes[:6], mask[:6], quantized[:6], labels[:6],
                                codes[6:], mask[6:], quantized[6:], labels[6:],
                                CodeSpec(2, 6), k=1)
  assert scores == {"linear_probe": 1.0, "knn_histogram": 1.0, "knn_levenshtein": 1.0,
                    "knn_levenshtein_normalized": 1.0}


def test_classify_codes_levenshtein_compares_channels_separately():
  """Channel 0 carries the class (all code 0 or all code 1); three channels carry noise from a
  large vocabulary. Tokens joining all four channels would never match, so a joint edit
  distance would be 6 for every pair; summed per-channel distances separate the classes."""
  rng = np.random.default_rng(0)
  labels = np.array([0, 1] * 6)
  codes = rng.integers(2, 1000, (12, 4, 6, 1))
  codes[:, 0] = labels[:, None, None]
  mask = np.ones(codes.shape[:3])
  quantized = np.zeros(codes.shape[:3] + (2,), np.float32)
  scores = probe.classify_codes(codes[:8], mask[:8], quantized[:8], labels[:8],
                                codes[8:], mask[8:], quantized[8:], labels[8:], vocab_size=1000)
  assert scores["knn_levenshtein"] == 1.0
  assert scores["knn_levenshtein_normalized"] == 1.0
  joint_test, joint_test_len = probe.code_sequences(codes[8:], mask[8:])
  joint_train, joint_train_len = probe.code_sequences(codes[:8], mask[:8])
  joint = probe.levenshtein_distances(joint_test, joint_test_len, joint_train, joint_train_len)
  assert (joint == 6).all()
