"""VQGraph tokenizer and KG entity codes: padding and permutation invariance, one compilation
for every graph size, layers against their formulas, bags of codes, DistMult scores."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vqlearn import models, quantizers
from vqlearn.data import graphs
from vqlearn.evaluators import probe
from vqlearn.models import graph as graph_models

TINY = dict(hidden=8, latent_dim=4, decoder_hidden=8)


@functools.lru_cache(maxsize=None)
def _model(conv):
  return models.get("vqgraph", quantizers.get("vq", codebook_size=8), conv=conv, **TINY)


def _random_graphs(seed=0, sizes=(5, 3, 6)):
  rng = np.random.default_rng(seed)
  out = []
  for n in sizes:
    pairs = [(u, v) for u in range(n) for v in range(n) if u < v and rng.random() < 0.5]
    out.append(graphs.make_graph(rng.normal(size=(n, 3)), graphs.undirected(
        np.asarray(pairs).reshape(-1, 2)), label=n % 2))
  return out


@functools.lru_cache(maxsize=None)
def _jitted(conv, train):
  model = _model(conv)
  return jax.jit(lambda p, s, b, r: model.apply(p, s, b, rng=r, train=train))


def _init(conv, batch):
  return _model(conv).init(jax.random.PRNGKey(0), batch)


@pytest.mark.parametrize("conv", ["sage", "gcn"])
def test_padding_never_changes_real_nodes_or_losses(conv):
  gs = _random_graphs()
  small = graphs.pad_graphs(gs, 6, 16)
  big = graphs.pad_graphs(gs + [gs[1]], 9, 23)  # more nodes, edges and graphs
  big = {k: v[[0, 1, 2]] if k == "label" else v[:3] for k, v in big.items()}
  params, state = _init(conv, small)
  model = _model(conv)
  rng = jax.random.PRNGKey(3)
  a, _ = jax.jit(lambda b: model.apply(params, state, b, rng=rng, train=True))(small)
  b, _ = jax.jit(lambda b: model.apply(params, state, b, rng=rng, train=True))(big)
  real = small["node_mask"] > 0
  np.testing.assert_array_equal(np.asarray(a.quantizer.codes)[real],
                                np.asarray(b.quantizer.codes)[:, :6][real])
  np.testing.assert_allclose(np.asarray(a.latents)[real], np.asarray(b.latents)[:, :6][real],
                             rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(np.asarray(a.reconstruction)[real],
                             np.asarray(b.reconstruction)[:, :6][real], rtol=1e-5, atol=1e-6)
  assert (np.asarray(b.quantizer.codes)[b.node_mask == 0] == -1).all()
  terms_a, terms_b = model.reconstruction_terms(a), model.reconstruction_terms(b)
  for k in terms_a:
    np.testing.assert_allclose(terms_a[k], terms_b[k], rtol=1e-5)


@pytest.mark.parametrize("conv", ["sage", "gcn"])
def test_permuting_nodes_permutes_codes(conv):
  g = _random_graphs(seed=1, sizes=(6,))[0]
  perm = np.random.default_rng(0).permutation(g.num_nodes)
  inverse = np.argsort(perm)
  permuted = graphs.make_graph(g.nodes[perm], inverse[g.edges], g.node_labels[perm])
  batch = graphs.pad_graphs([g, permuted], 7, 16)
  params, state = _init(conv, batch)
  out, _ = _jitted(conv, False)(params, state, batch, None)
  codes = np.asarray(out.quantizer.codes)
  np.testing.assert_array_equal(codes[1, :6], codes[0, :6][perm])
  np.testing.assert_allclose(np.asarray(out.latents)[1, :6], np.asarray(out.latents)[0, :6][perm],
                             rtol=1e-5, atol=1e-6)


def test_graphs_of_different_sizes_compile_once():
  params, state = _init("sage", graphs.pad_graphs(_random_graphs(), 8, 32))
  step = jax.jit(lambda p, s, b: _model("sage").apply(p, s, b, train=False)[0].quantizer.codes)
  for seed, sizes in enumerate([(5, 3, 6), (8, 1, 2), (4, 4, 7)]):
    step(params, state, graphs.pad_graphs(_random_graphs(seed, sizes), 8, 32))
  assert step._cache_size() == 1


def _layer(conv, nodes, edges):
  flat = graphs.flatten(jnp.asarray(nodes)[None], jnp.ones((1, len(nodes))),
                        jnp.asarray(edges)[None], jnp.ones((1, len(edges))))
  layer = graph_models.GraphConv(2, conv)
  variables = layer.init(jax.random.PRNGKey(1), flat.nodes, flat)
  return (np.asarray(layer.apply(variables, flat.nodes, flat)),
          jax.tree.map(np.asarray, variables["params"]))


def test_gcn_layer_is_the_symmetric_normalised_propagation():
  # Path 0 - 1 - 2: D^-1/2 (A + I) D^-1/2 X W + b (Kipf & Welling 2017).
  x = np.asarray([[1.0, 0.0], [0.0, 2.0], [3.0, 1.0]], np.float32)
  edges = np.asarray([[0, 1], [1, 0], [1, 2], [2, 1]])
  got, params = _layer("gcn", x, edges)
  a_hat = np.eye(3) + np.asarray([[0, 1, 0], [1, 0, 1], [0, 1, 0]])
  d = a_hat.sum(1) ** -0.5
  expected = (d[:, None] * a_hat * d[None, :]) @ x @ params["weight"]["kernel"] + params["bias"]
  np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_sage_layer_is_self_plus_mean_of_in_neighbours():
  x = np.asarray([[1.0, 0.0], [0.0, 2.0], [3.0, 1.0]], np.float32)
  edges = np.asarray([[0, 1], [2, 1], [1, 0]])  # node 1 hears 0 and 2; node 2 hears nobody
  got, params = _layer("sage", x, edges)
  mean = np.asarray([x[1], (x[0] + x[2]) / 2, np.zeros(2)])
  expected = (x @ params["self"]["kernel"] + params["self"]["bias"]
              + mean @ params["neighbours"]["kernel"])
  np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_negative_receivers_are_real_nodes_of_the_same_graph():
  mask = np.zeros((3, 10), np.float32)
  mask[0, :1], mask[1, :4], mask[2, :10] = 1, 1, 1
  draws = np.asarray(graph_models.negative_receivers(jax.random.PRNGKey(0), mask, 200))
  assert (draws[0] == 0).all()
  assert set(draws[1]) == {0, 1, 2, 3}
  assert draws[2].max() <= 9 and len(set(draws[2])) == 10
  # More edge slots or padded graphs leave the earlier draws as they were.
  more = np.asarray(graph_models.negative_receivers(
      jax.random.PRNGKey(0), np.concatenate([mask, mask[:1]]), 300))
  np.testing.assert_array_equal(more[:3, :200], draws)


def test_bag_of_codes_by_hand_and_as_the_probe_histograms():
  codes = np.asarray([[[1, 0], [1, 2], [3, 2], [-1, -1]]], np.int32)  # 3 real nodes, S=2
  mask = np.asarray([[1, 1, 1, 0]], np.float32)
  bag = np.asarray(graph_models.bag_of_codes(codes, mask, 4))
  np.testing.assert_allclose(bag, [[0, 2 / 3, 0, 1 / 3, 1 / 3, 0, 2 / 3, 0]])
  np.testing.assert_allclose(bag, probe.code_histograms(codes, mask, 4))


def test_bad_options_and_batches_raise():
  q = quantizers.get("vq", codebook_size=8)
  with pytest.raises(ValueError, match="conv must be one of"):
    models.get("vqgraph", q, conv="gat")
  with pytest.raises(ValueError, match="feature_weight must be a number >= 0"):
    models.get("vqgraph", q, feature_weight=-1)
  batch = graphs.pad_graphs(_random_graphs(), 6, 16)
  with pytest.raises(ValueError, match=r"a graph batch needs key 'edge_mask'"):
    _model("sage").init(jax.random.PRNGKey(0), {k: v for k, v in batch.items()
                                                if k != "edge_mask"})
  with pytest.raises(ValueError, match=r"batch\['node_mask'\] must have shape \(3, 6\)"):
    _model("sage").init(jax.random.PRNGKey(0), dict(batch, node_mask=batch["node_mask"][:, :5]))


def test_kg_codes_score_with_distmult_and_quantize_every_entity(tmp_path):
  q = quantizers.get("residual", base="vq", levels=2, codebook_size=4)
  model = models.get("kg_codes", q, dataset="nations", data_dir=str(tmp_path), dim=6, layers=0)
  assert (model.num_entities, model.num_relations) == (14, 55)
  params, state = model.init(jax.random.PRNGKey(0))
  head, relation = jnp.asarray([0, 3, 13]), jnp.asarray([1, 54, 109])  # 109: an inverse
  out, _ = jax.jit(lambda p, s: model.apply(p, s, head, relation))(params, state)
  # Without message passing the latents are the entity embeddings themselves.
  np.testing.assert_array_equal(out.table.latents, params["encoder"]["entities"])
  assert out.table.codes.shape == (14, 2) and out.logits.shape == (3, 14)
  z, w = np.asarray(out.table.quantized), np.asarray(params["scorer"]["relations"])
  expected = np.einsum("bd,bd,ed->be", z[[0, 3, 13]], w[[1, 54, 109]], z)
  np.testing.assert_allclose(out.logits, expected, rtol=1e-5, atol=1e-6)
  table = model.entities(params, state)
  np.testing.assert_array_equal(table.codes, out.table.codes)
  np.testing.assert_allclose(q.lookup(params["quantizer"], state["quantizer"], table.codes),
                             table.quantized, rtol=1e-6)
  with pytest.raises(ValueError, match="score_with must be one of"):
    models.get("kg_codes", q, dataset="nations", data_dir=str(tmp_path), score_with="both")
