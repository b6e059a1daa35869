"""Graph evaluators: filtered ranks by hand, ranking metrics, soft codes, the MLPs, probes."""

import numpy as np
import pytest

from vqlearn.evaluators import graph as graph_eval


def test_filtered_ranks_by_hand():
  # Query (0, 0) has true tails {1, 2}; target 1. Entity 2 scores higher but is filtered;
  # entity 3 ties with the target (half a place); entity 0 is below.
  known = graph_eval.known_tails([np.asarray([[0, 0, 1], [0, 0, 2]])], 4, 1)
  scores = np.asarray([[0.1, 0.5, 0.9, 0.5], [0.1, 0.5, 0.9, 0.5]])
  ranks = graph_eval.filtered_ranks(scores, [[0, 0], [3, 0]], [1, 1], known)
  np.testing.assert_allclose(ranks, [1.5, 2.5])  # query (3, 0) filters nothing
  # Inverse queries are in the filter: (tail, r + R) -> head.
  assert set(known[(1, 1)]) == {0} and set(known[(2, 1)]) == {0}


def test_ranking_metrics_by_hand():
  m = graph_eval.ranking_metrics([1, 2, 4, 20])
  assert m["mrr"] == pytest.approx((1 + 0.5 + 0.25 + 0.05) / 4)
  assert (m["hits@1"], m["hits@3"], m["hits@10"]) == (0.25, 0.5, 0.75)


def test_known_tails_rejects_unknown_relation_ids():
  with pytest.raises(ValueError, match=r"relation id 3 is outside \[0, 2\) \(unknown relation\)"):
    graph_eval.known_tails([np.asarray([[0, 3, 1]])], 4, 2)
  with pytest.raises(ValueError, match=r"entity id 7 is outside"):
    graph_eval.known_tails([np.asarray([[0, 1, 7]])], 4, 2)


def test_one_hot_codes_and_mean_features():
  np.testing.assert_array_equal(graph_eval.one_hot_codes([[1, 0], [2, 2]], 3),
                                [[0, 1, 0, 1, 0, 0], [0, 0, 1, 0, 0, 1]])
  with pytest.raises(ValueError, match=r"codes must lie in \[0, 3\)"):
    graph_eval.one_hot_codes([[3, 0]], 3)
  nodes = np.asarray([[[1.0], [3.0], [100.0]]])
  np.testing.assert_allclose(graph_eval.mean_node_features(nodes, [[1, 1, 0]]), [[2.0]])


def test_soft_code_targets_are_softmax_of_negative_squared_distances():
  latents = np.asarray([[0.0, 0.0], [2.0, 0.0]])
  codebook = np.asarray([[0.0, 0.0], [1.0, 0.0]])
  soft = graph_eval.soft_code_targets(latents, codebook, 0.5, cosine=False)
  # Node 0: distances^2 (0, 1) -> softmax(0, -2); node 1: (4, 1) -> softmax(-8, -2).
  np.testing.assert_allclose(soft[0], np.exp([0, -2]) / np.exp([0, -2]).sum(), rtol=1e-6)
  np.testing.assert_allclose(soft[1], np.exp([-8, -2]) / np.exp([-8, -2]).sum(), rtol=1e-6)
  # On the sphere, (2, 0) and (1, 0) are the same direction.
  cosine = graph_eval.soft_code_targets(latents[1:], codebook[1:] * 3, 1.0, cosine=True)
  np.testing.assert_allclose(cosine, [[1.0]])


def test_mlp_learns_a_separable_task_and_distillation_uses_the_targets():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(200, 2))
  y = (x[:, 0] > 0).astype(int)
  assert graph_eval.mlp_accuracy(x[:150], y[:150], x[150:], y[150:], steps=200) > 0.95
  # Soft targets that carry the label teach the same task.
  soft = np.eye(2)[y[:150]]
  assert graph_eval.mlp_accuracy(x[:150], y[:150], x[150:], y[150:], soft_targets=soft,
                                 steps=200) > 0.95


def test_graph_classification_from_separable_bags():
  bags = np.asarray([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]], np.float32)
  labels = np.asarray([0, 0, 1, 1])
  pooled = np.zeros((4, 1), np.float32)  # an uninformative raw baseline
  scores = graph_eval.graph_classification(bags, pooled, labels, bags, pooled, labels)
  assert scores["graph_bag_probe"] == 1.0 and scores["graph_bag_1nn"] == 1.0
  assert scores["graph_raw_features_probe"] == 0.5
