# The two commands of the README, and the few a contributor needs. Each creates .venv itself.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint bench soak

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

## make demo: the example project on http://127.0.0.1:8000/, signing in with the built-in fake CloudSync.
demo: $(BIN)/.installed
	$(BIN)/python example_project/manage.py migrate --noinput
	@echo "\n  Open http://127.0.0.1:8000/ and click 'Sign in with CloudSync'.\n"
	$(BIN)/python example_project/manage.py runserver 127.0.0.1:8000

## make test: the whole test suite (set CLOUDSYNC_TEST_POSTGRES_URL to include PostgreSQL).
test: $(BIN)/.installed
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## make lint: ruff (lint and format) and mypy --strict.
lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

## make bench: the benchmark suite's table (benchmarks/README.md).
bench: $(BIN)/.installed
	$(BIN)/python -m benchmarks

## make soak: the soak test, short form (python -m benchmarks.soak --help for the long one).
soak: $(BIN)/.installed
	$(BIN)/python -m benchmarks.soak --quick
