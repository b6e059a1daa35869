"""Graph tokenizers: VQGraph node codes, bags of codes per graph, and SSQR-style KG entity codes.

VQGraph (Yang et al., ICLR 2024) -- ``vqgraph(quantizer, ...)``:

    padded batch -> flatten -> GNN encoder (GraphSAGE or GCN) -> one latent per node
      -> quantizer (mask = real nodes) -> decoder: node features (MLP) and links
      (inner products of projected codes, each real edge against one sampled non-edge)

The reconstruction loss is ``feature_weight * MSE(features) + edge_weight * BCE(links)``. A
padded node has no real edge and is masked out of the quantizer and the losses, so padding
never changes what a real node gets; message passing is a sum over edges, so permuting the
nodes of a graph permutes its codes the same way; every batch has the set's padded shape, so
graphs of different sizes share one compilation. Negative links are drawn from
(rng, graph index, edge index), so padding cannot change them either. Evaluation (no rng)
draws them from a fixed key.

Graph-level codes: ``bag_of_codes`` (the normalised histogram of a graph's node codes).

SSQR-style KG codes -- ``kg_codes(quantizer, ...)`` (after Lin et al. 2025, "Self-supervised
quantized representation for KG-LLM integration"): learned entity embeddings pass through a
relation-aware message-passing encoder over the training triples and their inverses
(messages h_head * r, CompGCN's multiplicative composition, Vashishth et al. 2020), each entity's
latent is quantized into a short code sequence (``num_symbols`` tokens; pass a residual or
product quantizer), and DistMult (Yang et al. 2015) scores (h, r, t) = <z_h, w_r, z_t> from the
quantized entities. Training is 1-N scoring: softmax cross-entropy of the true tail among all
entities. A KG model is transductive, so it is built for one graph: the factory reads the
training triples (prepared on first use).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from vqlearn.data import graph_pipeline, graphs as graph_lib
from vqlearn.quantizers.base import Quantizer, QuantizerOutput
from vqlearn.types import Array, Params, PRNGKey, State

F32 = jnp.float32
CONVS = ("sage", "gcn")
EVAL_NEGATIVES_SEED = 0  # evaluation draws its negative links from this fixed key


# ----------------------------------------------------------------------------------------------
# Message passing layers over a flattened padded batch.
# ----------------------------------------------------------------------------------------------

class GraphConv(nn.Module):
  """One GraphSAGE-mean or GCN layer.

  sage (Hamilton et al. 2017, mean aggregator): W_self h_v + W_neigh mean_{u -> v} h_u.
  gcn (Kipf & Welling 2017): sum_{u in N(v) + v} h_u W / sqrt(d_u d_v) + b, degrees counting
  the self-loop.
  """
  features: int
  conv: str = "sage"

  @nn.compact
  def __call__(self, h: Array, graph: graph_lib.FlatGraph) -> Array:
    degree = graph_lib.in_degree(graph)
    if self.conv == "sage":
      neighbours = graph_lib.aggregate(h[graph.senders], graph)
      mean = neighbours / jnp.maximum(degree, 1.0)[:, None]
      return (nn.Dense(self.features, name="self")(h)
              + nn.Dense(self.features, use_bias=False, name="neighbours")(mean))
    hw = nn.Dense(self.features, use_bias=False, name="weight")(h)
    degree = degree + 1.0  # the self-loop
    norm = jax.lax.rsqrt(degree[graph.senders] * degree[graph.receivers])
    out = graph_lib.aggregate(hw[graph.senders] * norm[:, None], graph) + hw / degree[:, None]
    return out + self.param("bias", nn.initializers.zeros, (self.features,))[None, :]


class GraphEncoder(nn.Module):
  """Node features -> one latent per node: ``layers`` convolutions, ReLU between them."""
  hidden: int = 64
  latent_dim: int = 32
  layers: int = 2
  conv: str = "sage"

  @nn.compact
  def __call__(self, graph: graph_lib.FlatGraph) -> Array:
    h = graph.nodes
    for i in range(self.layers):
      last = i == self.layers - 1
      h = GraphConv(self.latent_dim if last else self.hidden, self.conv, name=f"conv_{i}")(
          h, graph)
      if not last:
        h = nn.relu(h)
    return h


class GraphDecoder(nn.Module):
  """Quantized node vectors -> node features (MLP) and link embeddings (a linear map)."""
  num_features: int
  hidden: int = 64

  @nn.compact
  def __call__(self, z: Array) -> tuple[Array, Array]:
    features = nn.Dense(self.num_features, name="features_out")(
        nn.relu(nn.Dense(self.hidden, name="features_hidden")(z)))
    links = nn.Dense(self.hidden, name="links")(z)
    return features, links


# ----------------------------------------------------------------------------------------------
# The VQGraph tokenizer.
# ----------------------------------------------------------------------------------------------

class GraphOutput(NamedTuple):
  """What ``GraphModel.apply`` returns besides the new state (B graphs of N nodes, E edges).

  Attributes:
    latents: (B, N, d) encoder outputs (zero at padding).
    quantizer: the quantizer's output; ``codes`` (B, N, S), -1 at padded nodes.
    node_mask: (B, N) float32, 1 = real node.
    target: (B, N, F) node features, zero at padding.
    reconstruction: (B, N, F) decoded node features.
    positive_logits: (B, E) link logits of the real edges (meaningless at padding).
    negative_logits: (B, E) link logits of one sampled non-edge per edge slot.
    edge_mask: (B, E) float32, 1 = real edge.
  """
  latents: Array
  quantizer: QuantizerOutput
  node_mask: Array
  target: Array
  reconstruction: Array
  positive_logits: Array
  negative_logits: Array
  edge_mask: Array


class GraphModel(NamedTuple):
  """A graph tokenizer: pure functions and its loss weights.

  Attributes:
    init: ``(rng, batch_spec) -> (params, state)``; ``batch_spec`` maps the batch keys (at
      least nodes, node_mask, edges, edge_mask) to arrays or ``jax.ShapeDtypeStruct``s.
    apply: ``(params, state, batch, *, rng=None, train=False) -> (GraphOutput, state)``.
    quantizer: the quantizer in the middle.
    reconstruction_terms: ``GraphOutput -> {'features': MSE, 'links': BCE}`` (unweighted).
    reconstruction_weights: {'features': w_f, 'links': w_a}.
  """
  init: Callable[[PRNGKey, Any], tuple[Params, State]]
  apply: Callable[..., tuple[GraphOutput, State]]
  quantizer: Quantizer
  reconstruction_terms: Callable[[GraphOutput], dict[str, Array]]
  reconstruction_weights: dict[str, float]


def negative_receivers(rng: PRNGKey, node_mask: Array, num_edges: int) -> Array:
  """(B, E) receivers drawn uniformly from each graph's real nodes, keyed by (graph, edge).

  Real nodes come first in a padded graph, so node floor(u * n_b) is real. The key of slot
  (b, e) is fold_in(fold_in(rng, b), e): adding padded graphs or edges leaves every other
  slot's draw unchanged.
  """
  b = node_mask.shape[0]
  count = jnp.sum(node_mask > 0, axis=1).astype(F32)
  draw = lambda g, e: jax.random.uniform(jax.random.fold_in(jax.random.fold_in(rng, g), e))
  u = jax.vmap(lambda g: jax.vmap(lambda e: draw(g, e))(jnp.arange(num_edges)))(jnp.arange(b))
  index = jnp.floor(u * count[:, None]).astype(jnp.int32)
  return jnp.clip(index, 0, jnp.maximum(count[:, None].astype(jnp.int32) - 1, 0))


def _link_logits(links: Array, senders: Array, receivers: Array) -> Array:
  """<z_s, z_r> / sqrt(dim) for each pair, (B*E,) -> (B*E,)."""
  return jnp.sum(links[senders] * links[receivers], axis=-1) / np.sqrt(links.shape[-1])


def graph_reconstruction_terms(out: GraphOutput) -> dict[str, Array]:
  """Unweighted reconstruction losses over real nodes and real edges (float32 scalars).

  features: mean over real nodes and features of the squared error.
  links: mean over real edges of -log sigmoid(pos) - log(1 - sigmoid(neg)), the negative-
  sampling link loss (one non-edge per edge).
  """
  node = out.node_mask > 0
  diff = jnp.where(node[..., None], out.reconstruction - out.target, 0.0)
  count = jnp.maximum(jnp.sum(node) * out.target.shape[-1], 1)
  features = jnp.sum(jnp.square(diff)) / count
  edge = out.edge_mask > 0
  per_edge = (jax.nn.softplus(-jnp.where(edge, out.positive_logits, 0.0))
              + jax.nn.softplus(jnp.where(edge, out.negative_logits, 0.0)))
  links = jnp.sum(jnp.where(edge, per_edge, 0.0)) / jnp.maximum(jnp.sum(edge), 1)
  return {"features": features, "links": links}


def _check_int(name: str, value: Any, minimum: int = 1) -> int:
  if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
    raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
  return value


def _check_weight(name: str, value: Any) -> float:
  if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
    raise ValueError(f"{name} must be a number >= 0, got {value!r}")
  return float(value)


def _check_batch(batch: Any) -> None:
  for key in ("nodes", "node_mask", "edges", "edge_mask"):
    if key not in batch:
      raise ValueError(f"a graph batch needs key {key!r} (see vqlearn.data.graphs); got "
                       f"{sorted(batch)}")
  b, n, _ = batch["nodes"].shape
  shapes = {"node_mask": (b, n), "edges": (b, batch["edges"].shape[1], 2),
            "edge_mask": (b, batch["edges"].shape[1])}
  for key, shape in shapes.items():
    if tuple(batch[key].shape) != shape:
      raise ValueError(f"batch[{key!r}] must have shape {shape} to match nodes (B, N, F) = "
                       f"{tuple(batch['nodes'].shape)}, got {tuple(batch[key].shape)}")


def vqgraph(quantizer: Quantizer, *, conv: str = "sage", hidden: int = 64,
            latent_dim: int = 32, layers: int = 2, decoder_hidden: int = 64,
            feature_weight: float = 1.0, link_weight: float = 1.0) -> GraphModel:
  """The VQGraph tokenizer around any quantizer (module docstring).

  Args:
    quantizer: any registered quantizer; it quantizes latent_dim-dimensional node vectors.
      VQGraph's own: ``ema_vq`` with cosine=True, decay 0.8, commitment weight 0.25
      (``configs/graph.py:preset=vqgraph``).
    conv: "sage" (GraphSAGE, mean aggregator; VQGraph's default teacher) or "gcn".
    hidden: width of the hidden GNN layers.
    latent_dim: the node latent size d.
    layers: message-passing layers (>= 1).
    decoder_hidden: width of the feature MLP and of the link embedding.
    feature_weight: weight of the feature reconstruction MSE.
    link_weight: weight of the link reconstruction BCE.

  Returns:
    A ``GraphModel``.
  """
  if conv not in CONVS:
    raise ValueError(f"conv must be one of {CONVS}, got {conv!r}")
  for name, value in (("hidden", hidden), ("latent_dim", latent_dim), ("layers", layers),
                      ("decoder_hidden", decoder_hidden)):
    _check_int(name, value)
  weights = {"features": _check_weight("feature_weight", feature_weight),
             "links": _check_weight("link_weight", link_weight)}
  encoder = GraphEncoder(hidden, latent_dim, layers, conv)

  def decoder(num_features):
    return GraphDecoder(num_features, decoder_hidden)

  def init(rng: PRNGKey, batch_spec: Any) -> tuple[Params, State]:
    _check_batch(batch_spec)
    _, n, f = batch_spec["nodes"].shape
    e = batch_spec["edges"].shape[1]
    # Parameter shapes never depend on the batch: one empty padded graph traces them.
    graph = graph_lib.flatten(jnp.zeros((1, n, f), F32), jnp.ones((1, n), F32),
                              jnp.zeros((1, e, 2), jnp.int32), jnp.zeros((1, e), F32))
    enc_key, q_key, dec_key = jax.random.split(rng, 3)
    latents, enc_vars = encoder.init_with_output(enc_key, graph)
    q_params, q_state = quantizer.init(q_key, jax.ShapeDtypeStruct((1, n, latent_dim), F32))
    dec_vars = decoder(f).init(dec_key, latents)
    params = {"encoder": enc_vars["params"], "quantizer": q_params,
              "decoder": dec_vars["params"]}
    return params, {"quantizer": q_state}

  def apply(params: Params, state: State, batch: Any, *, rng: PRNGKey | None = None,
            train: bool = False) -> tuple[GraphOutput, State]:
    _check_batch(batch)
    b, n, f = batch["nodes"].shape
    e = batch["edges"].shape[1]
    node_mask = batch["node_mask"].astype(F32)
    graph = graph_lib.flatten(batch["nodes"], node_mask, batch["edges"], batch["edge_mask"])
    latents = encoder.apply({"params": params["encoder"]}, graph)
    latents = jnp.where(graph.node_mask[:, None] > 0, latents, 0.0).reshape(b, n, -1)
    if rng is None:
      q_key, negatives_key = None, jax.random.PRNGKey(EVAL_NEGATIVES_SEED)
    else:
      q_key, negatives_key = jax.random.split(rng)
    q_out, q_state = quantizer.apply(params["quantizer"], state["quantizer"], latents,
                                     rng=q_key, mask=node_mask, train=train)
    features, links = decoder(f).apply({"params": params["decoder"]},
                                       q_out.quantized.reshape(b * n, -1))
    offsets = (jnp.arange(b, dtype=jnp.int32) * n)[:, None]
    negatives = (negative_receivers(negatives_key, node_mask, e) + offsets).reshape(-1)
    out = GraphOutput(
        latents=latents, quantizer=q_out, node_mask=node_mask,
        target=graph.nodes.reshape(b, n, f), reconstruction=features.reshape(b, n, f),
        positive_logits=_link_logits(links, graph.senders, graph.receivers).reshape(b, e),
        negative_logits=_link_logits(links, graph.senders, negatives).reshape(b, e),
        edge_mask=graph.edge_mask.reshape(b, e))
    return out, ({"quantizer": q_state} if train else state)

  return GraphModel(init=init, apply=apply, quantizer=quantizer,
                    reconstruction_terms=graph_reconstruction_terms,
                    reconstruction_weights=weights)


def bag_of_codes(codes: Array, node_mask: Array, vocab_size: int) -> Array:
  """Graph-level codes: per graph and symbol, the normalised histogram of its node codes.

  Args:
    codes: int (B, N, S), -1 at padding (binary quantizers: bits, vocab_size 2).
    node_mask: (B, N), 1 = real node.
    vocab_size: entries per symbol.

  Returns:
    float32 (B, S * V); each symbol's block sums to 1 over the graph's real nodes.
  """
  onehot = jax.nn.one_hot(codes, vocab_size, dtype=F32)  # -1 gives a zero row
  onehot = jnp.where(node_mask[..., None, None] > 0, onehot, 0.0)
  counts = jnp.sum(onehot, axis=1)  # (B, S, V)
  total = jnp.maximum(jnp.sum(node_mask > 0, axis=1), 1).astype(F32)
  return (counts / total[:, None, None]).reshape(codes.shape[0], -1)


# ----------------------------------------------------------------------------------------------
# Knowledge-graph entity codes (SSQR-style).
# ----------------------------------------------------------------------------------------------

class KgEncoder(nn.Module):
  """Entity embeddings refined by relation-aware message passing over (h, r, t) triples.

  Layer: h_v <- W_self h_v + W_msg mean_{(u, r, v)} (h_u * e_r), tanh between layers.
  """
  num_entities: int
  num_relations: int  # including inverses
  dim: int
  layers: int

  @nn.compact
  def __call__(self, triples: Array) -> Array:
    init = nn.initializers.normal(stddev=1.0 / np.sqrt(self.dim))
    h = self.param("entities", init, (self.num_entities, self.dim))
    heads, relations, tails = triples[:, 0], triples[:, 1], triples[:, 2]
    degree = jax.ops.segment_sum(jnp.ones_like(tails, F32), tails, self.num_entities)
    for i in range(self.layers):
      r = self.param(f"relations_{i}", init, (self.num_relations, self.dim))
      messages = jax.ops.segment_sum(h[heads] * r[relations], tails, self.num_entities)
      mean = messages / jnp.maximum(degree, 1.0)[:, None]
      h = (nn.Dense(self.dim, name=f"self_{i}")(h)
           + nn.Dense(self.dim, use_bias=False, name=f"messages_{i}")(mean))
      if i < self.layers - 1:
        h = jnp.tanh(h)
    return h


class EntityTable(NamedTuple):
  """Every entity at once: latents (E, d), quantized (E, d), codes (E, S)."""
  latents: Array
  quantized: Array
  codes: Array


class KgOutput(NamedTuple):
  """``KgModel.apply``'s output: logits (B, E) of every entity as the tail of (head, relation),
  the quantizer's output over all entities, and the entity table."""
  logits: Array
  quantizer: QuantizerOutput
  table: EntityTable


class KgModel(NamedTuple):
  """An entity tokenizer for one knowledge graph.

  Attributes:
    init: ``(rng) -> (params, state)``.
    apply: ``(params, state, head, relation, *, rng=None, train=False) -> (KgOutput, state)``.
    entities: ``(params, state) -> EntityTable`` in eval mode.
    score: ``(params, vectors (E, d), head, relation) -> logits (B, E)``, DistMult from the
      given entity vectors (quantized for codes, latents for the continuous embeddings).
    quantizer: the quantizer (``spec.num_symbols`` tokens per entity).
    num_entities, num_relations: sizes of the graph (num_relations without inverses).
    score_with: "quantized" (codes) or "continuous" (the baseline trained on latents).
  """
  init: Callable[[PRNGKey], tuple[Params, State]]
  apply: Callable[..., tuple[KgOutput, State]]
  entities: Callable[[Params, State], EntityTable]
  score: Callable[[Params, Array, Array, Array], Array]
  quantizer: Quantizer
  num_entities: int
  num_relations: int
  score_with: str


SCORE_WITH = ("quantized", "continuous")


def kg_codes(quantizer: Quantizer, *, dataset: str = "nations", path: str = "",
             data_dir: str = "", dim: int = 64, layers: int = 1,
             score_with: str = "quantized") -> KgModel:
  """SSQR-style entity codes with a DistMult scorer (module docstring).

  Args:
    quantizer: quantizes each entity's d-dimensional latent into ``spec.num_symbols`` codes;
      use ``residual`` or ``product`` for a short code sequence per entity.
    dataset: the knowledge graph ("nations", "kinships", "umls" or "files"); it must be the
      run's ``config.data.name``.
    path: for "files", the folder with train.txt, valid.txt and test.txt.
    data_dir: the prepared-data cache ("" = the default).
    dim: entity and relation dimension d.
    layers: relation-aware message-passing layers (0 = plain embeddings).
    score_with: "quantized" scores from the quantized entities (codes); "continuous" trains
      the same model scoring from the latents (the continuous baseline; the quantizer still
      learns codes for them).

  Returns:
    A ``KgModel``; its training triples include the inverses (t, r + R, h).
  """
  if score_with not in SCORE_WITH:
    raise ValueError(f"score_with must be one of {SCORE_WITH}, got {score_with!r}")
  _check_int("dim", dim)
  _check_int("layers", layers, 0)
  kg = graph_pipeline.load_kg({"name": dataset, "path": path, "dir": data_dir})
  num_entities, num_relations = len(kg.entity_names), len(kg.relation_names)
  triples = jnp.asarray(graph_pipeline.with_inverses(kg.splits["train"], num_relations))
  encoder = KgEncoder(num_entities, 2 * num_relations, dim, layers)
  init_relations = nn.initializers.normal(stddev=1.0 / np.sqrt(dim))

  def init(rng: PRNGKey) -> tuple[Params, State]:
    enc_key, q_key, rel_key = jax.random.split(rng, 3)
    enc_params = encoder.init(enc_key, triples)["params"]
    q_params, q_state = quantizer.init(q_key, jax.ShapeDtypeStruct((num_entities, dim), F32))
    params = {"encoder": enc_params, "quantizer": q_params,
              "scorer": {"relations": init_relations(rel_key, (2 * num_relations, dim))}}
    return params, {"quantizer": q_state}

  def score(params: Params, vectors: Array, head: Array, relation: Array) -> Array:
    query = vectors[head] * params["scorer"]["relations"][relation]
    return query @ vectors.T  # DistMult: <z_h, w_r, z_t> for every tail t

  def encode(params, state, rng, train):
    latents = encoder.apply({"params": params["encoder"]}, triples)
    q_out, q_state = quantizer.apply(params["quantizer"], state["quantizer"], latents,
                                     rng=rng, mask=jnp.ones((num_entities,), F32), train=train)
    return latents, q_out, q_state

  def apply(params: Params, state: State, head: Array, relation: Array, *,
            rng: PRNGKey | None = None, train: bool = False) -> tuple[KgOutput, State]:
    latents, q_out, q_state = encode(params, state, rng, train)
    vectors = q_out.quantized if score_with == "quantized" else latents
    table = EntityTable(latents, q_out.quantized, q_out.codes)
    out = KgOutput(score(params, vectors, head, relation), q_out, table)
    return out, ({"quantizer": q_state} if train else state)

  def entities(params: Params, state: State) -> EntityTable:
    latents, q_out, _ = encode(params, state, None, False)
    return EntityTable(latents, q_out.quantized, q_out.codes)

  return KgModel(init=init, apply=apply, entities=entities, score=score, quantizer=quantizer,
                 num_entities=num_entities, num_relations=num_relations, score_with=score_with)
