# One command per routine. Each target creates .venv and installs the project first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONFIG ?= examples/hub.yaml

.PHONY: run demo-erp test test-tryton test-browser browser-deps tryton test-bottlecrm bottlecrm lint bench bench-mapping bench-pipeline bench-client bench-broker bench-mdm install clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,bench,otel]'
	touch $(STAMP)

install: $(STAMP)

# The demo's secrets (examples/hub.yaml reads them with env:NAME); set them to override.
run demo-erp: export SHOPIFY_WEBHOOK_SECRET ?= hub-demo-webhook-secret
run demo-erp: export ERP_AUTHORIZATION ?= Bearer hub-demo-erp-token
DEMO_ERP_PORT ?= 9000

run: $(STAMP)
	$(BIN)/hub up --config $(CONFIG)

# A stand-in ERP for the `erp` connection of examples/hub.yaml: prints what it receives.
demo-erp: $(STAMP)
	$(BIN)/python examples/receiver.py --port $(DEMO_ERP_PORT)

test: $(STAMP) browser-deps
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# A real Tryton 8.2 for the connector's tests: its own virtualenv and a PostgreSQL template
# database, cached (deploy/tryton/setup.py; `make test` builds them when first needed).
tryton: $(STAMP)
	$(BIN)/python deploy/tryton/setup.py

test-tryton: $(STAMP)
	$(BIN)/python -m pytest -m tryton $(PYTEST_ARGS)

# A real BottleCRM (django-crm 1.35 on Python 3.12) for the connector's tests: its own
# virtualenv and a migrated PostgreSQL template database, cached (deploy/bottlecrm/setup.py).
bottlecrm: $(STAMP)
	$(BIN)/python deploy/bottlecrm/setup.py

test-bottlecrm: $(STAMP)
	$(BIN)/python -m pytest -m bottlecrm $(PYTEST_ARGS)

# The dashboard's browser tests drive Debian's chromium with Playwright (never a downloaded
# browser). browser-deps installs the package with apt-get when /usr/bin/chromium is missing:
# it needs root (or sudo); Playwright's Python package comes with the dev extra.
browser-deps: $(STAMP)
	@test -x /usr/bin/chromium || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update && apt-get install -y chromium; \
	  elif command -v sudo >/dev/null; then sudo apt-get update && sudo apt-get install -y chromium; \
	  else echo "chromium is missing and installing it needs root: apt-get install chromium" >&2; exit 1; fi; }

test-browser: browser-deps
	$(BIN)/python -m pytest -m browser $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check hub connectors tests bench
	$(BIN)/ruff format --check hub connectors tests bench
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python -m bench.ingress
	$(BIN)/python -m bench.mapping
	$(BIN)/python -m bench.pipeline $(BENCH_ARGS)

bench-mapping: $(STAMP)
	$(BIN)/python -m bench.mapping

# The layout that suits 2 cores: ingress, mapper and delivery in a process each, 1 partition.
# BENCH_ARGS='' gives bench.pipeline's own default (1 ingress + 1 workers process, 3 partitions).
BENCH_ARGS ?= --split-workers --partitions 1

bench-pipeline: $(STAMP)
	$(BIN)/python -m bench.pipeline $(BENCH_ARGS)

bench-client: $(STAMP)
	$(BIN)/python -m bench.client --clients rest,aiohttp,httpx --requests 10000

bench-broker: $(STAMP)
	$(BIN)/python -m bench.broker

# MDM matching quality (FEBRL) and speed against 10,000 and 100,000 golden records.
bench-mdm: $(STAMP)
	$(BIN)/python -m bench.mdm $(MDM_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
