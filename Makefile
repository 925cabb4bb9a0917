# The README's commands. `make demo` and `make test` set up .venv/ first (idempotent, seconds when up to date).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=
# make test runs timm's model tests on each family's smallest variant; `make timm-conformance` on every variant
CONFORMANCE_ARGS ?= --smallest

.PHONY: setup demo test test-fast test-slow timm-conformance lint format bench cards clean

setup:
	@bash tools/setup.sh

demo: setup
	$(PY) tools/demo.py

# The full CI suite: lint, unit / contract / parity / mm tests, timm's own model tests, model-card check.
test: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m pytest -p no:cacheprovider -n 2 --dist loadgroup -m "not slow" --durations=10 $(PYTEST_ARGS)
	$(PY) tools/timm_conformance.py $(CONFORMANCE_ARGS)
	$(PY) tools/model_cards.py --check

test-fast: setup
	$(PY) -m pytest -p no:cacheprovider -n 2 -m "not slow and not mm and not triton" $(PYTEST_ARGS)

test-slow: setup
	$(PY) -m pytest -p no:cacheprovider -n 2 -m slow $(PYTEST_ARGS)

timm-conformance: setup
	$(PY) tools/timm_conformance.py

lint: setup
	$(PY) -m ruff check . && $(PY) -m ruff format --check .

format: setup
	$(PY) -m ruff format . && $(PY) -m ruff check --fix .

bench: setup
	$(PY) tools/benchmark.py

cards: setup
	$(PY) tools/model_cards.py

clean:
	rm -rf $(VENV) work_dirs .pytest_cache .ruff_cache
