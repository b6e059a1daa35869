"""Graph data: padded batches, message passing, TU/KG/Planetoid/networkx importers, builders,
iterators, and the errors bad files raise."""

import collections
import pathlib
import pickle

import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse as sp

from vqlearn.data import graph_files, graph_pipeline, graphs


def _graph(n, edges, label=-1, features=None):
  nodes = np.arange(n * 2, dtype=np.float32).reshape(n, 2) if features is None else features
  return graphs.make_graph(nodes, edges, np.arange(n) % 2, label)


# ----------------------------------------------------------------------------------------------
# Batching and message passing.
# ----------------------------------------------------------------------------------------------

def test_pad_graphs_layout_by_hand():
  a = _graph(2, [(0, 1), (1, 0)], label=1)
  b = _graph(3, [(2, 0)], label=0)
  batch = graphs.pad_graphs([a, b], max_nodes=4, max_edges=3)
  assert {k: v.shape for k, v in batch.items()} == {
      "nodes": (2, 4, 2), "node_mask": (2, 4), "edges": (2, 3, 2), "edge_mask": (2, 3),
      "node_labels": (2, 4), "node_split": (2, 4), "label": (2,)}
  np.testing.assert_array_equal(batch["node_mask"], [[1, 1, 0, 0], [1, 1, 1, 0]])
  np.testing.assert_array_equal(batch["edge_mask"], [[1, 1, 0], [1, 0, 0]])
  np.testing.assert_array_equal(batch["edges"][1], [[2, 0], [0, 0], [0, 0]])
  np.testing.assert_array_equal(batch["nodes"][1, :3], b.nodes)
  assert not batch["nodes"][0, 2:].any()
  np.testing.assert_array_equal(batch["node_labels"], [[0, 1, -1, -1], [0, 1, 0, -1]])
  np.testing.assert_array_equal(batch["label"], [1, 0])
  with pytest.raises(ValueError, match="graph 1 has 3 nodes"):
    graphs.pad_graphs([a, b], max_nodes=2, max_edges=3)


def test_aggregate_sums_real_edges_only_and_offsets_graphs():
  # Graph 0: 0->1, 1->0, 0->... ; graph 1: 2->0. Padded edge slots carry NaN messages.
  batch = graphs.pad_graphs([_graph(2, [(0, 1), (1, 0)]), _graph(3, [(2, 0), (1, 0)])], 3, 2)
  flat = graphs.flatten(batch["nodes"], batch["node_mask"], batch["edges"], batch["edge_mask"])
  np.testing.assert_array_equal(flat.senders, [0, 1, 5, 4])
  np.testing.assert_array_equal(flat.receivers, [1, 0, 3, 3])
  messages = jnp.asarray(flat.nodes)[flat.senders]
  got = np.asarray(graphs.aggregate(messages, flat))
  # Node 3 (graph 1, node 0) receives from nodes 5 and 4 (graph 1's 2 and 1).
  expected = np.zeros((6, 2), np.float32)
  expected[1] = batch["nodes"][0, 0]
  expected[0] = batch["nodes"][0, 1]
  expected[3] = batch["nodes"][1, 2] + batch["nodes"][1, 1]
  np.testing.assert_array_equal(got, expected)
  np.testing.assert_array_equal(graphs.in_degree(flat), [1, 1, 0, 2, 0, 0])
  nan_batch = dict(batch, edge_mask=np.asarray([[1, 0], [1, 1]], np.float32))
  flat = graphs.flatten(nan_batch["nodes"], nan_batch["node_mask"], nan_batch["edges"],
                        nan_batch["edge_mask"])
  poisoned = jnp.where((flat.edge_mask > 0)[:, None], 1.0, jnp.nan) * jnp.ones((4, 2))
  assert np.isfinite(np.asarray(graphs.aggregate(poisoned, flat))).all()


def test_make_graph_errors_name_the_problem():
  with pytest.raises(ValueError, match="at least one node"):
    graphs.make_graph(np.zeros((0, 3)), [])
  with pytest.raises(ValueError, match=r"edge 1 \(0 -> 5\) references a node that does not "
                                       r"exist; the graph has nodes 0..2"):
    graphs.make_graph(np.zeros((3, 1)), [(0, 1), (0, 5)], where="g")
  with pytest.raises(ValueError, match="node_labels must have one entry per node"):
    graphs.make_graph(np.zeros((3, 1)), [], node_labels=[0, 1])
  with pytest.raises(ValueError, match="node 1 has a NaN"):
    graphs.make_graph(np.asarray([[0.0], [np.nan]]), [])


def test_undirected_adds_both_directions_once_without_self_loops():
  np.testing.assert_array_equal(graphs.undirected([(0, 1), (1, 0), (2, 2), (1, 2)]),
                                [[0, 1], [1, 0], [1, 2], [2, 1]])


# ----------------------------------------------------------------------------------------------
# TU format.
# ----------------------------------------------------------------------------------------------

def _write_tu(folder: pathlib.Path, name, indicator, graph_labels, edges, node_labels=None,
              attributes=None):
  folder.mkdir(parents=True, exist_ok=True)
  write = lambda suffix, rows: (folder / f"{name}_{suffix}.txt").write_text(
      "".join(", ".join(str(v) for v in np.atleast_1d(r)) + "\n" for r in rows))
  write("graph_indicator", indicator)
  write("graph_labels", graph_labels)
  write("A", edges)
  if node_labels is not None:
    write("node_labels", node_labels)
  if attributes is not None:
    write("node_attributes", attributes)


def test_tu_round_trip_of_a_written_fixture(tmp_path):
  # Two graphs: nodes 1-3 (a triangle) and nodes 4-5 (one edge), labels 7 and -2.
  edges = [(1, 2), (2, 1), (2, 3), (3, 2), (1, 3), (3, 1), (4, 5), (5, 4)]
  attributes = np.arange(10, dtype=float).reshape(5, 2) / 4
  _write_tu(tmp_path, "T", [1, 1, 1, 2, 2], [7, -2], edges, [[0, 1], [1, 1], [0, 1], [1, 0],
                                                            [1, 1]], attributes)
  parsed = graph_files.read_tu(tmp_path, "T", "both")
  assert parsed.label_names == ("-2", "7") and parsed.node_label_names == ("0,1", "1,0", "1,1")
  first, second = parsed.graphs
  assert (first.label, second.label) == (1, 0)
  np.testing.assert_array_equal(first.edges, np.asarray(edges[:6]) - 1)
  np.testing.assert_array_equal(second.edges, [[0, 1], [1, 0]])
  np.testing.assert_array_equal(first.node_labels, [0, 2, 0])
  # Attributes, then one one-hot block per label column (values {0, 1} each).
  np.testing.assert_allclose(second.nodes, [[1.5, 1.75, 0, 1, 1, 0], [2.0, 2.25, 0, 1, 0, 1]])
  assert parsed.labels_in_features


@pytest.mark.parametrize("case, message", [
    ("missing_node", r"T_A.txt: line 2 \(1, 9\) references a node that does not exist; node "
                     r"ids are 1..5"),
    ("crossing", r"line 3 joins node 3 of graph 1 to node 4 of graph 2"),
    ("empty_graph", r"graph 2 has no nodes \(an empty graph\)"),
    ("unsorted", r"line 4 goes back to an earlier graph"),
    ("label_count", r"T_node_labels.txt: 4 lines, but T_graph_indicator.txt has 5 nodes"),
    ("graph_id", r"graph ids must lie in \[1, 2\]"),
    ("not_a_number", r"T_A.txt: line 1 is '1, x', expected a pair of node ids"),
])
def test_tu_files_that_disagree_raise_clear_errors(tmp_path, case, message):
  indicator, labels, edges = [1, 1, 1, 2, 2], [0, 1], [(1, 2), (2, 1), (4, 5)]
  node_labels = [0, 0, 1, 1, 0]
  if case == "missing_node":
    edges = [(1, 2), (1, 9)]
  elif case == "crossing":
    edges = [(1, 2), (2, 1), (3, 4)]
  elif case == "empty_graph":
    indicator, labels = [1, 1, 1, 3, 3], [0, 1, 0]
  elif case == "unsorted":
    indicator = [1, 1, 2, 1, 2]
  elif case == "label_count":
    node_labels = node_labels[:4]
  elif case == "graph_id":
    indicator = [1, 1, 1, 2, 3]
  _write_tu(tmp_path, "T", indicator, labels, edges, node_labels)
  if case == "not_a_number":
    (tmp_path / "T_A.txt").write_text("1, x\n")
  with pytest.raises(ValueError, match=message):
    graph_files.read_tu(tmp_path, "T", "labels")


def test_tu_missing_files_are_named(tmp_path):
  _write_tu(tmp_path, "T", [1, 1], [0], [(1, 2)])
  with pytest.raises(FileNotFoundError, match="T_node_attributes.txt: missing"):
    graph_files.read_tu(tmp_path, "T", "attributes")
  (tmp_path / "T_A.txt").unlink()
  with pytest.raises(FileNotFoundError, match="T_A.txt: missing"):
    graph_files.read_tu(tmp_path, "T", "labels")


def test_grakel_sets_have_the_documented_sizes():
  mutag = graph_files.read_tu(graph_files.grakel_dir() / "MUTAG", "MUTAG", "labels")
  assert len(mutag.graphs) == 188 and mutag.label_names == ("-1", "1")
  assert sum(g.num_nodes for g in mutag.graphs) == 3371
  assert sum(g.num_edges for g in mutag.graphs) == 7442
  assert mutag.graphs[0].nodes.shape[1] == 7  # one-hot atom types
  np.testing.assert_array_equal(mutag.graphs[0].nodes.sum(1), 1.0)
  cuneiform = graph_files.read_tu(graph_files.grakel_dir() / "Cuneiform", "Cuneiform")
  assert len(cuneiform.graphs) == 267 and len(cuneiform.label_names) == 30
  assert sum(g.num_nodes for g in cuneiform.graphs) == 5680
  assert cuneiform.graphs[0].nodes.shape[1] == 3
  assert len(cuneiform.node_label_names) == 12  # 4 vertex types x 3 wedge types


# ----------------------------------------------------------------------------------------------
# Knowledge graphs.
# ----------------------------------------------------------------------------------------------

def _write_kg(folder, train, valid, test):
  folder.mkdir(parents=True, exist_ok=True)
  for name, rows in (("train", train), ("valid", valid), ("test", test)):
    (folder / f"{name}.txt").write_text("".join("\t".join(r) + "\n" for r in rows))


def test_triples_round_trip_with_sorted_vocabularies(tmp_path):
  train = [("b", "likes", "a"), ("a", "knows", "c")]
  _write_kg(tmp_path, train, [("c", "likes", "b")], [("a", "likes", "c")])
  kg = graph_files.read_triples(tmp_path)
  assert kg.entity_names == ("a", "b", "c") and kg.relation_names == ("knows", "likes")
  np.testing.assert_array_equal(kg.splits["train"], [[1, 1, 0], [0, 0, 2]])
  np.testing.assert_array_equal(kg.splits["validation"], [[2, 1, 1]])
  np.testing.assert_array_equal(kg.splits["test"], [[0, 1, 2]])
  np.testing.assert_array_equal(graph_pipeline.with_inverses(kg.splits["test"], 2),
                                [[0, 1, 2], [2, 3, 0]])


@pytest.mark.parametrize("bad, message", [
    (("a", "hates", "b"), r"test.txt: line 1: relation 'hates' does not occur in train.txt"),
    (("a", "likes", "z"), r"entity 'z' does not occur in train.txt"),
])
def test_unknown_relations_and_entities_raise(tmp_path, bad, message):
  _write_kg(tmp_path, [("a", "likes", "b")], [("a", "likes", "b")], [bad])
  with pytest.raises(ValueError, match=message):
    graph_files.read_triples(tmp_path)


def test_malformed_triple_lines_raise(tmp_path):
  _write_kg(tmp_path, [("a", "likes", "b")], [("a", "likes", "b")], [("a", "likes", "b")])
  (tmp_path / "valid.txt").write_text("a\tlikes\n")
  with pytest.raises(ValueError, match=r"valid.txt: line 1 has 2 tab-separated fields"):
    graph_files.read_triples(tmp_path)


@pytest.mark.parametrize("name, sizes", [("nations", (14, 55, 1592, 199, 201)),
                                         ("kinships", (104, 25, 8544, 1068, 1074)),
                                         ("umls", (135, 46, 5216, 652, 661))])
def test_pykeen_sets_have_the_documented_sizes(name, sizes):
  kg = graph_files.read_triples(graph_files.pykeen_dir(name))
  assert (len(kg.entity_names), len(kg.relation_names), len(kg.splits["train"]),
          len(kg.splits["validation"]), len(kg.splits["test"])) == sizes


# ----------------------------------------------------------------------------------------------
# Planetoid.
# ----------------------------------------------------------------------------------------------

def _write_planetoid(folder, name="toy", test_index=(5, 7), graph=None):
  """A Citeseer-like fixture: 5 allx nodes (2 labelled training nodes), 2 test nodes at ids 5
  and 7, so node 6 is a gap; 3 features, 2 classes."""
  folder.mkdir(parents=True, exist_ok=True)
  allx = np.arange(15, dtype=np.float32).reshape(5, 3)
  ally = np.eye(2, dtype=np.float32)[[0, 1, 1, 0, 1]]
  ally[4] = 0  # an unlabelled node
  tx = np.asarray([[100, 0, 0], [0, 200, 0]], np.float32)
  ty = np.eye(2, dtype=np.float32)[[1, 0]]
  graph = graph if graph is not None else collections.defaultdict(
      list, {0: [1, 5], 1: [0], 5: [0, 7], 7: [5]})
  parts = {"x": sp.csr_matrix(allx[:2]), "y": ally[:2], "allx": sp.csr_matrix(allx),
           "ally": ally, "tx": sp.csr_matrix(tx), "ty": ty, "graph": graph}
  for part, value in parts.items():
    with open(folder / f"ind.{name}.{part}", "wb") as f:
      pickle.dump(value, f, protocol=2)
  (folder / f"ind.{name}.test.index").write_text("".join(f"{i}\n" for i in test_index))


def test_planetoid_fixture_reads_back(tmp_path):
  _write_planetoid(tmp_path)
  parsed = graph_files.read_planetoid(tmp_path, "toy", num_validation=2)
  (g,) = parsed.graphs
  assert g.num_nodes == 8 and parsed.node_label_names == ("0", "1")
  np.testing.assert_array_equal(g.nodes[:5], np.arange(15).reshape(5, 3))
  np.testing.assert_array_equal(g.nodes[5], [100, 0, 0])
  np.testing.assert_array_equal(g.nodes[7], [0, 200, 0])
  assert not g.nodes[6].any()  # the gap
  np.testing.assert_array_equal(g.node_labels, [0, 1, 1, 0, -1, 1, -1, 0])
  np.testing.assert_array_equal(g.node_split, [0, 0, 1, 1, -1, 2, -1, 2])
  np.testing.assert_array_equal(g.edges, [[0, 1], [0, 5], [1, 0], [5, 0], [5, 7], [7, 5]])


def test_planetoid_errors(tmp_path):
  _write_planetoid(tmp_path / "a", graph={0: [9]})
  with pytest.raises(ValueError, match=r"edge 0 -> 9 references a node that does not exist"):
    graph_files.read_planetoid(tmp_path / "a", "toy")
  _write_planetoid(tmp_path / "b", test_index=(5,))
  with pytest.raises(ValueError, match=r"1 ids for 2 rows of tx"):
    graph_files.read_planetoid(tmp_path / "b", "toy")
  _write_planetoid(tmp_path / "c")
  (tmp_path / "c" / "ind.toy.graph").write_bytes(pickle.dumps(pathlib.Path("/")))
  with pytest.raises(ValueError, match=r"refusing to load pathlib"):
    graph_files.read_planetoid(tmp_path / "c", "toy")
  (tmp_path / "c" / "ind.toy.ty").unlink()
  with pytest.raises(FileNotFoundError, match=r"ind.toy.ty: missing"):
    graph_files.read_planetoid(tmp_path / "c", "toy")


# ----------------------------------------------------------------------------------------------
# networkx, builders and iterators.
# ----------------------------------------------------------------------------------------------

def test_karate_club_is_one_graph_with_a_stratified_node_split():
  (g,) = graph_files.classic_graph("karate_club").graphs
  assert g.num_nodes == 34 and g.num_edges == 2 * 78
  np.testing.assert_array_equal(g.nodes, np.eye(34))
  assert set(np.unique(g.node_split)) == {graphs.TRAIN, graphs.TEST}
  assert abs((g.node_split == graphs.TEST).sum() - 17) <= 1


def test_builders_read_back_what_the_readers_return(tmp_path):
  folder = tmp_path / "files"
  edges = [(1, 2), (2, 1), (3, 4), (4, 3), (3, 5)]
  _write_tu(folder, "T", [1, 1, 2, 2, 2], [0, 1], edges, [0, 1, 1, 0, 1])
  builder = graph_files.graph_builder("tu", str(tmp_path / "cache"), path=str(folder / "T"),
                                      node_features="labels")
  stored = graph_files.read_graphs(builder)
  direct = graph_files.read_tu(folder, "T", "labels")
  assert stored.label_names == direct.label_names and stored.labels_in_features
  for a, b in zip(stored.graphs, direct.graphs):
    for x, y in zip(a, b):
      np.testing.assert_array_equal(x, y)
  # Editing a file prepares a new dataset instead of reusing the stale one.
  _write_tu(folder, "T", [1, 1, 2, 2, 2], [1, 1], edges, [0, 1, 1, 0, 1])
  again = graph_files.graph_builder("tu", str(tmp_path / "cache"), path=str(folder / "T"),
                                    node_features="labels")
  assert again.data_dir != builder.data_dir
  assert [g.label for g in graph_files.read_graphs(again).graphs] == [0, 0]
  kg_folder = tmp_path / "kg"
  _write_kg(kg_folder, [("b", "r", "a"), ("a", "s", "b")], [("a", "r", "b")], [("b", "s", "a")])
  kg = graph_files.read_kg(graph_files.kg_builder("files", str(tmp_path / "cache"),
                                                  path=str(kg_folder)))
  direct = graph_files.read_triples(kg_folder)
  assert kg.entity_names == direct.entity_names and kg.relation_names == direct.relation_names
  for split in graph_files.KG_SPLITS:
    np.testing.assert_array_equal(kg.splits[split], direct.splits[split])


def test_config_errors_name_the_field():
  with pytest.raises(ValueError, match=r"config.data.name must be one of"):
    graph_pipeline.check_graph_config({"name": "Cora"})
  with pytest.raises(ValueError, match=r"config.data.test_fraction must be a number in \(0, 1\)"):
    graph_pipeline.check_graph_config({"name": "MUTAG", "test_fraction": 1.0})
  with pytest.raises(ValueError, match=r"config.data.path must be <folder>/<NAME>"):
    graph_files.graph_builder("tu", "/nonexistent")


def _batches(iterator_fn, cfg, process_count, steps=3, batch=8):
  its = [iterator_fn(cfg, global_batch_size=batch, seed=1, process_index=p,
                     process_count=process_count) for p in range(process_count)]
  out = []
  for _ in range(steps):
    local = [next(it) for it in its]
    out.append({k: np.concatenate([b[k] for b in local]) for k in local[0]})
  return out, its


@pytest.mark.parametrize("kind", ["graphs", "triples"])
def test_global_batches_do_not_depend_on_process_count_and_resume(tmp_path, kind):
  if kind == "graphs":
    edges = [(1, 2), (2, 1), (3, 4), (4, 3), (5, 6), (6, 7), (8, 9), (9, 10), (11, 12)]
    _write_tu(tmp_path, "T", [1, 1, 2, 2] + [3 + i // 3 for i in range(8)], [0, 1, 0, 1, 1],
              edges, [0] * 12)
    cfg = {"name": "tu", "path": str(tmp_path / "T"), "node_features": "labels",
           "test_fraction": 0.2, "dir": str(tmp_path / "cache")}
    fn = graph_pipeline.graph_train_iterator
  else:
    cfg = {"name": "nations", "dir": str(tmp_path / "cache")}
    fn = graph_pipeline.kg_train_iterator
  one, (it,) = _batches(fn, cfg, 1)
  two, _ = _batches(fn, cfg, 2)
  for a, b in zip(one, two):
    for k in a:
      np.testing.assert_array_equal(a[k], b[k])
  if kind == "graphs":  # 4 training graphs padded to the largest graph of the set
    assert one[0]["nodes"].shape == (8, 3, 1) and one[0]["edges"].shape == (8, 2, 2)
  state = it.get_state()
  later = [next(it) for _ in range(2)]
  it.set_state(state)
  for a, b in zip(later, [next(it) for _ in range(2)]):
    for k in a:
      np.testing.assert_array_equal(a[k], b[k])
