# sharedcare — the two commands a newcomer needs are `make demo` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
UV := $(shell command -v uv 2>/dev/null || echo "$(PYTHON) -m uv")
VENV := .venv
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
PG_BINDIR ?= /usr/lib/postgresql/15/bin
DEMO_DB ?= var/sharedcare.db
DEMO_PEOPLE ?= 2000
DEMO_DATA := var/synthetic
PYTEST_ARGS ?=

.PHONY: help install demo test check bench system-deps vendor clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*## "}{printf "  make %-12s %s\n", $$1, $$2}'

# --inexact: never remove packages, so alternating `make demo` and `make test` keeps pyspark.
$(STAMP): pyproject.toml uv.lock
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet uv
	$(UV) sync --frozen --inexact --extra dev
	@touch $(STAMP)

$(TEST_STAMP): $(STAMP)
	$(UV) sync --frozen --inexact --extra dev --extra spark
	@touch $(TEST_STAMP)

install: $(STAMP) ## Create .venv with sharedcare and the dev tools (quick when nothing changed)

system-deps: ## Install Debian's chromium, PostgreSQL 15 server and a Java runtime (Spark) when missing
	@need=""; \
	command -v chromium >/dev/null 2>&1 || need="$$need chromium fonts-liberation"; \
	command -v java >/dev/null 2>&1 || need="$$need default-jre-headless"; \
	[ -x $(PG_BINDIR)/initdb ] || need="$$need postgresql-15"; \
	if [ -n "$$need" ]; then \
	  echo "installing:$$need"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$need >/dev/null; \
	fi

$(DEMO_DATA)/manifest.json: | $(STAMP)
	$(VENV)/bin/sharedcare synth --people $(DEMO_PEOPLE) --seed 1 --out $(DEMO_DATA)

# Every feed through the real ingest paths: HL7 v2 over MLLP, FHIR over HTTP, CSV mappings.
var/.demo-loaded: $(DEMO_DATA)/manifest.json
	$(VENV)/bin/sharedcare db upgrade --database sqlite:///$(DEMO_DB)
	$(VENV)/bin/sharedcare load-synthetic $(DEMO_DATA) --database sqlite:///$(DEMO_DB)
	@touch $@

demo: install var/.demo-loaded ## Prepare Synthetic Dorset once, then serve it at http://127.0.0.1:8000 (SQLite)
	@echo ""
	@echo "  Open http://127.0.0.1:8000/        platform status"
	@echo "       http://127.0.0.1:8000/docs    API reference"
	@echo ""
	$(VENV)/bin/sharedcare serve --database sqlite:///$(DEMO_DB) --host 127.0.0.1 --port 8000

test: $(TEST_STAMP) system-deps ## Run the whole suite: unit, spec (DuckDB, PostgreSQL, Spark), integration (SQLite and PostgreSQL), acceptance, web
	@rc=0; $(VENV)/bin/pytest $(PYTEST_ARGS) || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests (exit 5): nothing to run"; exit 0; fi; \
	exit $$rc

check: install ## ruff format + lint, mypy, import-linter
	$(VENV)/bin/ruff format --check src tests benchmarks scripts
	$(VENV)/bin/ruff check src tests benchmarks scripts
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

bench: install system-deps ## Run the benchmarks and print their figures
	$(VENV)/bin/python -m benchmarks

vendor: ## Refresh the vendored NHS.UK frontend, htmx and Vega builds from npm
	$(PYTHON) scripts/vendor_frontend.py

clean: ## Remove build output, the demo data and the demo database
	rm -rf build var .pytest_cache .mypy_cache .ruff_cache
