# geosession: `make demo` runs the demo, `make test` runs every check; both set up
# what is missing first (OS packages as root, the Python environment in .venv).
VENV := .venv
BIN := $(VENV)/bin
PYTHON ?= python3
LINT_PATHS := $(wildcard src tests benchmarks examples)

OLDEST := .venv-oldest

.PHONY: demo test test-oldest test-compat oldest setup system lint typecheck pytest clean

demo: setup
	$(BIN)/geosession local start
	$(BIN)/geosession demo

test: setup lint typecheck pytest

setup: system $(VENV)/.installed

system:
	@bash scripts/setup-system.sh

$(VENV)/.installed: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || { \
	  echo "geosession setup: Python's venv module is missing: install python3-venv (apt-get install python3-venv)." >&2; exit 1; }
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev]"
	@touch $@

# the suite on the oldest releases pyproject.toml allows (constraints/oldest.txt)
test-oldest: oldest
	$(OLDEST)/bin/pytest

# CI's share of that: the tests where the drivers' and SQLAlchemy's releases differ most
# (their errors, lost connections and faults, pools, sessions, models, event loops,
# streamed reads, PgBouncer, replicas, the ingest's binary COPY)
COMPAT_TESTS := tests/faults tests/test_errors.py tests/test_observe.py tests/test_session.py \
	tests/test_engine.py tests/test_models.py tests/test_event_loops.py tests/test_stream.py \
	tests/test_pgbouncer.py tests/test_replicas.py tests/test_ingest.py
test-compat: oldest
	$(OLDEST)/bin/pytest $(COMPAT_TESTS)

oldest: system
	@test -x $(OLDEST)/bin/python || $(PYTHON) -m venv $(OLDEST)
	$(OLDEST)/bin/python -m pip install -q --upgrade pip
	$(OLDEST)/bin/python -m pip install -q -c constraints/oldest.txt -e ".[dev]"

lint:
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)

typecheck:
	$(BIN)/mypy src

pytest:
	$(BIN)/pytest

clean:
	rm -rf $(VENV) $(OLDEST) .mypy_cache .ruff_cache .pytest_cache
