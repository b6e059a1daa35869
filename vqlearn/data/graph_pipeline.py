"""From ``config.data`` to graph splits, knowledge-graph triples and training iterators.

Graph sets (``config.data.name`` in ``GRAPH_SETS`` or "tu"/"planetoid"):
- several graphs (TU): a fixed stratified split on the graph labels (seed 0, so it never
  moves with ``config.seed``) holds out ``test_fraction`` of the graphs; the tokenizer trains
  on the rest. Every batch is padded to the largest graph of the whole set, so training and
  evaluation share one shape.
- one graph (Planetoid, networkx): full-graph mode. Every example is the whole graph; its
  ``node_split`` says which nodes are train/validation/test for the evaluators.

Knowledge graphs (``KG_SETS`` or "files"): training examples are the train triples and their
inverses (t, r + R, h), so one tail-prediction model also predicts heads.

Both iterators follow ``pipeline.train_iterator``'s determinism contract: one endless stream of
example indices, a fresh permutation per epoch drawn from (seed, epoch); global batch s is
positions [s*B, (s+1)*B) and process p reads its slice, so the global batch depends only on
(data config, seed, s) whatever the process count. State = the step count.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple

import grain
import numpy as np

from vqlearn.data import graph_files, graphs as graph_lib, pipeline, preprocess, storage

GRAPH_SETS = ("MUTAG", "Cuneiform") + tuple(graph_files.CLASSIC)
KG_SETS = tuple(graph_files.PYKEEN_SETS)
TEST_SEED = 0  # fixed: the held-out graphs must not move with config.seed
_GRAPH_DEFAULTS = {"name": "", "path": "", "node_features": "", "test_fraction": 0.2,
                   "standardize": True, "dir": ""}
_KG_DEFAULTS = {"name": "", "path": "", "dir": ""}


def _values(data_config: Any, defaults: dict[str, Any]) -> dict[str, Any]:
  if hasattr(data_config, "get"):
    return {k: data_config.get(k, d) for k, d in defaults.items()}
  return {k: getattr(data_config, k, d) for k, d in defaults.items()}


@dataclasses.dataclass(frozen=True)
class GraphOptions:
  """``config.data`` of a graph set after checking."""
  name: str
  path: str
  node_features: str
  test_fraction: float
  standardize: bool
  dir: str


def check_graph_config(data_config: Any) -> GraphOptions:
  """Checks ``config.data`` for a graph set; errors name the field and what was expected."""
  v = _values(data_config, _GRAPH_DEFAULTS)
  if v["name"] not in GRAPH_SETS + ("tu", "planetoid"):
    raise ValueError(f"config.data.name must be one of {GRAPH_SETS} or 'tu'/'planetoid' with "
                     f"config.data.path, got {v['name']!r}")
  if v["node_features"] not in ("",) + graph_files.NODE_FEATURES:
    raise ValueError(f"config.data.node_features must be '' (the set's default) or one of "
                     f"{graph_files.NODE_FEATURES}, got {v['node_features']!r}")
  f = v["test_fraction"]
  if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0.0 < f < 1.0:
    raise ValueError(f"config.data.test_fraction must be a number in (0, 1), got {f!r}")
  for field in ("path", "dir"):
    if not isinstance(v[field], str):
      raise ValueError(f"config.data.{field} must be a string, got {v[field]!r}")
  if not isinstance(v["standardize"], (bool, np.bool_)):
    raise ValueError(f"config.data.standardize must be True or False, got {v['standardize']!r}")
  return GraphOptions(**{**v, "test_fraction": float(f)})


class GraphSplits(NamedTuple):
  """A graph set ready for batching.

  Attributes:
    train, test: the graphs of each split (in full-graph mode both hold the one graph).
    label_names, node_label_names: class names of graphs and nodes.
    max_nodes, max_edges: the padded shape (largest graph of the set).
    full_graph: True for a one-graph set, whose node split marks the splits.
    name: the dataset, for messages and reports.
    labels_in_features: the node features encode the node labels.
  """
  train: list[graph_lib.Graph]
  test: list[graph_lib.Graph]
  label_names: tuple[str, ...]
  node_label_names: tuple[str, ...]
  max_nodes: int
  max_edges: int
  full_graph: bool
  name: str
  labels_in_features: bool = False

  @property
  def num_node_features(self) -> int:
    return int(self.train[0].nodes.shape[1])


def standardize(graphs: list[graph_lib.Graph], reference: list[graph_lib.Graph]
                ) -> list[graph_lib.Graph]:
  """Node features z-scored per feature with the mean and std of ``reference``'s nodes
  (constant features are only centred)."""
  nodes = np.concatenate([g.nodes for g in reference]).astype(np.float64)
  mean, std = nodes.mean(axis=0), nodes.std(axis=0)
  std = np.where(std > 1e-8, std, 1.0)
  return [g._replace(nodes=((g.nodes - mean) / std).astype(np.float32)) for g in graphs]


@functools.lru_cache(maxsize=8)
def _load_graphs(options: GraphOptions) -> GraphSplits:
  builder = graph_files.graph_builder(options.name, str(storage.resolve_data_dir(options.dir)),
                                      path=options.path, node_features=options.node_features)
  parsed = graph_files.read_graphs(builder)
  max_nodes, max_edges = graph_lib.batch_shape(parsed.graphs)
  name = options.path or options.name
  if len(parsed.graphs) == 1:
    graphs = standardize(parsed.graphs, parsed.graphs) if options.standardize else parsed.graphs
    return GraphSplits(graphs, graphs, parsed.label_names,
                       parsed.node_label_names, max_nodes, max_edges, True, name,
                       parsed.labels_in_features)
  labels = np.asarray([g.label for g in parsed.graphs])
  train, test = preprocess.stratified_split(labels, options.test_fraction, TEST_SEED)
  train, test = [parsed.graphs[i] for i in train], [parsed.graphs[i] for i in test]
  if options.standardize:  # with the training graphs' statistics only
    train, test = standardize(train, train), standardize(test, train)
  return GraphSplits(train, test,
                     parsed.label_names, parsed.node_label_names, max_nodes, max_edges, False,
                     name, parsed.labels_in_features)


def load_graphs(data_config: Any) -> GraphSplits:
  """The graph set ``config.data`` names, split and sized (prepared on first use; cached)."""
  return _load_graphs(check_graph_config(data_config))


class _GatherGraphs:
  """Example indices -> a padded batch (module-level: picklable for grain workers)."""

  def __init__(self, graphs: list[graph_lib.Graph], max_nodes: int, max_edges: int):
    self._graphs, self._max_nodes, self._max_edges = graphs, max_nodes, max_edges

  def __call__(self, indices: np.ndarray) -> dict[str, np.ndarray]:
    return graph_lib.pad_graphs([self._graphs[i] for i in indices], self._max_nodes,
                                self._max_edges)


def graph_train_iterator(data_config: Any, *, global_batch_size: int, seed: int,
                         process_index: int = 0, process_count: int = 1
                         ) -> grain.DatasetIterator:
  """Endless shuffled batches of padded training graphs for this process.

  Returns:
    A grain iterator of ``graphs.pad_graphs`` dicts with global_batch_size // process_count
    graphs each, every one padded to the set's (max_nodes, max_edges); checkpointable.
  """
  splits = load_graphs(data_config)
  gather = _GatherGraphs(splits.train, splits.max_nodes, splits.max_edges)
  return pipeline.batch_iterator(len(splits.train), gather, global_batch_size=global_batch_size,
                                 seed=seed, process_index=process_index,
                                 process_count=process_count)


# ----------------------------------------------------------------------------------------------
# Knowledge graphs.
# ----------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class KgOptions:
  name: str
  path: str
  dir: str


def check_kg_config(data_config: Any) -> KgOptions:
  v = _values(data_config, _KG_DEFAULTS)
  if v["name"] not in KG_SETS + ("files",):
    raise ValueError(f"config.data.name must be one of {KG_SETS} or 'files' with "
                     f"config.data.path, got {v['name']!r}")
  return KgOptions(**v)


@functools.lru_cache(maxsize=8)
def _load_kg(options: KgOptions) -> graph_files.Triples:
  builder = graph_files.kg_builder(options.name, str(storage.resolve_data_dir(options.dir)),
                                   path=options.path)
  return graph_files.read_kg(builder)


def load_kg(data_config: Any) -> graph_files.Triples:
  """The knowledge graph ``config.data`` names (prepared on first use; cached)."""
  return _load_kg(check_kg_config(data_config))


def with_inverses(triples: np.ndarray, num_relations: int) -> np.ndarray:
  """(m, 3) triples followed by their inverses (t, r + R, h): (2m, 3)."""
  inverse = np.stack([triples[:, 2], triples[:, 1] + num_relations, triples[:, 0]], axis=1)
  return np.concatenate([triples, inverse]).astype(np.int32)


class _GatherTriples:
  def __init__(self, triples: np.ndarray):
    self._triples = triples

  def __call__(self, indices: np.ndarray) -> dict[str, np.ndarray]:
    t = self._triples[indices]
    return {"head": t[:, 0], "relation": t[:, 1], "tail": t[:, 2]}


def kg_train_iterator(data_config: Any, *, global_batch_size: int, seed: int,
                      process_index: int = 0, process_count: int = 1) -> grain.DatasetIterator:
  """Endless shuffled batches of training triples and their inverses.

  Returns:
    A grain iterator of ``{'head', 'relation', 'tail'}``, each int32 (LB,); relations of
    inverse triples are offset by the number of relations R.
  """
  kg = load_kg(data_config)
  examples = with_inverses(kg.splits["train"], len(kg.relation_names))
  return pipeline.batch_iterator(len(examples), _GatherTriples(examples),
                                 global_batch_size=global_batch_size, seed=seed,
                                 process_index=process_index, process_count=process_count)
