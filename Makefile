# Two commands do all set-up on a fresh clone: `make demo` and `make test`.
# Each creates .venv and installs the project with its dev extras the first time.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install demo test lint typecheck unit bench profile soak scale reliability drift-quality drift-demo-world schemas clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/fraudstream demo

## The README's test command: lint, types, then the default pytest selection.
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest tests/unit

reliability: $(STAMP)
	$(BIN)/pytest -m reliability

bench: $(STAMP)
	$(BIN)/fraudstream bench

## The benchmark with a py-spy flame graph of the worker (bench/results/worker-profile.svg).
profile: $(STAMP)
	$(BIN)/fraudstream bench --profile bench/results/worker-profile.svg

## Long steady-load run: FRAUD_SOAK_S seconds (default 300) at FRAUD_SOAK_RATE tx/s (150).
soak: $(STAMP)
	$(BIN)/pytest -m slow -s tests/integration/test_soak.py

## Merchant state with 20 million events over 90 days, in process: the memory curve (~1 min).
scale: $(STAMP)
	$(BIN)/pytest -m slow -s tests/unit/test_merchant_scale.py

## Drift detection quality of the cluster's monitor: seeds 4-9 (~20 min on 2 cores).
drift-quality: $(STAMP)
	$(BIN)/python bench/drift_quality.py

## The cluster's drift monitor over the `make demo` world, offline: every event it publishes.
drift-demo-world: $(STAMP)
	$(BIN)/python bench/drift_demo_world.py

schemas: $(STAMP)
	$(BIN)/fraudstream schemas export --out schemas/json

## Also Faust data directories (`<app id>-data/v1`) that runs from the root left behind.
clean:
	rm -rf $(VENV) .fraudstream .pytest_cache .mypy_cache .ruff_cache .hypothesis build *.egg-info
	for dir in *-data; do if [ -d "$$dir/v1" ]; then rm -rf "$$dir"; fi; done
