# Two commands on a fresh machine: `make demo` and `make test`.
# Both create the environment from the lock file (uv, installed from PyPI into .tools/).

PYTHON ?= python3.11
UV_VERSION := 0.13.9
UV := .tools/bin/uv
VENV := .venv
RUN := $(VENV)/bin/python
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)

.PHONY: install demo test lint typecheck check worker webhook stop clean bench bench-quick faults fix-peers bench-fix browser

$(UV):
	$(PYTHON) -m venv .tools
	.tools/bin/python -m pip install --quiet "uv==$(UV_VERSION)"

# Bytecode is compiled ahead (dependencies and our own source): the workflow sandbox re-imports a
# workflow's module for every run, and where .pyc files are not written (PYTHONDONTWRITEBYTECODE,
# read-only images) each re-import would compile the source again (measured: throughput of
# 10-account signals 0.37 -> 0.47 of the bench's floor).
$(VENV)/.installed: pyproject.toml uv.lock Makefile | $(UV)
	$(UV) sync --frozen --compile-bytecode --python $(PYTHON)
	touch $@

PYC := $(RUN) -m compileall -q orchestrator workflows activities bench demo worker.py starter.py webhook.py

install: $(VENV)/.installed  ## create .venv from uv.lock
	@$(PYC)

demo: install  ## dev server + worker + demo book + two signals, then the reports
	$(RUN) starter.py demo

COMPOSE_SCHEMA := .tools/compose-spec/compose-spec.json

$(COMPOSE_SCHEMA):  ## the Compose Specification's JSON schema (npm), for the compose file test
	scripts/fetch-compose-schema.sh

fix-peers:  ## QuickFIX's executor and ordermatch (Debian libquickfix-doc) into .tools/fix-peers
	scripts/install-fix-peers.sh

browser:  ## Debian's Chromium for the browser tier (tests/browser); never `playwright install`
	scripts/install-browser.sh

test: install fix-peers browser $(COMPOSE_SCHEMA)  ## the whole suite: lint, types, faults, FIX, browser, everything
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy .
	$(VENV)/bin/pytest

faults: install  ## the fault suite alone (part of `make test` too), with its table
	$(VENV)/bin/pytest tests/faults -m faults

lint: install
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

typecheck: install
	$(VENV)/bin/mypy .

worker: install  ## a long-running worker on the embedded dev server
	$(RUN) worker.py --dev

webhook: install  ## the webhook ingest service on 127.0.0.1:8090 (needs TEO_WEBHOOK_*_SECRET)
	$(RUN) webhook.py

stop:  ## stop the dev server (and the local codec server) started by the demo or the worker
	-$(RUN) starter.py server stop

clean: stop
	rm -rf .run .venv .tools .pytest_cache .mypy_cache .ruff_cache .hypothesis

bench: install  ## ours vs a Temporal floor of the same shape: entry, staggered, exit, account sync
	$(RUN) -m bench.overhead

bench-quick: install  ## the bench's smoke check: N = 10 and 100, one repeat (about a minute)
	$(RUN) -m bench.overhead --quick

bench-fix: install fix-peers  ## order -> ack -> fill round trip: adapter vs raw QuickFIX on executor
	$(RUN) -m bench.fix_roundtrip
