# The two commands of the README. Both bootstrap their own virtualenv in .venv.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip -qq --disable-pip-version-check

.PHONY: run test lint format bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.run-installed: pyproject.toml | $(BIN)/python
	$(PIP) install -e .
	touch $@

$(VENV)/.dev-installed: pyproject.toml | $(BIN)/python
	$(PIP) install torch==2.13.0  # CPU build first, so the semantic extra pulls no CUDA
	$(PIP) install -e '.[dev,semantic]'
	touch $@ $(VENV)/.run-installed

run: $(VENV)/.run-installed  ## install and serve on http://127.0.0.1:8000 (SQLite, ./data)
	$(BIN)/imagegate serve

lint: $(VENV)/.dev-installed  ## ruff, mypy --strict, import-linter layer contracts
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

test: lint  ## install dev extras and run the whole suite
	$(BIN)/pytest $(PYTEST_ARGS)

format: $(VENV)/.dev-installed
	$(BIN)/ruff check --fix src tests bench
	$(BIN)/ruff format src tests bench

bench: $(VENV)/.dev-installed  ## benchmarks; figures go to docs/benchmarks.md
	$(BIN)/python bench/bench_renderer.py
	$(BIN)/python bench/bench_http.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
