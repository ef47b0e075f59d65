# echo_server: `make demo` runs it, `make test` tests it; every target sets up .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
ARGS ?=
PYTEST_ARGS ?=
QUICK ?=

.PHONY: install ws web demo lan cluster test lint conformance bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test,bench]'
	touch $(STAMP)

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

test: install
	-bash conformance/install.sh
	$(PY) -m pytest $(PYTEST_ARGS)

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	$(VENV)/bin/lint-imports --no-cache

conformance: install  ## the Autobahn|Testsuite, cases 1-10; report in reports/autobahn/
	bash conformance/install.sh
	$(PY) conformance/run.py $(ARGS)

bench: install  ## side by side with the peers; QUICK=1 for a smoke run
	$(PY) -m bench $(if $(QUICK),--quick) $(ARGS)

clean:
	rm -rf $(VENV) .autobahn reports tests/artifacts .pytest_cache .mypy_cache .ruff_cache
