# The README's commands. `make demo` and `make test` install what they need on first use.
PYTHON ?= python3
STAMP := .installed

BENCH_STAMP := .installed-bench
BENCHMARKS := vq_step gumbel_step kmeans_fit large_codebook precision

.PHONY: demo test install bench

$(STAMP): pyproject.toml
	$(PYTHON) -m pip install -q -e ".[test]"
	touch $(STAMP)

$(BENCH_STAMP): pyproject.toml
	$(PYTHON) -m pip install -q -e ".[bench]"
	touch $(BENCH_STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PYTHON) experiments/quantizer_tour.py

test: $(STAMP)
	$(PYTHON) -m pytest -q -n 2 tests

# CPU benchmarks against PyTorch/faiss/sklearn peers (~10 minutes); `make test` never runs them.
bench: $(BENCH_STAMP)
	set -e; for b in $(BENCHMARKS); do $(PYTHON) benchmarks/$$b.py; done
