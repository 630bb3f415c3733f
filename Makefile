# PAS Portal — `make run` and `make test` are the whole set-up on a fresh machine.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PY := .venv/bin/python
PIP := .venv/bin/pip
VENV_STAMP := .venv/.installed-$(shell cat requirements.txt requirements-dev.txt | sha256sum | cut -c1-16)
NODE_STAMP := node_modules/.installed-$(shell cat package.json package-lock.json | sha256sum | cut -c1-16)
SYSTEM_STAMP := var/.system-deps-v1
# Debian packages the connectors and browser tests need (drivers, JDK, JDBC jars, Chromium).
DEBIAN_PACKAGES := unixodbc unixodbc-dev odbc-postgresql odbc-mariadb libsqliteodbc \
  default-jdk-headless libxerial-sqlite-jdbc-java libpostgresql-jdbc-java libh2-java \
  chromium chromium-driver
# The suite's control plane runs on the real PostgreSQL, like production.
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/pasportal
# Test processes (pytest-xdist): one per core on this 2-core machine; TEST_WORKERS=0 runs serially.
TEST_WORKERS ?= 2
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: help setup system-deps venv node migrate run serve test lint test-only bench clean

help:
	@echo "make run    set up everything and run PAS Portal on embedded defaults"
	@echo "make test   set up everything, run the lint gate and the whole test suite"
	@echo "make bench  run the benchmark command (large sizes; not part of make test)"

setup: system-deps venv node

# Install Debian packages only when something is missing (root, or sudo).
system-deps: $(SYSTEM_STAMP)
$(SYSTEM_STAMP):
	@missing=""; for p in $(DEBIAN_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "Installing Debian packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi
	@command -v npm >/dev/null || { SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq nodejs npm; }
	@mkdir -p var && touch $@

venv: $(VENV_STAMP)
$(VENV_STAMP): requirements.txt requirements-dev.txt
	@test -x $(PY) || python3 -m venv .venv
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -r requirements-dev.txt
	@rm -f .venv/.installed-* && touch $@

node: $(NODE_STAMP)
$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@rm -f node_modules/.installed-* && touch $@

migrate: setup
	$(PY) manage.py migrate --noinput -v 0
	$(PY) manage.py createcachetable

run: migrate
	@scripts/serve.sh $(HOST) $(PORT)

lint: setup
	.venv/bin/ruff format --check .
	.venv/bin/ruff check .
	.venv/bin/mypy migration/engine
	.venv/bin/lint-imports
	PAS_VAR_DIR=$$(mktemp -d) $(PY) manage.py makemigrations --check --dry-run
	PAS_VAR_DIR=$$(mktemp -d) $(PY) manage.py spectacular --validate --fail-on-warn --file /dev/null
	.venv/bin/pytest -q -n $(TEST_WORKERS) -p no:django -p no:cacheprovider tests/engine

test: setup
	@$(MAKE) --no-print-directory lint
	@$(MAKE) --no-print-directory test-only

test-only:
	DATABASE_URL=$(TEST_DATABASE_URL) .venv/bin/pytest -q -n $(TEST_WORKERS)

bench: migrate
	$(PY) manage.py bench $(BENCH_ARGS)

clean:
	rm -rf .venv node_modules staticfiles var .pytest_cache .mypy_cache .ruff_cache
