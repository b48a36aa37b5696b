# The two commands of the README, and the few a contributor needs. Each creates .venv itself.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The test run's strictness, as in tox.ini: Python's development mode, and deprecations and
# unclosed resources as errors from the first import on (pyproject.toml's filterwarnings holds
# the tests to the same). COVERAGE_FILE is absolute so that worker processes started in another
# directory write their data beside the rest.
TEST_ENV := PYTHONDEVMODE=1 COVERAGE_FILE=$(CURDIR)/.coverage
STRICT_WARNINGS := -W error::DeprecationWarning -W error::PendingDeprecationWarning -W error::ResourceWarning

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

## make test: the whole test suite (set CLOUDSYNC_TEST_POSTGRES_URL to include PostgreSQL), then
## branch coverage, combined with whatever tox environments ran since (pyproject.toml's fail_under).
test: $(BIN)/.installed
	$(TEST_ENV) $(BIN)/python $(STRICT_WARNINGS) -m coverage run -m pytest $(PYTEST_ARGS)
	$(BIN)/python -m coverage combine --quiet
	$(BIN)/python -m coverage report

## make lint: every pre-commit hook on every file (ruff, mypy --strict, django-upgrade, pyproject-fmt,
## codespell), as tox -e lint and CI run them. The venv's bin/ goes first on PATH for mypy's hook.
lint: $(BIN)/.installed
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/pre-commit run --all-files --show-diff-on-failure

## make bench: the benchmark suite's table (benchmarks/README.md).
bench: $(BIN)/.installed
	$(BIN)/python -m benchmarks

## make soak: the soak test's short forms, under gunicorn (sync views) and under uvicorn (async
## views), under a minute each (python -m benchmarks.soak --help for the long one).
soak: $(BIN)/.installed
	$(BIN)/python -m benchmarks.soak --quick
	$(BIN)/python -m benchmarks.soak --quick --asgi

## make docs: the documentation site (mkdocs.yml, docs/) into build/docs/, warnings as errors.
.PHONY: docs
docs: $(BIN)/.installed
	$(BIN)/mkdocs build --strict --site-dir build/docs
