# Conveyor: `make run` starts the whole service, `make test` runs the whole suite.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
export UV_PROJECT_ENVIRONMENT := $(VENV)

# uv installs exactly what uv.lock says. It comes from PyPI through pip when the machine lacks it.
UV := $(shell command -v uv 2>/dev/null || echo "$(PYTHON) -m uv")

.PHONY: help
help:  ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

.PHONY: uv
uv:
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet uv \
	  || $(PYTHON) -m pip install --quiet --user --break-system-packages uv

# The `local` group is the embedded PostgreSQL that `make run` starts (config/devdb.py): not in
# production images, which `uv sync --no-dev` builds without it.
.PHONY: install
install: uv  ## Install the runtime dependencies (and the embedded PostgreSQL) into .venv
	$(UV) sync --frozen --no-dev --group local

.PHONY: install-dev
# --compile-bytecode: the suite starts a few hundred Python processes (workers, gunicorn,
# manage.py), and where PYTHONDONTWRITEBYTECODE is set (CI images often set it) each would
# otherwise compile Django, Celery and the rest from source again.
install-dev: uv  ## Install runtime and development dependencies
	$(UV) sync --frozen --all-groups --compile-bytecode

# A local .env for development: settings read it, so `manage.py …` works as the README shows
# without exporting anything. An existing .env is left as it is (the environment still wins).
ENV_FILE ?= .env
$(ENV_FILE):
	@printf '%s\n' '# Written by `make run` for local development; config/settings.py reads it and' \
	  '# the environment overrides it. Deployments set real variables and ship no .env.' \
	  'CONVEYOR_ENV=development' > $@
	@echo "wrote $@ (CONVEYOR_ENV=development)"

# With no DATABASE_URL (exported or in .env), `run` starts an embedded PostgreSQL under
# var/postgres, writes its URL into .env and stops it when `serve` ends (config/devdb.py).
.PHONY: run
run: install $(ENV_FILE)  ## Install, start PostgreSQL if needed, migrate, start web + workers + scheduler
	@mkdir -p var
	@$(BIN)/python -m config.devdb run -- $(MAKE) --no-print-directory serve

.PHONY: serve
serve:  ## `make run` on the DATABASE_URL already set: migrate, demo client, honcho
	CONVEYOR_ENV=$${CONVEYOR_ENV:-development} $(BIN)/python manage.py migrate --noinput -v 0
	@CONVEYOR_ENV=$${CONVEYOR_ENV:-development} $(BIN)/python manage.py demo_client
	CONVEYOR_ENV=$${CONVEYOR_ENV:-development} PATH="$(BIN):$$PATH" $(BIN)/honcho start -f Procfile -p $${PORT:-8000}

.PHONY: services
services:  ## Start local PostgreSQL and Redis if they are installed but stopped
	@bash .ci/services.sh

# `make test` runs the suite on PYTEST_WORKERS pytest-xdist processes, one test file per process
# at a time (--dist loadfile: a file's module-scoped workers and servers start once). Each
# process has its own PostgreSQL test database, Redis database and cache prefix
# (tests/settings.py), so REDIS_URL and CELERY_BROKER_URL must be unset: with either exported
# the processes would share one broker, and the suite runs in one process (PYTEST_WORKERS=0).
# PYTEST_ARGS go last (PYTEST_ARGS="-n 0" also runs it in one process).
PYTEST_WORKERS ?= $(if $(REDIS_URL)$(CELERY_BROKER_URL),0,3)
PYTEST_PARALLEL = -n $(PYTEST_WORKERS) --dist loadfile

.PHONY: test
test: install-dev services  ## Run the whole test suite against real PostgreSQL, Redis and workers
	$(BIN)/ruff check .
	@if [ "$(PYTEST_WORKERS)" = 0 ] && [ -n "$(REDIS_URL)$(CELERY_BROKER_URL)" ]; then \
	  echo "REDIS_URL or CELERY_BROKER_URL is set: the suite runs in one process" >&2; fi
	$(BIN)/pytest $(PYTEST_PARALLEL) $(PYTEST_ARGS)

# In one process: the xdist processes would share the broker's queues (one RabbitMQ vhost).
.PHONY: test-rabbitmq
test-rabbitmq: install-dev services  ## The recovery and pipeline tests again, with RabbitMQ as the broker
	CELERY_BROKER_URL=$${RABBITMQ_URL:-amqp://guest:guest@127.0.0.1:5672//} \
	  $(BIN)/pytest tests/e2e/test_recovery.py tests/e2e/test_pipeline.py \
	  tests/jobs/test_maintenance.py tests/jobs/test_queue_stats.py tests/jobs/test_relay.py \
	  $(PYTEST_ARGS)

.PHONY: lint
lint: install-dev  ## ruff (lint + format check) and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

.PHONY: format
format: install-dev  ## Apply ruff's formatting and safe fixes
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

.PHONY: clean
clean:  ## Stop the embedded PostgreSQL; remove the virtualenv and local state (database, broker, cache)
	@if [ -x $(BIN)/python ]; then $(BIN)/python -m config.devdb stop; fi
	rm -rf $(VENV) var .env .pytest_cache .mypy_cache .ruff_cache

.PHONY: bench
bench: install-dev services  ## Benchmarks (BENCH_ARGS="--quick" for a short run); see docs/benchmarks.md
	@command -v wrk >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get install -y -q wrk >/dev/null; } \
	  || echo "wrk is needed: apt-get install wrk" >&2
	$(BIN)/python bench/run.py $(BENCH_ARGS)

.PHONY: soak
soak: install-dev services  ## Repeat the kill tests SOAK_RUNS times (default 20)
	bash bench/soak.sh $${SOAK_RUNS:-20}

.PHONY: screenshots
screenshots: install-dev  ## Screenshots of the admin console into docs/screenshots/ (a seeded dev database)
	$(BIN)/python bin/screenshots.py
