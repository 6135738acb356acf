# callshield — the two commands of the README are `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint unit mesh dashboard e2e bench bench-stack bench-mesh bench-observe model clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "callshield needs Python 3.11 or newer")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,fast]'
	touch $(STAMP)

## Install and run the FastAGI server on the embedded defaults (SQLite file, single node, no broker).
run: $(STAMP)
	$(BIN)/callshield serve

## Install what the tests need and run them: lint, types, unit and integration tests.
test: $(STAMP) lint
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy --strict

unit: $(STAMP)
	$(BIN)/pytest -q tests/unit

## The mesh tests alone, against a real Mosquitto (scripts/mosquitto: apt-get install on first use, root).
mesh: $(STAMP)
	$(BIN)/pytest -q tests/mesh

## The dashboard in a real headless Chromium (scripts/chromium: apt-get install on first use, root);
## saves artifacts/dashboard.png.
dashboard: $(STAMP)
	$(BIN)/pytest -q -s tests/dashboard

## End-to-end: a real Asterisk 22 (Debian sid chroot) and real SIP calls from SIPp; needs root.
e2e: $(STAMP)
	CALLSHIELD_E2E=1 $(BIN)/pytest -q tests/e2e

bench: $(STAMP)
	$(BIN)/python bench/bench_decide.py
	$(BIN)/python bench/bench_import.py
	$(BIN)/python bench/bench_replay.py --cli

## Real stack: SIPp -> Asterisk 22 (own sandbox, SIP 5090) -> callshield, with and without the check; root.
bench-stack: $(STAMP)
	$(BIN)/python bench/bench_stack.py

## Reputation mesh: two nodes in their own processes through a private Mosquitto (port 18840); root for apt.
bench-mesh: $(STAMP)
	$(BIN)/python bench/bench_mesh.py

## Rebuild the shipped model: generate traffic, train, evaluate on other seeds and mixes (build/model/).
model: $(STAMP)
	$(BIN)/python models/build.py
	$(BIN)/python models/summarize.py build/model

## Observability overhead: callshield serve with metrics + decision logs off vs on (FastAGI load).
bench-observe: $(STAMP)
	$(BIN)/python bench/bench_observe.py

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache .pytest_cache
