# The two commands a newcomer needs (see README.md):
#   make run    start the gateway on the embedded sample ERP at http://127.0.0.1:8080
#   make test   install everything and run the whole test suite (lint, types, tests)
# Both create .venv and install the project into it on first use.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint install tryton redis node bench clients checkov

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# Auth dev mode: trusts a local key so the quickstart needs no identity provider (README: Authentication).
run: $(STAMP)
	ERPGW_AUTH__DEV_MODE=true $(BIN)/erp-gateway serve

# The spec is linted as partners lint it: Redocly (recommended rules) and Spectral (spectral:oas),
# pinned in openapi/lint/package-lock.json; both must report no error and no warning.
lint: $(STAMP) node
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	cd openapi/lint && npm ci --no-audit --no-fund --loglevel=error && npm run --silent lint

# Tryton for the conformance suite: its own venv and a seeded database, cached in
# ~/.cache/erp-gateway/tryton (about 70 s the first time, instant afterwards).
tryton: $(STAMP)
	$(BIN)/python -m tests.harness.tryton prepare

# The tests start their own throwaway redis-server (they stop and start it): install the
# binary from Debian's packages when the machine has none.
redis:
	@command -v redis-server >/dev/null || { apt-get update -qq && apt-get install -y -qq redis-server >/dev/null; }
	@command -v redis-server >/dev/null || { echo "redis-server is required: apt-get install redis-server"; exit 1; }

# The spec linters and the TypeScript client test run on Node.js (npm ci): Debian's packages
# when the machine has none.
node:
	@command -v npm >/dev/null || { apt-get update -qq && apt-get install -y -qq nodejs npm >/dev/null; }
	@command -v npm >/dev/null || { echo "Node.js and npm are required: apt-get install nodejs npm"; exit 1; }

test: lint tryton redis checkov
	$(BIN)/erp-gateway openapi --check
	$(BIN)/python -m pytest

# Only the generated-client tests (part of `make test`): Python and TypeScript clients generated
# from openapi/v1.json call every operation of a running gateway (README: For partners).
clients: $(STAMP) node
	$(BIN)/python -m pytest tests/clients

# Benchmarks (not tests): throughput and latency side by side, written to docs/benchmarks.md.
bench: $(STAMP) redis tryton
	@command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python -m bench

# checkov (the policy scan of deploy/, tests/deploy) pins packaging and others below what the
# project uses, so it gets its own venv, cached in ~/.cache/erp-gateway/ (about 1 min once).
CHECKOV_VERSION := 3.3.30
CHECKOV_VENV := $(HOME)/.cache/erp-gateway/checkov-$(CHECKOV_VERSION)
checkov:
	@test -f $(CHECKOV_VENV)/.installed || { rm -rf $(CHECKOV_VENV) && $(PYTHON) -m venv $(CHECKOV_VENV) \
		&& $(CHECKOV_VENV)/bin/python -m pip install --quiet checkov==$(CHECKOV_VERSION) \
		&& touch $(CHECKOV_VENV)/.installed; }
