"""The graph and KG tasks end to end through the trainer (smoke configs), and their configs."""

import json
import os

import jax
import ml_collections
import numpy as np
import pytest

from configs import graph as graph_config
from configs import kg as kg_config
from vqlearn import train
from vqlearn.train import tasks


def _records(workdir, kind):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [r for r in map(json.loads, f) if r["kind"] == kind]


def test_cuneiform_smoke_run_scores_nodes_and_graphs(tmp_path, data_dir):
  config = graph_config.get_config("smoke,dataset=Cuneiform")
  config.data.dir = data_dir
  config.evals.plots = False
  metrics = train.train_and_evaluate(config, str(tmp_path))
  for key in ("node_codes_probe", "node_gnn_probe", "node_mlp", "node_distilled_mlp",
              "graph_bag_probe", "graph_bag_1nn", "graph_raw_features_probe", "link_accuracy"):
    assert 0.0 <= metrics[key] <= 1.0, key
  assert metrics["feature_mse"] >= 0 and 1 <= metrics["perplexity"] <= 8
  train_records = _records(str(tmp_path), "train")
  assert {"reconstruction/features", "reconstruction/links", "loss/commitment"} <= set(
      train_records[-1])
  last = train_records[-1]
  # The logged reconstruction is the weighted sum of its two terms (weights 1 and 1).
  assert last["reconstruction"] == pytest.approx(
      last["reconstruction/features"] + last["reconstruction/links"], rel=1e-5)


def test_full_graph_mode_scores_the_test_nodes_of_one_graph(data_dir):
  config = graph_config.get_config("smoke,dataset=karate_club")
  config.data.dir = data_dir
  model = train.loop.build_model(config)
  task = tasks.get(config)
  batch = next(task.train_iterator(config, model, global_batch_size=2, seed=0, process_index=0,
                                   process_count=1))
  assert batch["nodes"].shape == (2, 34, 34)  # every example is the whole graph
  np.testing.assert_array_equal(batch["nodes"][0], batch["nodes"][1])
  params, state = task.init(model, jax.random.PRNGKey(0), batch)
  metrics = task.evaluator(config, model)(params, state).metrics
  assert 0 <= metrics["node_gnn_probe"] <= 1 and 0 <= metrics["node_distilled_mlp"] <= 1
  assert not any(k.startswith("graph_") for k in metrics)  # one graph: nothing to classify


def test_nations_smoke_run_ranks_with_codes_and_latents(tmp_path, data_dir):
  config = kg_config.get_config("smoke,dataset=nations")
  config.data.dir = data_dir  # the model's data_dir follows: it is a reference
  assert config.model.data_dir == data_dir
  metrics = train.train_and_evaluate(config, str(tmp_path))
  for prefix in ("codes", "continuous"):
    mrr, hits1, hits10 = (metrics[f"{prefix}/{k}"] for k in ("mrr", "hits@1", "hits@10"))
    assert 1 / 14 <= mrr <= 1 and hits1 <= mrr <= 1 and hits1 <= hits10 <= 1
  assert metrics["tokens_per_entity"] == 4 and metrics["bits_per_entity"] == 12


def test_kg_model_must_be_built_for_the_data_it_trains_on():
  config = kg_config.get_config("smoke")
  # A config written by hand, without the references get_config sets up.
  config.model = ml_collections.ConfigDict(dict(config.model.to_dict(), dataset="umls"))
  with pytest.raises(ValueError, match=r"config.model.dataset = 'umls' must equal "
                                       r"config.data.name = 'nations'"):
    tasks.get(config).train_iterator(config, None, global_batch_size=8, seed=0,
                                     process_index=0, process_count=1)


def test_vqgraph_preset_follows_the_reference():
  config = graph_config.get_config("preset=vqgraph")
  assert config.quantizer.to_dict() == {"name": "ema_vq", "codebook_size": 64, "cosine": True,
                                        "decay": 0.8}
  assert config.loss_weights.to_dict() == {"commitment": 0.25}
  assert (config.model.feature_weight, config.model.link_weight) == (0.001, 0.03)
  with pytest.raises(ValueError, match="'preset' must be '' or 'vqgraph'"):
    graph_config.get_config("preset=glnn")


@pytest.mark.parametrize("module", [graph_config, kg_config])
def test_every_sweep_entry_is_a_valid_config(module):
  entries = []
  module.sweep(lambda **kw: entries.append(kw["config"]))
  assert len(entries) == len(set(entries)) > 0
  for entry in entries:
    config = module.get_config(entry)
    assert tasks.modality(config) in ("graph", "kg")
  seeds = {e.split("seed=")[1] for e in entries}
  assert seeds == {"0", "1", "2"}
  assert np.all([c.count("=") >= 2 for c in entries])
