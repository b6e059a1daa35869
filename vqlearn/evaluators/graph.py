"""Downstream quality of graph codes: node and graph classification, VQGraph distillation, and
knowledge-graph link prediction.

- Node classification from codes: logistic regression (``probe.linear_probe_accuracy``) on
  each node's one-hot codes, on its quantized vector, and on the GNN's continuous latent (the
  frozen GNN itself).
- Graph classification from bags of codes (``models.graph.bag_of_codes``): logistic regression
  and 1-NN on the histograms, beside logistic regression on the mean raw node features.
- VQGraph distillation (Yang et al. 2024): an MLP on node features alone, trained on the labels
  plus the teacher's soft code assignments (Hinton-style KL at temperature tau, times tau^2),
  against the same MLP trained on labels alone.
- Link prediction: filtered MRR and Hits@k of tail and head queries (Bordes et al. 2013's
  filtered setting), ties ranked by their mean position (pykeen's "realistic" rank).

Everything runs on the host on whole evaluation sets; the small MLPs train full-batch in JAX.
"""

from __future__ import annotations

import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from vqlearn.evaluators import probe

F32 = jnp.float32


# ----------------------------------------------------------------------------------------------
# Node and graph features from codes.
# ----------------------------------------------------------------------------------------------

def one_hot_codes(codes, vocab_size: int) -> np.ndarray:
  """(n, S) codes -> (n, S * V) float32 one-hot blocks (one per symbol)."""
  codes = np.asarray(codes)
  if codes.ndim != 2:
    raise ValueError(f"codes must have shape (n, S), got {codes.shape}")
  if codes.size and (codes.min() < 0 or codes.max() >= vocab_size):
    raise ValueError(f"codes must lie in [0, {vocab_size}), found [{codes.min()}, "
                     f"{codes.max()}]")
  out = np.zeros((codes.shape[0], codes.shape[1], vocab_size), np.float32)
  np.put_along_axis(out, codes[..., None], 1.0, axis=-1)
  return out.reshape(codes.shape[0], -1)


def mean_node_features(nodes, node_mask) -> np.ndarray:
  """(B, N, F) -> (B, F): the mean over each graph's real nodes (the raw-feature baseline)."""
  mask = np.asarray(node_mask) > 0
  total = np.sum(np.where(mask[..., None], nodes, 0.0), axis=1)
  return (total / np.maximum(mask.sum(1), 1)[:, None]).astype(np.float32)


# ----------------------------------------------------------------------------------------------
# A small MLP classifier, optionally distilled from soft codes.
# ----------------------------------------------------------------------------------------------

def soft_code_targets(latents, codebook, temperature: float, cosine: bool) -> np.ndarray:
  """The teacher's soft code assignment softmax(-||z - e_k||^2 / tau) (VQGraph), (n, K).

  Args:
    latents: (n, d) the GNN's node latents (the quantizer's input).
    codebook: (K, d) the codebook vectors (``quantizer.lookup`` of every code).
    temperature: tau.
    cosine: l2-normalise both first (a cosine codebook assigns on the sphere).
  """
  z, e = np.asarray(latents, np.float64), np.asarray(codebook, np.float64)
  if cosine:
    z = z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)
    e = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
  logits = -np.square(probe.euclidean_distances(z, e)) / temperature
  logits -= logits.max(axis=1, keepdims=True)
  p = np.exp(logits)
  return (p / p.sum(axis=1, keepdims=True)).astype(np.float32)


@functools.partial(jax.jit, static_argnames=("hidden", "steps", "num_classes"))
def _train_mlp(x, y, soft, distill_weight, temperature, rng, *, hidden: int, steps: int,
               num_classes: int):
  """Full-batch AdamW on CE(labels) + w * tau^2 * KL(soft || softmax(code_logits / tau))."""
  d, k = x.shape[1], soft.shape[1]
  keys = jax.random.split(rng, 3)
  glorot = jax.nn.initializers.glorot_uniform()
  params = {"w1": glorot(keys[0], (d, hidden)), "b1": jnp.zeros((hidden,)),
            "w_class": glorot(keys[1], (hidden, num_classes)), "b_class": jnp.zeros((num_classes,)),
            "w_code": glorot(keys[2], (hidden, k)), "b_code": jnp.zeros((k,))}

  def loss(p):
    h = jax.nn.relu(x @ p["w1"] + p["b1"][None, :])
    logits = h @ p["w_class"] + p["b_class"][None, :]
    ce = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, y))
    student = jax.nn.log_softmax((h @ p["w_code"] + p["b_code"][None, :]) / temperature)
    kl = jnp.mean(jnp.sum(soft * (jnp.log(jnp.maximum(soft, 1e-12)) - student), axis=1))
    return ce + distill_weight * temperature ** 2 * kl

  opt = optax.adamw(1e-2, weight_decay=5e-4)
  grad = jax.grad(loss)

  def step(carry, _):
    p, state = carry
    updates, state = opt.update(grad(p), state, p)
    return (optax.apply_updates(p, updates), state), None

  (params, _), _ = jax.lax.scan(step, (params, opt.init(params)), None, length=steps)
  return params


def mlp_accuracy(train_x, train_y, test_x, test_y, *, soft_targets=None,
                 temperature: float = 4.0, distill_weight: float = 1.0, hidden: int = 64,
                 steps: int = 500, seed: int = 0) -> float:
  """Test accuracy of a one-hidden-layer MLP on node features, optionally distilled.

  Features are standardised with the train statistics. With ``soft_targets`` (n_train, K)
  the MLP also has a code head trained to match them (VQGraph's student); without, it is the
  plain MLP baseline (the code head gets zero weight).

  Returns:
    Fraction of test nodes classified correctly.
  """
  x_train = np.asarray(train_x, np.float64)
  x_test = np.asarray(test_x, np.float64)
  y_train = np.asarray(train_y)
  classes, y = np.unique(y_train, return_inverse=True)
  mean, std = x_train.mean(0), x_train.std(0)
  std = np.where(std > 1e-8, std, 1.0)
  soft = (np.full((len(x_train), 1), 1.0, np.float32) if soft_targets is None
          else np.asarray(soft_targets, np.float32))
  weight = 0.0 if soft_targets is None else float(distill_weight)
  params = _train_mlp(jnp.asarray((x_train - mean) / std, F32), jnp.asarray(y, jnp.int32),
                      jnp.asarray(soft), jnp.float32(weight), jnp.float32(temperature),
                      jax.random.PRNGKey(seed), hidden=hidden, steps=steps,
                      num_classes=len(classes))
  h = jax.nn.relu(jnp.asarray((x_test - mean) / std, F32) @ params["w1"] + params["b1"][None, :])
  predicted = classes[np.asarray(jnp.argmax(h @ params["w_class"] + params["b_class"][None, :], 1))]
  return float(np.mean(predicted == np.asarray(test_y)))


# ----------------------------------------------------------------------------------------------
# Node and graph classification.
# ----------------------------------------------------------------------------------------------

def node_classification(train: dict[str, np.ndarray], test: dict[str, np.ndarray],
                        vocab_size: int, *, soft_train=None, temperature: float = 4.0,
                        mlp_steps: int = 500, seed: int = 0) -> dict[str, float]:
  """Node accuracies from codes, quantized vectors, GNN latents, and the MLPs.

  Args:
    train, test: per split, real labelled nodes only: ``codes`` (n, S), ``quantized`` (n, d),
      ``latents`` (n, d), ``features`` (n, F), ``labels`` (n,).
    vocab_size: entries per symbol.
    soft_train: (n_train, K) the teacher's soft codes for the distilled MLP, or None to
      distil the one-hot codes (multi-symbol or binary quantizers).
    temperature: the distillation temperature tau.
    mlp_steps: full-batch training steps of each MLP.
    seed: initialisation of the MLPs.

  Returns:
    ``node_codes_probe``, ``node_quantized_probe``, ``node_gnn_probe``, ``node_mlp``,
    ``node_distilled_mlp``.
  """
  fit = lambda key, transform=lambda v: v: probe.linear_probe_accuracy(
      transform(train[key]), train["labels"], transform(test[key]), test["labels"])
  codes = lambda c: one_hot_codes(c, vocab_size)
  targets = soft_train if soft_train is not None else codes(train["codes"])
  mlp = functools.partial(mlp_accuracy, train["features"], train["labels"], test["features"],
                          test["labels"], temperature=temperature, steps=mlp_steps, seed=seed)
  return {"node_codes_probe": fit("codes", codes),
          "node_quantized_probe": fit("quantized"),
          "node_gnn_probe": fit("latents"),
          "node_mlp": mlp(),
          "node_distilled_mlp": mlp(soft_targets=targets)}


def graph_classification(train_bags, train_pooled, train_labels, test_bags, test_pooled,
                         test_labels) -> dict[str, float]:
  """Graph accuracies from bags of codes (logistic regression and 1-NN), and the baseline
  logistic regression on mean raw node features (``*_pooled``)."""
  distances = probe.euclidean_distances(test_bags, train_bags)
  return {
      "graph_bag_probe": probe.linear_probe_accuracy(train_bags, train_labels, test_bags,
                                                     test_labels),
      "graph_bag_1nn": probe.knn_accuracy(distances, train_labels, test_labels, k=1),
      "graph_raw_features_probe": probe.linear_probe_accuracy(train_pooled, train_labels,
                                                              test_pooled, test_labels),
  }


# ----------------------------------------------------------------------------------------------
# Link prediction.
# ----------------------------------------------------------------------------------------------

def known_tails(triples: Sequence[np.ndarray], num_entities: int,
                num_relations: int) -> dict[tuple[int, int], np.ndarray]:
  """(head, relation) -> every true tail over ``triples`` (all splits), inverse queries
  (tail, relation + R) included, for the filtered setting."""
  table: dict[tuple[int, int], set[int]] = {}
  for split in triples:
    for h, r, t in np.asarray(split).reshape(-1, 3).tolist():
      for e in (h, t):
        if not 0 <= e < num_entities:
          raise ValueError(f"entity id {e} is outside [0, {num_entities})")
      if not 0 <= r < num_relations:
        raise ValueError(f"relation id {r} is outside [0, {num_relations}) (unknown relation)")
      table.setdefault((h, r), set()).add(t)
      table.setdefault((t, r + num_relations), set()).add(h)
  return {k: np.fromiter(v, np.int64) for k, v in table.items()}


def filtered_ranks(scores, queries, targets, known: dict[tuple[int, int], np.ndarray]
                   ) -> np.ndarray:
  """Rank of each target among all entities, other true answers removed (filtered).

  rank = 1 + #(filtered scores > target score) + #(filtered ties) / 2, the mean of the
  optimistic and pessimistic ranks.

  Args:
    scores: (Q, E) scores, higher = more plausible.
    queries: (Q, 2) (head, relation) of each query.
    targets: (Q,) the true tail of each query.
    known: ``known_tails`` of every split.

  Returns:
    float64 (Q,) ranks >= 1.
  """
  scores = np.asarray(scores, np.float64).copy()
  targets = np.asarray(targets)
  rows = np.arange(len(targets))
  target_scores = scores[rows, targets]
  for i, (h, r) in enumerate(np.asarray(queries).tolist()):
    scores[i, known.get((h, r), np.zeros(0, np.int64))] = -np.inf
  scores[rows, targets] = -np.inf  # the target itself is neither above nor tied
  greater = np.sum(scores > target_scores[:, None], axis=1)
  ties = np.sum(scores == target_scores[:, None], axis=1)
  return 1.0 + greater + ties / 2.0


def ranking_metrics(ranks) -> dict[str, float]:
  """MRR, Hits@1, Hits@3 and Hits@10 of (filtered) ranks."""
  ranks = np.asarray(ranks, np.float64)
  return {"mrr": float(np.mean(1.0 / ranks)), "hits@1": float(np.mean(ranks <= 1)),
          "hits@3": float(np.mean(ranks <= 3)), "hits@10": float(np.mean(ranks <= 10))}
