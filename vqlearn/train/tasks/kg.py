"""The knowledge-graph task: SSQR-style entity codes trained by 1-N link prediction, scored by
filtered MRR and Hits@k with the quantized entities (codes) and with their continuous latents.

Training examples are the train triples and their inverses; the loss is the softmax
cross-entropy of the true tail among all entities. Evaluation ranks the tail of every
``config.evals.split`` triple and its head (as the tail of the inverse query), filtering the
true answers of every split.
"""

from __future__ import annotations

from typing import Any

import jax
import ml_collections
import numpy as np
import optax

from vqlearn import evaluators
from vqlearn.data import graph_pipeline
from vqlearn.evaluators import graph as graph_eval
from vqlearn.train.tasks import Evaluation, Task


def _check_same_graph(config: ml_collections.ConfigDict) -> None:
  """The model is built for one graph: it must be the one the data config reads."""
  for model_key, data_key in (("dataset", "name"), ("path", "path"), ("data_dir", "dir")):
    if config.model[model_key] != config.data[data_key]:
      raise ValueError(f"config.model.{model_key} = {config.model[model_key]!r} must equal "
                       f"config.data.{data_key} = {config.data[data_key]!r}: a KG model is "
                       f"built for the graph it trains on")


def train_iterator(config: ml_collections.ConfigDict, model, **kwargs: Any):
  """Batches ``{'head', 'relation', 'tail'}`` of training triples and their inverses."""
  del model
  _check_same_graph(config)
  return graph_pipeline.kg_train_iterator(config.data, **kwargs)


def init(model, rng, batch_spec):
  del batch_spec  # the entity table's shape comes from the graph, not the batch
  return model.init(rng)


def loss(model, params, model_state, batch, rng):
  """1-N scoring: cross-entropy of the true tail among all entities."""
  out, model_state = model.apply(params, model_state, batch["head"], batch["relation"],
                                 rng=rng, train=True)
  ce = optax.softmax_cross_entropy_with_integer_labels(out.logits, batch["tail"]).mean()
  return ce, out.quantizer, model_state, {}


class Evaluator:
  """Filtered link prediction on ``config.evals.split``, codes and continuous."""

  def __init__(self, config: ml_collections.ConfigDict, model):
    _check_same_graph(config)
    split = {"test": "test", "validation": "validation"}.get(config.evals.split)
    if split is None:
      raise ValueError(f"config.evals.split must be 'test' or 'validation' for a knowledge "
                       f"graph, got {config.evals.split!r}")
    kg = graph_pipeline.load_kg(config.data)
    if (len(kg.entity_names), len(kg.relation_names)) != (model.num_entities,
                                                          model.num_relations):
      raise ValueError(f"the model has {model.num_entities} entities and {model.num_relations} "
                       f"relations, {config.data.name} has {len(kg.entity_names)} and "
                       f"{len(kg.relation_names)}")
    r = model.num_relations
    self._known = graph_eval.known_tails(list(kg.splits.values()), model.num_entities, r)
    queries = graph_pipeline.with_inverses(kg.splits[split], r)
    self._queries, self._targets = queries[:, :2], queries[:, 2]
    self._model = model
    self._score = jax.jit(model.score)
    self._entities = jax.jit(model.entities)

  def __call__(self, params, model_state) -> Evaluation:
    table = self._entities(params, model_state)
    metrics: dict[str, float] = {}
    for name, vectors in (("codes", table.quantized), ("continuous", table.latents)):
      scores = np.asarray(self._score(params, vectors, self._queries[:, 0],
                                      self._queries[:, 1]))
      if not np.isfinite(scores).all():
        raise FloatingPointError("evaluation: link scores are not finite; training has "
                                 "diverged")
      ranks = graph_eval.filtered_ranks(scores, self._queries, self._targets, self._known)
      metrics.update({f"{name}/{k}": v for k, v in graph_eval.ranking_metrics(ranks).items()})
    codes = np.asarray(table.codes)
    spec = self._model.quantizer.spec
    metrics.update(evaluators.codebook_health(codes, None, spec))
    metrics["tokens_per_entity"] = float(spec.num_symbols)
    metrics["bits_per_entity"] = float(spec.bits)
    # Entities sharing a whole code sequence cannot be told apart from their codes.
    metrics["unique_entity_codes"] = float(len(np.unique(codes, axis=0)) / len(codes))
    return Evaluation(metrics=metrics, plot=None)


TASK = Task(train_iterator=train_iterator, init=init, loss=loss, evaluator=Evaluator)
