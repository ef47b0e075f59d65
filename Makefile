# echo_server: `make demo` runs it, `make test` tests it; every target sets up .venv first.
# The servers need only the runtime dependencies; the test, lint and bench tools come with
# `make dev` (which test, lint and bench set up themselves).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
RUNTIME := $(VENV)/.installed-runtime
DEV := $(VENV)/.installed-dev
PIP := $(PY) -m pip install --quiet --disable-pip-version-check
ARGS ?=
PYTEST_ARGS ?=
# Test files run in parallel processes (pytest-xdist), each file in one process: most tests
# wait on timers and sockets, not on the CPU. TEST_WORKERS=0 runs them all in this process.
TEST_WORKERS ?= 4
QUICK ?=

.PHONY: install dev ws web demo lan cluster test lint conformance bench dist clean

install: $(RUNTIME)  ## the venv with what the servers need

dev: $(DEV)  ## the venv with the test, lint and bench tools too

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(RUNTIME): pyproject.toml | $(VENV)/bin/python
	$(PIP) -e .
	touch $(RUNTIME)

$(DEV): pyproject.toml | $(VENV)/bin/python
	$(PIP) -e '.[test,bench]'
	touch $(RUNTIME) $(DEV)

ws: install  ## the WebSocket server on 127.0.0.1:8001 (console 1)
	$(PY) -m echo_server ws $(ARGS)

web: install  ## the page server on 127.0.0.1:8000 (console 2)
	$(PY) -m echo_server web $(ARGS)

demo: install  ## both servers in one console
	$(PY) -m echo_server demo $(ARGS)

lan: install  ## both servers, reachable from the local network
	$(PY) -m echo_server demo --lan $(ARGS)

cluster: install  ## redis-server and two workers behind one port, with the page server
	bash scripts/cluster.sh $(ARGS)

test: dev
	-bash conformance/install.sh
	$(PY) -m pytest $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile) $(PYTEST_ARGS)

lint: dev
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	$(VENV)/bin/lint-imports --no-cache

conformance: dev  ## the Autobahn|Testsuite, cases 1-10, 12, 13 (about 20 min); report in reports/autobahn/
	bash conformance/install.sh
	$(PY) conformance/run.py $(ARGS)

bench: dev  ## side by side with the peers; QUICK=1 for a smoke run
	$(PY) -m bench $(if $(QUICK),--quick) $(ARGS)

dist: $(VENV)/bin/python  ## the wheel, in dist/ (pip install dist/*.whl; the page ships inside)
	rm -rf dist build
	$(PY) -m pip wheel --quiet --disable-pip-version-check --no-deps --wheel-dir dist .
	ls dist

clean:
	rm -rf $(VENV) .autobahn reports tests/artifacts .pytest_cache .mypy_cache .ruff_cache dist build
