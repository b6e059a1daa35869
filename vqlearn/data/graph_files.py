"""Graph and knowledge-graph files: readers with clear errors, and their TFDS builders.

Readers (pure numpy, everything checked before anything is written):
- TU format (``read_tu``): ``<NAME>_A.txt`` (1-based node pairs), ``_graph_indicator.txt``,
  ``_graph_labels.txt`` and optionally ``_node_labels.txt`` (one or more comma-separated
  columns) and ``_node_attributes.txt``. grakel ships MUTAG and Cuneiform in this format
  under ``grakel/tests/data/`` (shared/DATA.md).
- Knowledge graphs (``read_triples``): tab-separated ``head<TAB>relation<TAB>tail`` lines in
  ``train.txt``/``valid.txt``/``test.txt``. pykeen ships Nations, Kinships and UMLS under
  ``pykeen/datasets/<name>/``; they are found with ``importlib.util.find_spec`` and read as
  files, because importing pykeen pulls in torch.
- Planetoid (``read_planetoid``): the ``ind.<name>.{x,tx,allx,y,ty,ally,graph,test.index}``
  files of Cora/Citeseer/PubMed, for users who have them. They are Python pickles; they are
  loaded with an unpickler that only builds numpy arrays, scipy sparse matrices and plain
  containers, so a file cannot run code.
- networkx's classic graphs (``classic_graph``) for smoke tests.

Builders: ``GraphSet`` stores graphs, one example per graph, in a single "train" split (TU sets
have no standard split; the pipeline carves a fixed stratified test split); a one-graph set
(Planetoid, networkx) carries its node split in ``node_split``. ``TripleSet`` stores a KG's
train/validation/test triples as entity and relation ids, with the names in the metadata.
"""

from __future__ import annotations

import hashlib
import importlib.util
import pathlib
import pickle
from typing import Callable, NamedTuple, Sequence

import numpy as np
import tensorflow_datasets as tfds

from vqlearn.data import graphs as graph_lib
from vqlearn.data import preprocess, storage

# ----------------------------------------------------------------------------------------------
# TU format.
# ----------------------------------------------------------------------------------------------

NODE_FEATURES = ("attributes", "labels", "both")


class GraphData(NamedTuple):
  """A parsed graph dataset.

  Attributes:
    graphs: the checked graphs.
    label_names: graph class names (index = ``Graph.label``).
    node_label_names: node class names (index = ``Graph.node_labels``).
    description: where it came from.
    labels_in_features: the node features include the node labels (one-hot), so node
      classification would be trivial.
  """
  graphs: list[graph_lib.Graph]
  label_names: tuple[str, ...]
  node_label_names: tuple[str, ...]
  description: str
  labels_in_features: bool = False


def _read_rows(path: pathlib.Path, columns: int | None, dtype, what: str) -> np.ndarray:
  """Comma-separated numeric rows -> (lines, columns) array, naming the file and line on error."""
  rows = []
  with open(path, encoding="utf-8") as f:
    for line_number, line in enumerate(f, start=1):
      if not line.strip():
        continue
      cells = [c.strip() for c in line.split(",")]
      if columns is not None and len(cells) != columns:
        raise ValueError(f"{path}: line {line_number} has {len(cells)} values, expected "
                         f"{columns} ({what})")
      try:
        rows.append([dtype(c) for c in cells])
      except ValueError:
        raise ValueError(f"{path}: line {line_number} is {line.strip()!r}, expected {what}"
                         ) from None
  width = len(rows[0]) if rows else (columns or 1)
  if any(len(r) != width for r in rows):
    bad = next(i for i, r in enumerate(rows) if len(r) != width)
    raise ValueError(f"{path}: row {bad + 1} has {len(rows[bad])} values, row 1 has {width}")
  return np.asarray(rows, dtype=np.float64 if dtype is float else np.int64).reshape(-1, width)


def read_tu(directory: str | pathlib.Path, name: str, node_features: str = "attributes",
            ) -> GraphData:
  """Reads a TU-format dataset (see the module docstring), checking that its files agree.

  Args:
    directory: the folder holding ``<name>_*.txt``.
    name: the dataset's file prefix, e.g. "MUTAG".
    node_features: "attributes" (``_node_attributes.txt``), "labels" (one-hot node labels,
      one block per label column) or "both" (concatenated).

  Returns:
    The graphs in file order; node labels with several columns become one class per
    distinct combination, named "a,b".

  Raises:
    FileNotFoundError: a required file is missing.
    ValueError: files that disagree (line counts, node ids, edges between graphs, graphs
      without nodes), non-numeric values, or features that are asked for but absent.
  """
  if node_features not in NODE_FEATURES:
    raise ValueError(f"node_features must be one of {NODE_FEATURES}, got {node_features!r}")
  directory = pathlib.Path(directory).expanduser()
  path = lambda suffix: directory / f"{name}_{suffix}.txt"
  for suffix in ("A", "graph_indicator", "graph_labels"):
    if not path(suffix).is_file():
      raise FileNotFoundError(f"{path(suffix)}: missing; a TU dataset needs {name}_A.txt, "
                              f"{name}_graph_indicator.txt and {name}_graph_labels.txt")
  indicator = _read_rows(path("graph_indicator"), 1, int, "a graph id")[:, 0]
  graph_labels = _read_rows(path("graph_labels"), 1, int, "a graph label")[:, 0]
  edges = _read_rows(path("A"), 2, int, "a pair of node ids 'i, j'")
  n, num_graphs = len(indicator), len(graph_labels)
  if n == 0 or num_graphs == 0:
    raise ValueError(f"{directory}: {name} has no nodes or no graphs")
  if indicator.min() < 1 or indicator.max() > num_graphs:
    raise ValueError(f"{path('graph_indicator')}: graph ids must lie in [1, {num_graphs}] "
                     f"({num_graphs} lines in {path('graph_labels').name}), found "
                     f"[{indicator.min()}, {indicator.max()}]")
  if np.any(np.diff(indicator) < 0):
    line = int(np.flatnonzero(np.diff(indicator) < 0)[0]) + 2
    raise ValueError(f"{path('graph_indicator')}: line {line} goes back to an earlier graph; "
                     f"the nodes of each graph must be consecutive")
  sizes = np.bincount(indicator - 1, minlength=num_graphs)
  if (sizes == 0).any():
    raise ValueError(f"{path('graph_indicator')}: graph {int(np.argmax(sizes == 0)) + 1} has no "
                     f"nodes (an empty graph); every graph needs at least one node")
  if edges.size and (edges.min() < 1 or edges.max() > n):
    line = int(np.flatnonzero((edges < 1).any(1) | (edges > n).any(1))[0]) + 1
    raise ValueError(f"{path('A')}: line {line} ({edges[line - 1, 0]}, {edges[line - 1, 1]}) "
                     f"references a node that does not exist; node ids are 1..{n} "
                     f"({n} lines in {path('graph_indicator').name})")
  edges = edges - 1
  crossing = indicator[edges[:, 0]] != indicator[edges[:, 1]]
  if crossing.any():
    line = int(np.flatnonzero(crossing)[0]) + 1
    u, v = edges[line - 1]
    raise ValueError(f"{path('A')}: line {line} joins node {u + 1} of graph {indicator[u]} to "
                     f"node {v + 1} of graph {indicator[v]}; edges must stay inside a graph")

  node_label_names: tuple[str, ...] = ()
  node_labels = np.full((n,), -1, np.int64)
  label_columns = None
  if path("node_labels").is_file():
    label_columns = _read_rows(path("node_labels"), None, int, "integer node labels")
    if len(label_columns) != n:
      raise ValueError(f"{path('node_labels')}: {len(label_columns)} lines, but "
                       f"{path('graph_indicator').name} has {n} nodes")
    keys = [",".join(str(v) for v in row) for row in label_columns]
    node_label_names = storage.label_names_of(keys)
    index = {k: i for i, k in enumerate(node_label_names)}
    node_labels = np.asarray([index[k] for k in keys])
  blocks = []
  if node_features in ("attributes", "both"):
    if not path("node_attributes").is_file():
      raise FileNotFoundError(f"{path('node_attributes')}: missing, but node_features="
                              f"{node_features!r} asks for node attributes")
    attributes = _read_rows(path("node_attributes"), None, float, "numeric node attributes")
    if len(attributes) != n:
      raise ValueError(f"{path('node_attributes')}: {len(attributes)} lines, but "
                       f"{path('graph_indicator').name} has {n} nodes")
    blocks.append(attributes)
  if node_features in ("labels", "both"):
    if label_columns is None:
      raise FileNotFoundError(f"{path('node_labels')}: missing, but node_features="
                              f"{node_features!r} asks for one-hot node labels")
    for column in label_columns.T:  # one one-hot block per label column
      values = np.unique(column)
      blocks.append((column[:, None] == values[None, :]).astype(np.float64))
  features = np.concatenate(blocks, axis=1)

  label_names = storage.label_names_of([str(v) for v in graph_labels])
  label_index = {k: i for i, k in enumerate(label_names)}
  starts = np.concatenate([[0], np.cumsum(sizes)])
  edge_graph = indicator[edges[:, 0]] - 1
  order = np.argsort(edge_graph, kind="stable")  # file order within each graph
  edge_starts = np.searchsorted(edge_graph[order], np.arange(num_graphs + 1))
  graphs = []
  for g in range(num_graphs):
    lo, hi = starts[g], starts[g + 1]
    local = edges[order[edge_starts[g]:edge_starts[g + 1]]] - lo
    graphs.append(graph_lib.make_graph(
        features[lo:hi], local, node_labels[lo:hi], label_index[str(graph_labels[g])],
        where=f"{directory}/{name} graph {g + 1}"))
  return GraphData(graphs, label_names, node_label_names,
                   f"TU dataset {name} from {directory} (node features: {node_features})",
                   labels_in_features=node_features != "attributes")


def grakel_dir() -> pathlib.Path:
  """grakel's bundled TU datasets, found without importing grakel."""
  spec = importlib.util.find_spec("grakel")
  if spec is None or not spec.submodule_search_locations:
    raise ModuleNotFoundError("the bundled graph sets MUTAG and Cuneiform ship with grakel: "
                              "pip install grakel (or vqlearn[graph])")
  return pathlib.Path(list(spec.submodule_search_locations)[0]) / "tests" / "data"


# ----------------------------------------------------------------------------------------------
# Planetoid format.
# ----------------------------------------------------------------------------------------------

PLANETOID_PARTS = ("x", "tx", "allx", "y", "ty", "ally", "graph")


class _ArraysOnly(pickle.Unpickler):
  """Builds numpy arrays, scipy sparse matrices, dicts and lists; refuses anything else."""

  _EXACT = {("_codecs", "encode"), ("collections", "defaultdict"),
            ("copy_reg", "_reconstructor"), ("copyreg", "_reconstructor")}
  _BUILTINS = {"list", "dict", "set", "tuple", "object", "int", "float"}

  def find_class(self, module, name):
    allowed = ((module, name) in self._EXACT or module.split(".")[0] == "numpy"
               or module.startswith("scipy.sparse")
               or (module in ("builtins", "__builtin__") and name in self._BUILTINS))
    if not allowed:
      raise pickle.UnpicklingError(f"refusing to load {module}.{name}: a Planetoid file holds "
                                   f"only arrays, sparse matrices and an adjacency dict")
    return super().find_class(module, name)


def _load_pickle(path: pathlib.Path):
  with open(path, "rb") as f:
    try:  # the original files were written by Python 2 (Kipf's loader uses latin1 as well)
      return _ArraysOnly(f, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError) as e:
      raise ValueError(f"{path}: not a Planetoid pickle ({e})") from e


def _dense(value, path: pathlib.Path) -> np.ndarray:
  array = value.toarray() if hasattr(value, "toarray") else np.asarray(value)
  if array.ndim != 2 or not np.issubdtype(array.dtype, np.number):
    raise ValueError(f"{path}: expected a 2-D numeric matrix, got {array.dtype} {array.shape}")
  return array.astype(np.float32)


def read_planetoid(directory: str | pathlib.Path, name: str, num_validation: int = 500
                   ) -> GraphData:
  """Reads ``ind.<name>.*`` into one graph with a train/validation/test node split.

  The layout of Yang et al. (2016) as Kipf & Welling's loader reads it: the first len(allx)
  nodes have features ``allx`` and one-hot labels ``ally``, of which the first len(x) are the
  training nodes and the next ``num_validation`` the validation nodes; test node
  ``test.index[i]`` has features ``tx[i]`` and label ``ty[i]``. Node ids missing from both
  (Citeseer's isolated test nodes) get zero features and no label. Rows of ``ally``/``ty``
  without a one get no label. ``graph`` maps a node id to its neighbours.

  Raises:
    FileNotFoundError: a part is missing.
    ValueError: parts that disagree (row counts, feature widths, class counts) or edges to
      nodes that do not exist.
  """
  directory = pathlib.Path(directory).expanduser()
  path = lambda part: directory / f"ind.{name}.{part}"
  for part in PLANETOID_PARTS + ("test.index",):
    if not path(part).is_file():
      raise FileNotFoundError(f"{path(part)}: missing; a Planetoid dataset needs "
                              f"ind.{name}.{{{','.join(PLANETOID_PARTS)},test.index}}")
  parts = {p: _load_pickle(path(p)) for p in PLANETOID_PARTS}
  x, tx, allx = (_dense(parts[p], path(p)) for p in ("x", "tx", "allx"))
  y, ty, ally = (_dense(parts[p], path(p)) for p in ("y", "ty", "ally"))
  test_index = _read_rows(path("test.index"), 1, int, "a node id")[:, 0]
  for a, b, what in ((x, y, "x/y"), (tx, ty, "tx/ty"), (allx, ally, "allx/ally")):
    if len(a) != len(b):
      raise ValueError(f"{directory}: ind.{name}.{what} have {len(a)} and {len(b)} rows; "
                       f"each feature row needs a label row")
  if len(tx) != len(test_index):
    raise ValueError(f"{path('test.index')}: {len(test_index)} ids for {len(tx)} rows of tx")
  if len({x.shape[1], tx.shape[1], allx.shape[1]}) > 1 or len({y.shape[1], ty.shape[1],
                                                               ally.shape[1]}) > 1:
    raise ValueError(f"{directory}: ind.{name}.x/tx/allx have {x.shape[1]}/{tx.shape[1]}/"
                     f"{allx.shape[1]} features and y/ty/ally {y.shape[1]}/{ty.shape[1]}/"
                     f"{ally.shape[1]} classes; they must agree")
  if len(x) > len(allx):
    raise ValueError(f"{directory}: ind.{name}.x has {len(x)} rows, more than allx "
                     f"({len(allx)}); x must be the first rows of allx")
  if test_index.size and (test_index.min() < len(allx) or len(np.unique(test_index))
                          != len(test_index)):
    raise ValueError(f"{path('test.index')}: test ids must be distinct and >= len(allx) = "
                     f"{len(allx)}")
  graph = parts["graph"]
  if not isinstance(graph, dict):
    raise ValueError(f"{path('graph')}: expected a dict of adjacency lists, got "
                     f"{type(graph).__name__}")
  n = max(len(allx), int(test_index.max()) + 1 if test_index.size else 0)
  features = np.zeros((n, x.shape[1]), np.float32)
  onehot = np.zeros((n, y.shape[1]), np.float32)
  features[:len(allx)], onehot[:len(allx)] = allx, ally
  features[test_index], onehot[test_index] = tx, ty
  labels = np.where(onehot.sum(1) > 0, np.argmax(onehot, axis=1), -1)
  split = np.full((n,), graph_lib.NO_SPLIT, np.int32)
  split[:len(x)] = graph_lib.TRAIN
  split[len(x):min(len(x) + num_validation, len(allx))] = graph_lib.VALIDATION
  split[test_index] = graph_lib.TEST
  pairs = [(int(u), int(v)) for u, neighbours in graph.items() for v in neighbours]
  for u, v in pairs:
    if not (0 <= u < n and 0 <= v < n):
      raise ValueError(f"{path('graph')}: edge {u} -> {v} references a node that does not "
                       f"exist; the features describe nodes 0..{n - 1}")
  edges = graph_lib.undirected(np.asarray(pairs).reshape(-1, 2))
  classes = tuple(str(c) for c in range(y.shape[1]))
  g = graph_lib.make_graph(features, edges, labels, -1, split, where=f"{directory}/ind.{name}")
  return GraphData([g], (), classes, f"Planetoid {name} from {directory}")


# ----------------------------------------------------------------------------------------------
# networkx classic graphs.
# ----------------------------------------------------------------------------------------------

def _karate():
  import networkx as nx
  g = nx.karate_club_graph()
  return g, [g.nodes[v]["club"] for v in g.nodes]


def _davis():
  import networkx as nx
  g = nx.davis_southern_women_graph()
  return g, [("women", "events")[g.nodes[v]["bipartite"]] for v in g.nodes]


def _florentine():
  import networkx as nx
  return nx.florentine_families_graph(), None


def _les_miserables():
  import networkx as nx
  return nx.les_miserables_graph(), None


CLASSIC: dict[str, tuple[Callable, str]] = {
    "karate_club": (_karate, "Zachary's karate club, 34 nodes, labels: the two factions"),
    "davis_southern_women": (_davis, "Davis Southern Women, 32 nodes, labels: women/events"),
    "florentine_families": (_florentine, "Florentine families, 15 nodes, no labels"),
    "les_miserables": (_les_miserables, "Les Miserables co-occurrence, 77 nodes, no labels"),
}


def classic_graph(name: str, test_fraction: float = 0.5) -> GraphData:
  """A networkx classic graph: one-hot node ids as features (they have none), undirected edges
  both ways, and a stratified node split (fixed seed) when it has node labels."""
  if name not in CLASSIC:
    raise ValueError(f"unknown classic graph {name!r}; known: {tuple(CLASSIC)}")
  make, description = CLASSIC[name]
  g, values = make()
  index = {v: i for i, v in enumerate(g.nodes)}
  edges = graph_lib.undirected([(index[u], index[v]) for u, v in g.edges])
  n = len(index)
  labels, names, split = None, (), None
  if values is not None:
    names = storage.label_names_of(values)
    labels = np.asarray([names.index(str(v)) for v in values])
    train, test = preprocess.stratified_split(labels, test_fraction, 0)
    split = np.empty((n,), np.int32)
    split[train], split[test] = graph_lib.TRAIN, graph_lib.TEST
  graph = graph_lib.make_graph(np.eye(n, dtype=np.float32), edges, labels, -1, split,
                               where=f"networkx {name}")
  return GraphData([graph], (), names, f"networkx {description}")


# ----------------------------------------------------------------------------------------------
# Knowledge graphs: triple files.
# ----------------------------------------------------------------------------------------------

KG_SPLITS = {"train": "train.txt", "validation": "valid.txt", "test": "test.txt"}
PYKEEN_SETS = {"nations": "Nations", "kinships": "Kinships", "umls": "UMLS"}


class Triples(NamedTuple):
  """A knowledge graph as ids.

  Attributes:
    splits: {"train"/"validation"/"test": int32 (m, 3) (head, relation, tail)}.
    entity_names: index = entity id.
    relation_names: index = relation id.
  """
  splits: dict[str, np.ndarray]
  entity_names: tuple[str, ...]
  relation_names: tuple[str, ...]


def _read_triple_lines(path: pathlib.Path) -> list[tuple[int, list[str]]]:
  rows = []
  with open(path, encoding="utf-8") as f:
    for line_number, line in enumerate(f, start=1):
      if not line.strip():
        continue
      cells = line.rstrip("\n").split("\t")
      if len(cells) != 3 or not all(c.strip() for c in cells):
        raise ValueError(f"{path}: line {line_number} has {len(cells)} tab-separated fields "
                         f"({line.strip()!r}); expected head<TAB>relation<TAB>tail")
      rows.append((line_number, [c.strip() for c in cells]))
  if not rows:
    raise ValueError(f"{path}: contains no triples")
  return rows


def read_triples(directory: str | pathlib.Path) -> Triples:
  """Reads ``train.txt``, ``valid.txt`` and ``test.txt`` (tab-separated triples).

  Entities and relations are numbered in sorted order of the names in the training split, as
  pykeen's ``TriplesFactory`` does; a validation or test triple naming an entity or relation
  the training split lacks is an error (its embedding could never be trained).

  Raises:
    FileNotFoundError: a split file is missing.
    ValueError: a malformed line, an empty file, or an unknown entity or relation.
  """
  directory = pathlib.Path(directory).expanduser()
  rows = {}
  for split, filename in KG_SPLITS.items():
    path = directory / filename
    if not path.is_file():
      raise FileNotFoundError(f"{path}: missing; a knowledge graph needs "
                              f"{', '.join(KG_SPLITS.values())} in {directory}")
    rows[split] = _read_triple_lines(path)
  entities = tuple(sorted({c for _, (h, _, t) in rows["train"] for c in (h, t)}))
  relations = tuple(sorted({r for _, (_, r, _) in rows["train"]}))
  entity_index = {e: i for i, e in enumerate(entities)}
  relation_index = {r: i for i, r in enumerate(relations)}
  splits = {}
  for split, lines in rows.items():
    ids = np.empty((len(lines), 3), np.int32)
    for i, (line_number, (h, r, t)) in enumerate(lines):
      where = f"{directory / KG_SPLITS[split]}: line {line_number}"
      if r not in relation_index:
        raise ValueError(f"{where}: relation {r!r} does not occur in train.txt "
                         f"(unknown relation)")
      for e in (h, t):
        if e not in entity_index:
          raise ValueError(f"{where}: entity {e!r} does not occur in train.txt "
                           f"(unknown entity)")
      ids[i] = entity_index[h], relation_index[r], entity_index[t]
    splits[split] = ids
  return Triples(splits, entities, relations)


def pykeen_dir(name: str) -> pathlib.Path:
  """The folder of a KG that pykeen ships, found without importing pykeen (it pulls torch)."""
  if name not in PYKEEN_SETS:
    raise ValueError(f"unknown bundled knowledge graph {name!r}; bundled: {tuple(PYKEEN_SETS)}")
  spec = importlib.util.find_spec("pykeen")
  if spec is None or not spec.submodule_search_locations:
    raise ModuleNotFoundError("the bundled knowledge graphs ship with pykeen: "
                              "pip install --no-deps pykeen (or vqlearn[graph])")
  return pathlib.Path(list(spec.submodule_search_locations)[0]) / "datasets" / name


# ----------------------------------------------------------------------------------------------
# TFDS builders.
# ----------------------------------------------------------------------------------------------

def _configured(cls, name: str, description: str) -> None:
  cls._CONFIGS.setdefault(name, tfds.core.BuilderConfig(name=name, description=description))


class _Unpackaged:
  """Mixin: no download checksums (nothing downloads) and configs made at run time; each
  builder keeps its own ``_CONFIGS``."""

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> None:  # see storage.SeriesBuilder.code_path
    return None

  @classmethod
  def get_builder_config(cls, name, version=None):
    del version
    return cls._CONFIGS.get(name)


class GraphSet(_Unpackaged, tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Graphs, one example per graph, in one "train" split; see the module docstring."""

  name = "vqlearn_graphs"
  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "node features, edges, node labels, node split, graph label."}
  _CONFIGS: dict[str, tfds.core.BuilderConfig] = {}

  def __init__(self, *, load: Callable[[], GraphData] | None = None, **kwargs):
    self._load = load
    super().__init__(**kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self, description=self.builder_config.description,
        features=tfds.features.FeaturesDict({
            "nodes": tfds.features.Tensor(shape=(None, None), dtype=np.float32,
                                          encoding="bytes"),
            "edges": tfds.features.Tensor(shape=(None, 2), dtype=np.int32, encoding="bytes"),
            "node_labels": tfds.features.Tensor(shape=(None,), dtype=np.int32,
                                                encoding="bytes"),
            "node_split": tfds.features.Tensor(shape=(None,), dtype=np.int32,
                                               encoding="bytes"),
            "label": tfds.features.Scalar(dtype=np.int32),
            "graph_id": tfds.features.Scalar(dtype=np.int32),
        }),
        metadata=tfds.core.MetadataDict(), disable_shuffling=True)

  def _split_generators(self, dl_manager):
    del dl_manager
    if self._load is None:
      raise RuntimeError("GraphSet is prepared through vqlearn.data.graph_files.graph_builder")
    parsed = self._load()
    self.info.metadata.update(label_names=list(parsed.label_names),
                              node_label_names=list(parsed.node_label_names),
                              num_node_features=int(parsed.graphs[0].nodes.shape[1]),
                              labels_in_features=parsed.labels_in_features)
    return {"train": self._generate_examples(parsed.graphs)}

  def _generate_examples(self, graphs):
    for i, g in enumerate(graphs):
      yield i, {"nodes": g.nodes, "edges": g.edges.reshape(-1, 2), "node_labels": g.node_labels,
                "node_split": g.node_split, "label": g.label, "graph_id": i}


class TripleSet(_Unpackaged, tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """A knowledge graph's triples as ids; names in the metadata."""

  name = "vqlearn_triples"
  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "(head, relation, tail) ids per split."}
  _CONFIGS: dict[str, tfds.core.BuilderConfig] = {}

  def __init__(self, *, load: Callable[[], Triples] | None = None, **kwargs):
    self._load = load
    super().__init__(**kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self, description=self.builder_config.description,
        features=tfds.features.FeaturesDict({
            "triple": tfds.features.Tensor(shape=(3,), dtype=np.int32),
            "index": tfds.features.Scalar(dtype=np.int32)}),
        metadata=tfds.core.MetadataDict(), disable_shuffling=True)

  def _split_generators(self, dl_manager):
    del dl_manager
    if self._load is None:
      raise RuntimeError("TripleSet is prepared through vqlearn.data.graph_files.kg_builder")
    parsed = self._load()
    self.info.metadata.update(entity_names=list(parsed.entity_names),
                              relation_names=list(parsed.relation_names))
    return {split: self._generate_examples(t) for split, t in parsed.splits.items()}

  def _generate_examples(self, triples):
    for i, t in enumerate(triples):
      yield i, {"triple": t, "index": i}


def _digest(paths: Sequence[pathlib.Path], *extra: str) -> str:
  digest = hashlib.sha256("\0".join(extra).encode())
  for p in sorted(paths):
    digest.update(p.name.encode() + b"\0" + p.read_bytes())
  return digest.hexdigest()[:16]


def graph_builder(source: str, data_dir: str, *, path: str = "", node_features: str = "",
                  ) -> tfds.core.DatasetBuilder:
  """The prepared graph set named by ``source``, preparing it on first use.

  Args:
    source: "MUTAG" or "Cuneiform" (grakel's TU sets), a networkx classic (``CLASSIC``),
      "tu" (a TU dataset: ``path`` is ``<folder>/<NAME>``) or "planetoid" (``path`` is
      ``<folder>/<name>`` for ``<folder>/ind.<name>.*``).
    data_dir: the prepared-data cache.
    path: for "tu" and "planetoid", as above.
    node_features: for TU sets, see ``read_tu``; "" = the bundled set's default (MUTAG:
      one-hot atom labels; Cuneiform: the 3 coordinates, its node labels being the
      node-classification target) or "attributes" for "tu".

  Returns:
    A builder with one "train" split, readable with ``read_graphs``.
  """
  defaults = {"MUTAG": "labels", "Cuneiform": "attributes"}
  if source in defaults:
    features = node_features or defaults[source]
    directory = grakel_dir() / source
    load = lambda: read_tu(directory, source, features)
    name = f"{source}_{features}"
    description = f"grakel's {source} (TU format), node features: {features}"
  elif source in CLASSIC:
    load = lambda: classic_graph(source)
    name, description = source, CLASSIC[source][1]
  elif source in ("tu", "planetoid"):
    if not path:
      raise ValueError(f"config.data.path must be <folder>/<NAME> for dataset {source!r}")
    folder, stem = pathlib.Path(path).expanduser().parent, pathlib.Path(path).name
    if source == "tu":
      features = node_features or "attributes"
      files = sorted(folder.glob(f"{stem}_*.txt"))
      load = lambda: read_tu(folder, stem, features)
    else:
      features = ""
      files = sorted(folder.glob(f"ind.{stem}.*"))
      load = lambda: read_planetoid(folder, stem)
    if not files:
      pattern = f"{stem}_*.txt" if source == "tu" else f"ind.{stem}.*"
      raise FileNotFoundError(f"config.data.path = {path!r}: no files {pattern} in {folder}")
    name = f"{source}_{stem}_{_digest(files, features)}"
    description = f"{source} files {folder}/{stem} ({features or 'features as stored'})"
  else:
    raise ValueError(f"unknown graph dataset {source!r}; bundled: MUTAG, Cuneiform, "
                     f"{', '.join(CLASSIC)}; or 'tu' / 'planetoid' with config.data.path")
  _configured(GraphSet, name, description)
  make = lambda: GraphSet(config=name, data_dir=data_dir, load=load)
  return storage.prepare(make)


def kg_builder(source: str, data_dir: str, *, path: str = "") -> tfds.core.DatasetBuilder:
  """The prepared knowledge graph: "nations", "kinships", "umls" (pykeen's files) or "files"
  (``path`` is a folder with train.txt, valid.txt and test.txt)."""
  if source in PYKEEN_SETS:
    directory = pykeen_dir(source)
    name, description = source, f"{PYKEEN_SETS[source]} as pykeen ships it ({directory})"
  elif source == "files":
    if not path:
      raise ValueError("config.data.path must name a folder with train.txt, valid.txt and "
                       "test.txt when config.data.name is 'files'")
    directory = pathlib.Path(path).expanduser()
    files = [directory / f for f in KG_SPLITS.values()]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
      raise FileNotFoundError(f"config.data.path = {path!r}: missing {missing}")
    name = f"files_{_digest(files)}"
    description = f"triples from {directory}"
  else:
    raise ValueError(f"unknown knowledge graph {source!r}; bundled: {tuple(PYKEEN_SETS)}, or "
                     f"'files' with config.data.path")
  _configured(TripleSet, name, description)
  make = lambda: TripleSet(config=name, data_dir=data_dir, load=lambda: read_triples(directory))
  return storage.prepare(make)


def read_graphs(builder: tfds.core.DatasetBuilder) -> GraphData:
  """Every graph of a prepared ``GraphSet``, in source order."""
  source = builder.as_data_source(split="train")
  records = source.__getitems__(range(len(source)))
  records = sorted(records, key=lambda r: int(r["graph_id"]))
  graphs = [graph_lib.Graph(np.asarray(r["nodes"], np.float32),
                            np.asarray(r["edges"], np.int32).reshape(-1, 2),
                            np.asarray(r["node_labels"], np.int32), int(r["label"]),
                            np.asarray(r["node_split"], np.int32)) for r in records]
  meta = builder.info.metadata
  return GraphData(graphs, tuple(meta.get("label_names", ())),
                   tuple(meta.get("node_label_names", ())), builder.info.description,
                   bool(meta.get("labels_in_features", False)))


def read_kg(builder: tfds.core.DatasetBuilder) -> Triples:
  """Every triple of a prepared ``TripleSet``, per split, in source order."""
  splits = {}
  for split in KG_SPLITS:
    source = builder.as_data_source(split=split)
    records = sorted(source.__getitems__(range(len(source))), key=lambda r: int(r["index"]))
    splits[split] = np.asarray([r["triple"] for r in records], np.int32).reshape(-1, 3)
  meta = builder.info.metadata
  return Triples(splits, tuple(meta["entity_names"]), tuple(meta["relation_names"]))
