# The README's commands. `make demo` and `make test` install what they need on first use.
PYTHON ?= python3
STAMP := .installed

BENCH_STAMP := .installed-bench
BENCHMARKS := vq_step gumbel_step kmeans_fit large_codebook precision timeseries_step

DEMO_DIR ?= runs/demo

.PHONY: demo tour test install bench

# pykeen only for the knowledge-graph files it ships: --no-deps keeps torch out.
$(STAMP): pyproject.toml
	$(PYTHON) -m pip install -q -e ".[test]"
	$(PYTHON) -m pip install -q --no-deps "pykeen==1.11.1"
	touch $(STAMP)

$(BENCH_STAMP): pyproject.toml
	$(PYTHON) -m pip install -q -e ".[bench]"
	touch $(BENCH_STAMP)

install: $(STAMP)

# Trains the TOTEM tokenizer (default quantizer: TOTEM's VQ) on GunPoint, prints the evaluation
# and writes metrics, TensorBoard events, checkpoints and plots to $(DEMO_DIR). Run it again and
# it resumes (here: re-evaluates the finished run).
demo: $(STAMP)
	$(PYTHON) -m vqlearn.main --config configs/timeseries.py --workdir $(DEMO_DIR)

# Every quantizer family as a standalone codebook learner on GunPoint windows (~30 s).
tour: $(STAMP)
	$(PYTHON) experiments/quantizer_tour.py

test: $(STAMP)
	$(PYTHON) -m pytest -q -n 2 tests

# CPU benchmarks against PyTorch/faiss/sklearn peers (~10 minutes); `make test` never runs them.
bench: $(BENCH_STAMP)
	set -e; for b in $(BENCHMARKS); do $(PYTHON) benchmarks/$$b.py; done
