# SyncAdmin: `make run` runs the product, `make test` runs every check CI runs. Both set up what they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PG_URL ?= postgres://postgres@127.0.0.1:5432/postgres
# Its own Redis database, so that it can run beside test-postgres (database 15) without sharing queues.
SQLITE_REDIS_URL ?= redis://127.0.0.1:6379/13
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test lint test-sqlite test-postgres services venv demo clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

## Run the product: migrations, the Exchange simulator with the demo mailboxes, the demo organisation,
## the web server on $(HOST):$(PORT). Ctrl-C stops it all.
run: $(STAMP)
	mkdir -p var/static
	DEBUG=$${DEBUG:-1} $(BIN)/python manage.py migrate --no-input -v0
	DEBUG=$${DEBUG:-1} SYNCADMIN_DEVTOOLS=$${SYNCADMIN_DEVTOOLS:-1} $(BIN)/python manage.py runall --host $(HOST) --port $(PORT)

## Every check of CI: lint, types, then the suite on SQLite and on PostgreSQL with the real Redis, the two
## side by side (each waits on subprocesses, browsers and servers much of the time), each printed when done.
test: $(STAMP) services lint
	$(MAKE) --no-print-directory -j2 --output-sync=target test-sqlite test-postgres

services:
	bash .ci/services

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .

# The process-level suites (RQ workers, the browser) run once, on PostgreSQL, the production database.
test-sqlite: $(STAMP)
	env -u DATABASE_URL REDIS_URL=$(SQLITE_REDIS_URL) $(BIN)/pytest -p no:cacheprovider -m "not workers and not browser" $(PYTEST_ARGS)

test-postgres: $(STAMP)
	DATABASE_URL=$(PG_URL) $(BIN)/pytest -p no:cacheprovider $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) var build .mypy_cache .ruff_cache

## Benchmarks (issue 6): each figure against a baseline measured in the same run; prints the table and
## writes build/bench/latest.json. Needs PostgreSQL and Redis (database 14); see docs/performance.md.
.PHONY: bench
bench: $(STAMP) services
	$(BIN)/python bench/run.py
