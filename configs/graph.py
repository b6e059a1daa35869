r"""VQGraph-style node tokenizer on graphs: grakel's TU sets, networkx classics, your files.

Launch (from the repository root):

    python -m vqlearn.main --config configs/graph.py:quantizer=ema_vq,dataset=Cuneiform \
        --workdir runs/graph_cuneiform_ema
    python -m vqlearn.main --config configs/graph.py:preset=vqgraph,dataset=MUTAG \
        --workdir runs/graph_mutag_vqgraph
    python -m vqlearn.main --config configs/graph.py:smoke --workdir /tmp/graph_smoke

Arguments after the colon: ``quantizer`` (a registry name), ``dataset`` (MUTAG, Cuneiform, a
networkx classic such as karate_club, or ``tu``/``planetoid`` with ``--config.data.path=
<folder>/<NAME>``), ``preset`` ("" or "vqgraph": VQGraph's cosine EMA codebook with decay 0.8,
commitment 0.25, feature and link reconstruction weights 0.001 and 0.03 from REFERENCE.md §7),
``conv`` (sage or gcn), ``seed`` and the flag ``smoke``. Sizes are small on purpose: the sets
have 3-36 nodes per graph.
"""

from __future__ import annotations

import ml_collections

from configs import common

FULL_GRAPH = ("karate_club", "davis_southern_women", "florentine_families", "les_miserables",
              "planetoid")
# Equal bits per node (6) for the families the README compares.
CODEBOOKS = {"binary": {"num_bits": 6}}
CODEBOOK_SIZE = 64


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """The config for ``arg`` = ``quantizer=...,dataset=...,preset=...,conv=...,seed=...,smoke``."""
  arg = common.parse_arg(arg, quantizer="ema_vq", dataset="Cuneiform", preset="", conv="sage",
                         seed=0, smoke=False)
  if arg.preset not in ("", "vqgraph"):
    raise ValueError(f"config argument 'preset' must be '' or 'vqgraph', got {arg.preset!r}")
  config = common.base_config()
  config.seed = arg.seed
  config.total_steps = 1000
  full_graph = arg.dataset in FULL_GRAPH
  config.batch_size = 1 if full_graph else 32  # full-graph mode: each example is the graph
  config.log_every = 50
  config.checkpoint_every = 200

  config.data = ml_collections.ConfigDict(dict(
      name=arg.dataset,
      path="",  # tu / planetoid: <folder>/<NAME>
      node_features="",  # "" = the set's default; or attributes / labels / both (TU)
      test_fraction=0.2,  # held-out graphs (fixed stratified split, seed 0)
      standardize=True,  # z-score node features with the training nodes' statistics
      dir="",
  ))
  config.model = ml_collections.ConfigDict(dict(
      name="vqgraph", conv=arg.conv, hidden=64, latent_dim=32, layers=2, decoder_hidden=64,
      feature_weight=1.0, link_weight=1.0))
  if arg.preset == "vqgraph":
    config.quantizer, config.loss_weights = common.quantizer_config(
        "ema_vq", codebook_size=CODEBOOK_SIZE, cosine=True, decay=0.8)
    config.model.feature_weight = 0.001
    config.model.link_weight = 0.03
  else:
    options = CODEBOOKS.get(arg.quantizer, {"codebook_size": CODEBOOK_SIZE})
    config.quantizer, config.loss_weights = common.quantizer_config(arg.quantizer, **options)
  config.optimizer.learning_rate = 3e-3
  config.evals.batch_size = 64
  config.evals.distill_temperature = 4.0  # VQGraph's tau for the soft code targets
  config.evals.mlp_steps = 500  # full-batch steps of the plain and the distilled MLP

  if arg.smoke:
    common.smoke(config)
    config.batch_size = 8
    config.evals.batch_size = 16
    config.evals.mlp_steps = 50
    config.model.update(hidden=8, latent_dim=4, decoder_hidden=8)
    config.quantizer.update({"num_bits": 3} if arg.quantizer == "binary"
                            else {"codebook_size": 8})
  return config


def sweep(add):
  """The README's table: families x the two TU sets x three seeds, and the VQGraph preset."""
  for dataset in ("Cuneiform", "MUTAG"):
    for seed in range(3):
      add(config=f"preset=vqgraph,dataset={dataset},seed={seed}")
      for quantizer in ("vq", "ema_vq", "gumbel", "binary"):
        add(config=f"quantizer={quantizer},dataset={dataset},seed={seed}")
