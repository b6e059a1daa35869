"""The graph task: padded batches of graphs through the VQGraph tokenizer, scored on held-out
graphs (or held-out nodes of one graph) by reconstruction, codebook health, node and graph
classification from codes, and the VQGraph distillation comparison.

Splits: a multi-graph set (TU) holds out a fixed stratified ``config.data.test_fraction`` of
its graphs; the tokenizer never trains on them. A one-graph set (Planetoid, networkx) trains on
the whole graph (transductive, as VQGraph does) and scores the nodes its node split marks.
"""

from __future__ import annotations

from typing import Any

import jax
import ml_collections
import numpy as np

from vqlearn import evaluators
from vqlearn.data import graph_pipeline, graphs as graph_lib
from vqlearn.evaluators import graph as graph_eval
from vqlearn.models import graph as graph_models
from vqlearn.train import plots
from vqlearn.train.tasks import Evaluation, Task, check_finite, padded_chunks


def train_iterator(config: ml_collections.ConfigDict, model, **kwargs: Any):
  """Batches of padded training graphs (``vqlearn.data.graphs`` layout)."""
  del model  # every batch has the set's padded shape, whatever the model
  return graph_pipeline.graph_train_iterator(config.data, **kwargs)


def init(model, rng, batch_spec):
  return model.init(rng, batch_spec)


def loss(model, params, model_state, batch, rng):
  """Weighted feature MSE + link BCE; both terms are logged unweighted."""
  out, model_state = model.apply(params, model_state, batch, rng=rng, train=True)
  terms = model.reconstruction_terms(out)
  total = sum(model.reconstruction_weights[k] * v for k, v in terms.items())
  return total, out.quantizer, model_state, {f"reconstruction/{k}": v for k, v in terms.items()}


def _run(apply, params, model_state, batch: dict[str, np.ndarray], size: int
         ) -> dict[str, np.ndarray]:
  """Eval-mode outputs over padded graphs, ``size`` graphs per call (one compilation)."""
  pieces = []
  for chunk, real in padded_chunks(batch, size):  # padding: empty graphs, every mask 0
    out = apply(params, model_state, chunk)
    pieces.append({
        "codes": out.quantizer.codes, "quantized": out.quantizer.quantized,
        "latents": out.latents, "reconstruction": out.reconstruction, "target": out.target,
        "positive": out.positive_logits, "negative": out.negative_logits,
    })
    pieces[-1] = {k: np.asarray(v)[:real] for k, v in pieces[-1].items()}
  return {key: np.concatenate([p[key] for p in pieces]) for key in pieces[0]}


def _nodes(batch, out, select) -> dict[str, np.ndarray]:
  """The selected nodes' codes, vectors, features and labels, flattened over graphs."""
  return {"codes": out["codes"][select], "quantized": out["quantized"][select],
          "latents": out["latents"][select], "features": batch["nodes"][select],
          "labels": batch["node_labels"][select]}


class Evaluator:
  """Scores (params, model_state) on the held-out graphs or nodes of ``config.data``."""

  def __init__(self, config: ml_collections.ConfigDict, model):
    self._config = config.evals
    self._vocab = model.quantizer.spec.vocab_size
    self._num_symbols = model.quantizer.spec.num_symbols
    self._model = model
    self._cosine = bool(config.quantizer.get("cosine", False))
    self._soft = (self._num_symbols == 1 and config.quantizer.name != "binary")
    splits = graph_pipeline.load_graphs(config.data)
    self._splits = splits
    pad = lambda graphs: graph_lib.pad_graphs(graphs, splits.max_nodes, splits.max_edges)
    self._train, self._test = pad(splits.train), pad(splits.test)
    self._apply = jax.jit(lambda p, s, b: model.apply(p, s, b, train=False)[0])
    # The baseline does not depend on the model: computed once.
    self._graph_labelled = (not splits.full_graph and bool((self._test["label"] >= 0).all())
                            and len(splits.label_names) > 1)
    if splits.full_graph:
      self._select_train = self._train["node_split"] == graph_lib.TRAIN
      self._select_test = self._test["node_split"] == graph_lib.TEST
    else:
      self._select_train = self._train["node_mask"] > 0
      self._select_test = self._test["node_mask"] > 0
    self._select_train &= self._train["node_labels"] >= 0
    self._select_test &= self._test["node_labels"] >= 0
    # Node classification is meaningless when the features are the labels (MUTAG's atoms).
    self._node_labelled = bool(self._select_train.any() and self._select_test.any()
                               and not splits.labels_in_features)

  def _codebook(self, params, model_state) -> np.ndarray:
    codes = np.arange(self._vocab, dtype=np.int32)[:, None]
    return np.asarray(self._model.quantizer.lookup(params["quantizer"],
                                                   model_state["quantizer"], codes))

  def __call__(self, params, model_state) -> Evaluation:
    size = self._config.batch_size
    test = _run(self._apply, params, model_state, self._test, size)
    real = self._test["node_mask"] > 0
    check_finite(test["reconstruction"][real], self._splits.name)
    edges = self._test["edge_mask"] > 0
    diff = (test["reconstruction"] - test["target"])[real]
    # Each real edge against its sampled non-edge; a tie (both pairs got the same codes, so
    # the same logit) counts half, as in the AUC.
    above = (test["positive"] > test["negative"]) + 0.5 * (test["positive"] == test["negative"])
    metrics = {"feature_mse": float(np.mean(np.square(diff))),
               "link_accuracy": float(np.mean(above[edges]))}
    metrics.update(evaluators.codebook_health(test["codes"], real, self._vocab))
    metrics.update(evaluators.token_statistics(test["codes"], real))
    if self._config.classify and (self._graph_labelled or self._node_labelled):
      train = (test if self._splits.full_graph
               else _run(self._apply, params, model_state, self._train, size))
      if self._graph_labelled:
        bags = lambda out, batch: np.asarray(graph_models.bag_of_codes(
            out["codes"], batch["node_mask"], self._vocab))
        metrics.update(graph_eval.graph_classification(
            bags(train, self._train),
            graph_eval.mean_node_features(self._train["nodes"], self._train["node_mask"]),
            self._train["label"], bags(test, self._test),
            graph_eval.mean_node_features(self._test["nodes"], self._test["node_mask"]),
            self._test["label"]))
      if self._node_labelled:
        train_nodes = _nodes(self._train, train, self._select_train)
        soft = None
        if self._soft:
          soft = graph_eval.soft_code_targets(train_nodes["latents"],
                                              self._codebook(params, model_state),
                                              self._config.distill_temperature, self._cosine)
        metrics.update(graph_eval.node_classification(
            train_nodes, _nodes(self._test, test, self._select_test), self._vocab,
            soft_train=soft, temperature=self._config.distill_temperature,
            mlp_steps=self._config.mlp_steps))
    counts = evaluators.code_counts_per_symbol(test["codes"], real, self._vocab)
    return Evaluation(metrics=metrics, plot=lambda workdir: _plot(workdir, counts))


def _plot(workdir: str, counts: np.ndarray) -> None:
  plots.plot_run(workdir, code_counts=counts,
                 curves=["train/loss", "train/reconstruction/features",
                         "train/reconstruction/links", "train/perplexity", "eval/perplexity"])


TASK = Task(train_iterator=train_iterator, init=init, loss=loss, evaluator=Evaluator)
