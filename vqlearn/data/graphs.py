"""Graphs as padded, fixed-size batches that jit compiles once, and message passing over them.

A graph on the host is a ``Graph`` (numpy): node features, a directed edge list with 0-based
local node ids, optional node labels, a graph label and a per-node split. A batch is a dict of
arrays whose axis 0 is the graph axis, so the trainer can shard it like any other modality:

    nodes       float32 (B, N, F)   features, zero at padding
    node_mask   float32 (B, N)      1 = real node; real nodes come first in every graph
    edges       int32   (B, E, 2)   (sender, receiver), local ids in [0, N); 0 at padding
    edge_mask   float32 (B, E)      1 = real edge
    node_labels int32   (B, N)      class per node, -1 = none (and at padding)
    node_split  int32   (B, N)      TRAIN / VALIDATION / TEST per node, -1 = none
    label       int32   (B,)        class per graph, -1 = none

N and E are fixed per dataset (the largest graph, or set by the caller), so every batch has the
same shapes and a jitted step never retraces. Inside the model ``flatten`` turns a batch into
one disjoint union of B*N nodes (node ids offset by b*N), and ``aggregate`` sums messages with
``jax.ops.segment_sum``; padded edges are masked out, so padding never reaches a real node.

Full-graph mode (one large graph, e.g. a Planetoid citation graph or a networkx classic) is the
same layout with B = 1 and the node split telling which nodes are train, validation or test.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from vqlearn.types import Array

NO_SPLIT, TRAIN, VALIDATION, TEST = -1, 0, 1, 2
SPLIT_NAMES = {"train": TRAIN, "validation": VALIDATION, "test": TEST}
BATCH_KEYS = ("nodes", "node_mask", "edges", "edge_mask", "node_labels", "node_split", "label")


class Graph(NamedTuple):
  """One graph on the host.

  Attributes:
    nodes: float32 (n, F) node features, n >= 1.
    edges: int32 (m, 2) directed (sender, receiver) pairs of 0-based node ids; an undirected
      edge appears in both directions.
    node_labels: int32 (n,), -1 = unlabelled.
    label: the graph's class, -1 = unlabelled.
    node_split: int32 (n,), TRAIN / VALIDATION / TEST or NO_SPLIT (-1).
  """
  nodes: np.ndarray
  edges: np.ndarray
  node_labels: np.ndarray
  label: int
  node_split: np.ndarray

  @property
  def num_nodes(self) -> int:
    return int(self.nodes.shape[0])

  @property
  def num_edges(self) -> int:
    return int(self.edges.shape[0])


def make_graph(nodes, edges, node_labels=None, label: int = -1, node_split=None,
               where: str = "graph") -> Graph:
  """A checked ``Graph``: clear errors name ``where`` and what is wrong.

  Args:
    nodes: (n, F) features (n >= 1); a 1-D array is read as one feature per node.
    edges: (m, 2) 0-based (sender, receiver) ids; (0, 2) or empty for an edgeless graph.
    node_labels: (n,) ints, -1 = unlabelled; None = all -1.
    label: the graph's class (-1 = none).
    node_split: (n,) ints in {-1, 0, 1, 2}; None = all -1.
    where: what to call the graph in error messages (dataset and index, or a file).

  Raises:
    ValueError: empty graph, non-finite features, edges naming nodes that do not exist,
      labels or split of the wrong length.
  """
  nodes = np.asarray(nodes, np.float32)
  if nodes.ndim == 1:
    nodes = nodes[:, None]
  if nodes.ndim != 2 or nodes.shape[0] == 0:
    raise ValueError(f"{where}: a graph needs at least one node with a feature vector, got "
                     f"node features of shape {nodes.shape}")
  bad = ~np.isfinite(nodes)
  if bad.any():
    node, feature = np.argwhere(bad)[0]
    raise ValueError(f"{where}: node {node} has a NaN or inf feature (feature {feature})")
  n = nodes.shape[0]
  edges = np.asarray(edges, np.int64).reshape(-1, 2) if np.size(edges) else np.zeros((0, 2))
  if edges.size and (edges.min() < 0 or edges.max() >= n):
    i = int(np.flatnonzero((edges < 0).any(1) | (edges >= n).any(1))[0])
    raise ValueError(f"{where}: edge {i} ({edges[i, 0]} -> {edges[i, 1]}) references a node "
                     f"that does not exist; the graph has nodes 0..{n - 1}")
  labels = np.full((n,), -1, np.int32) if node_labels is None else np.asarray(node_labels)
  split = np.full((n,), NO_SPLIT, np.int32) if node_split is None else np.asarray(node_split)
  for field, values in (("node_labels", labels), ("node_split", split)):
    if values.shape != (n,):
      raise ValueError(f"{where}: {field} must have one entry per node ({n}), got shape "
                       f"{values.shape}")
  if split.size and not np.isin(split, (NO_SPLIT, TRAIN, VALIDATION, TEST)).all():
    raise ValueError(f"{where}: node_split values must be -1, 0 (train), 1 (validation) or "
                     f"2 (test), got {sorted(set(split.tolist()))}")
  return Graph(nodes=nodes, edges=edges.astype(np.int32), node_labels=labels.astype(np.int32),
               label=int(label), node_split=split.astype(np.int32))


def undirected(edges) -> np.ndarray:
  """Both directions of every edge, each directed pair once, self-loops dropped; sorted."""
  edges = np.asarray(edges, np.int64).reshape(-1, 2)
  both = np.concatenate([edges, edges[:, ::-1]])
  both = both[both[:, 0] != both[:, 1]]
  return np.unique(both, axis=0).astype(np.int32)


def batch_shape(graphs: Sequence[Graph]) -> tuple[int, int]:
  """(max nodes, max edges) over ``graphs`` (edges at least 1, so shapes are never empty)."""
  if not graphs:
    raise ValueError("no graphs to size a batch from")
  return (max(g.num_nodes for g in graphs), max(1, max(g.num_edges for g in graphs)))


def pad_graphs(graphs: Sequence[Graph], max_nodes: int, max_edges: int) -> dict[str, np.ndarray]:
  """Stacks graphs into one padded batch (layout in the module docstring).

  Args:
    graphs: B graphs, each with at most ``max_nodes`` nodes and ``max_edges`` edges.
    max_nodes: N, nodes per padded graph.
    max_edges: E, edges per padded graph.

  Returns:
    The batch dict, numpy arrays with the graph axis first.
  """
  b = len(graphs)
  features = graphs[0].nodes.shape[1] if graphs else 0
  out = {"nodes": np.zeros((b, max_nodes, features), np.float32),
         "node_mask": np.zeros((b, max_nodes), np.float32),
         "edges": np.zeros((b, max_edges, 2), np.int32),
         "edge_mask": np.zeros((b, max_edges), np.float32),
         "node_labels": np.full((b, max_nodes), -1, np.int32),
         "node_split": np.full((b, max_nodes), NO_SPLIT, np.int32),
         "label": np.full((b,), -1, np.int32)}
  for i, g in enumerate(graphs):
    n, m = g.num_nodes, g.num_edges
    if n > max_nodes or m > max_edges:
      raise ValueError(f"graph {i} has {n} nodes and {m} edges; the batch holds at most "
                       f"{max_nodes} nodes and {max_edges} edges per graph")
    if g.nodes.shape[1] != features:
      raise ValueError(f"graph {i} has {g.nodes.shape[1]} node features, graph 0 has "
                       f"{features}")
    out["nodes"][i, :n] = g.nodes
    out["node_mask"][i, :n] = 1.0
    out["edges"][i, :m] = g.edges
    out["edge_mask"][i, :m] = 1.0
    out["node_labels"][i, :n] = g.node_labels
    out["node_split"][i, :n] = g.node_split
    out["label"][i] = g.label
  return out


def full_graph_batch(graph: Graph) -> dict[str, np.ndarray]:
  """Full-graph mode: one large graph as a batch of one, its node split telling the splits."""
  return pad_graphs([graph], graph.num_nodes, max(1, graph.num_edges))


def split_mask(node_split: Array, split: str) -> Array:
  """float32 mask of the nodes in ``split`` ("train", "validation" or "test")."""
  if split not in SPLIT_NAMES:
    raise ValueError(f"split must be one of {tuple(SPLIT_NAMES)}, got {split!r}")
  return (node_split == SPLIT_NAMES[split]).astype(jnp.float32)


# ----------------------------------------------------------------------------------------------
# Inside the model: the disjoint union of a padded batch, and message passing over it.
# ----------------------------------------------------------------------------------------------

class FlatGraph(NamedTuple):
  """A padded batch as one graph of B*N nodes (graph b's node i is node b*N + i)."""
  nodes: Array  # (B*N, F)
  node_mask: Array  # (B*N,)
  senders: Array  # (B*E,)
  receivers: Array  # (B*E,)
  edge_mask: Array  # (B*E,)

  @property
  def num_nodes(self) -> int:
    return self.nodes.shape[0]


def flatten(nodes: Array, node_mask: Array, edges: Array, edge_mask: Array) -> FlatGraph:
  """The disjoint union of a padded batch; padded node features are zeroed here, once."""
  b, n = node_mask.shape
  offsets = (jnp.arange(b, dtype=jnp.int32) * n)[:, None]
  mask = node_mask.reshape(-1).astype(jnp.float32)
  flat_nodes = jnp.where(mask[:, None] > 0, nodes.reshape(b * n, -1).astype(jnp.float32), 0.0)
  return FlatGraph(nodes=flat_nodes, node_mask=mask,
                   senders=(edges[..., 0] + offsets).reshape(-1),
                   receivers=(edges[..., 1] + offsets).reshape(-1),
                   edge_mask=edge_mask.reshape(-1).astype(jnp.float32))


def aggregate(messages: Array, graph: FlatGraph) -> Array:
  """Sum of the real edges' messages (B*E, d) at their receivers -> (B*N, d).

  Padded edges are excluded with ``where`` (not a product), so whatever they carry, even NaN,
  cannot reach a node or a gradient.
  """
  messages = jnp.where(graph.edge_mask[:, None] > 0, messages, 0.0)
  return jax.ops.segment_sum(messages, graph.receivers, num_segments=graph.num_nodes)


def in_degree(graph: FlatGraph) -> Array:
  """Number of real edges arriving at each node, (B*N,) float32."""
  return jax.ops.segment_sum(graph.edge_mask, graph.receivers, num_segments=graph.num_nodes)


def unflatten(values: Array, batch_size: int) -> Array:
  """(B*N, ...) -> (B, N, ...)."""
  return values.reshape((batch_size, -1) + values.shape[1:])
