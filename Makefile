# The README's commands. `make demo` and `make test` install what they need on first use.
PYTHON ?= python3
STAMP := .installed

.PHONY: demo test install

$(STAMP): pyproject.toml
	$(PYTHON) -m pip install -q -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PYTHON) experiments/quantizer_tour.py

test: $(STAMP)
	$(PYTHON) -m pytest -q -n 2 tests
