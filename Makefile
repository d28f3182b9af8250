# engagement-metrics: entry points. `make` (or `make help`) lists them.
# On a fresh clone: `make run` (the stack, topics and the demo) and `make test`.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory
.NOTPARALLEL:

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.install-stamp
# The compiled replay core (native/): see the rule below.
NATIVE_STAMP := $(VENV)/.native-stamp
# The bench extra (Quix Streams, py-spy, pyinstrument): `make bench` and the tests of the bench's
# peers (tests/integration/test_bench_peers.py) need it.
BENCH_STAMP := $(VENV)/.bench-stamp
export CARGO_TARGET_DIR ?= $(HOME)/.cache/engagement-metrics/cargo-target
CARGO := $(shell command -v cargo 2>/dev/null || { test -x "$(HOME)/.cargo/bin/cargo" && echo "$(HOME)/.cargo/bin/cargo"; })
# Extra pytest flags, e.g. `make test PYTEST_ARGS='-k kafka -x'`.
PYTEST_ARGS ?=
# A safety net against hanging tests (seconds per test); tests may set their own.
PYTEST_TIMEOUT ?= 600

.PHONY: help install run test test-unit test-integration lint format stack-up stack-down \
        stack-status stack-clean bench bench-quick generate

help: ## list the entry points
	@echo "engagement-metrics: make TARGET"
	@echo
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-17s %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo
	@echo "Ports and settings: docs/stack.md. Logs: .run/logs/."

install: $(STAMP) $(NATIVE_STAMP) ## create .venv and install the project, its dev tools and the compiled replay core (idempotent)

# sdk/ is the producer SDK (its own distribution, engagement-metrics-sdk) that the project
# depends on: both in one pip command, so the pin is met by the repository's copy.
$(STAMP): pyproject.toml sdk/pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ./sdk -e '.[dev]'
	@touch $@

# The compiled replay core (native/, Rust + PyO3, built by maturin; docs/architecture.md). Its
# build cache lives with the user's caches, so a fresh clone rebuilds it in seconds. Without
# cargo, `engagement replay` runs the Python engine (same results, ~3x slower); CI requires it.

$(NATIVE_STAMP): $(STAMP) native/Cargo.toml native/Cargo.lock native/pyproject.toml $(wildcard native/src/*.rs)
	@if [ -n "$(CARGO)" ]; then \
	   echo "building the compiled replay core (native/, cargo --release)"; \
	   PATH="$(dir $(CARGO)):$$PATH" $(PY) -m pip install -q ./native && touch $@; \
	 elif [ -n "$${CI:-}" ]; then \
	   echo "make install: cargo is required in CI to build native/ (https://rustup.rs)" >&2; exit 1; \
	 else \
	   echo "make install: cargo not found, so the compiled replay core (native/) is not built;" \
	        "engagement replay uses the Python engine. Install Rust (https://rustup.rs) and rerun." >&2; \
	 fi

run: install ## bring the stack up, create topics, run the demo and the worker (if written)
	deploy/local/run.sh

# pytest exit codes: 0 passed, 1 failed, 5 no test collected. `make test` treats 5 as a
# failure (a test run that runs nothing proves nothing); the partial targets accept it.
test: install $(BENCH_STAMP) stack-up ## run every test (unit and integration) against the local stack
	rc=0; $(PY) -m pytest --timeout=$(PYTEST_TIMEOUT) $(PYTEST_ARGS) tests || rc=$$?; \
	 if [ $$rc -eq 5 ]; then echo "make test: no test was collected" >&2; fi; exit $$rc

test-unit: install ## run the unit tests only (no stack needed)
	rc=0; $(PY) -m pytest --timeout=$(PYTEST_TIMEOUT) -m 'not integration' $(PYTEST_ARGS) tests/unit || rc=$$?; \
	 if [ $$rc -eq 5 ]; then echo "no unit test collected"; rc=0; fi; exit $$rc

test-integration: install $(BENCH_STAMP) stack-up ## run the integration tests against the local stack
	rc=0; $(PY) -m pytest --timeout=$(PYTEST_TIMEOUT) -m integration $(PYTEST_ARGS) tests/integration || rc=$$?; \
	 if [ $$rc -eq 5 ]; then echo "no integration test collected"; rc=0; fi; exit $$rc

lint: install ## ruff check, ruff format --check and mypy (settings in pyproject.toml)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

generate: install ## rewrite the generated files: Prometheus rules (and the k8s PrometheusRule), Grafana dashboards
	$(PY) deploy/prometheus/generate.py
	$(PY) deploy/grafana/generate.py

format: install ## apply ruff's fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

stack-up: ## start Kafka, Redis, Prometheus, Alertmanager on 127.0.0.1 (SECURE=1: TLS and SASL, docs/stack.md)
	@deploy/local/stack-up.sh

stack-down: ## stop everything the stack started; no process or port is left
	@deploy/local/stack-down.sh

stack-status: ## show which services of the stack are running
	@deploy/local/stack-status.sh

stack-clean: stack-down ## stop the stack and delete its data and logs (.run/)
	rm -rf .run

BENCH_OUT ?= .run/bench
# Extra options of bench/run.py, e.g. `make bench BENCH_ARGS="--records 1500000"` (the peers' goals
# are judged on >= 1.5M records) or BENCH_ARGS="--skip faust,quix".

$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(PY) -m pip install -q -e ./sdk -e '.[dev,bench]'
	@touch $@

bench: install $(BENCH_STAMP) stack-up ## full benchmark: ours vs bare consumer, Faust, Quix Streams, Kafka Streams (< 15 min; BENCH_ARGS=...; bench/RESULTS.md)
	@mkdir -p $(BENCH_OUT)
	$(PY) bench/run.py $(BENCH_ARGS) --out $(BENCH_OUT)/full-$$(date -u +%Y%m%dT%H%M).md

bench-quick: install $(BENCH_STAMP) stack-up ## the same table with small numbers (< 3 min)
	@mkdir -p $(BENCH_OUT)
	$(PY) bench/run.py --quick $(BENCH_ARGS) --out $(BENCH_OUT)/quick-$$(date -u +%Y%m%dT%H%M).md
