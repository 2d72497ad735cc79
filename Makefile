# The two commands the README promises: `make run` and `make test`. Both create .venv and
# install the project on first use, so they work on a fresh machine with python3.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

.PHONY: run test test-long lint bench bench-agents schema install console

# The server with its test tools, and the client (runwire-client, the rw command) beside it.
$(BIN)/runwire: pyproject.toml clients/python/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test]" -e clients/python
	touch $@

# The Node client of the contract test (tests/api/test_node_client.py), for `make test` only;
# npm ci writes the hidden lock file, so this runs again only when the lock changes.
tests/node/node_modules/.package-lock.json: tests/node/package-lock.json
	cd tests/node && npm ci --no-audit --no-fund --silent

install: $(BIN)/runwire

# The venv's bin on PATH: steps find `runwire fake-agent` (the agent examples) as they would in
# the image, where it is on PATH too.
run: install
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/runwire serve

test: install tests/node/node_modules/.package-lock.json
	$(BIN)/pytest

# The tests marked `long` (a few minutes each), which `make test` leaves out; CI runs both. One
# process (-n 0): they are fault runs of several servers each, timed against their leases.
test-long: install
	$(BIN)/pytest -m long -n 0

lint: install
	$(BIN)/ruff check server clients tests bench
	$(BIN)/ruff format --check server clients tests bench
	$(BIN)/mypy

# Issue 21's record in one run: P1-P8, B1 and the Dagster peer (N = 20 and 100), each next to
# its baselines (bench/README.md); about 35 minutes on the 2-core machine, the first run also
# installing Dagster into bench/.peer-venv. bench-agents: the LLM and voice benchmarks (L1, L2, V1).
bench: install
	$(BIN)/python bench/event_path.py
	$(BIN)/python bench/fanout.py
	$(BIN)/python bench/capacity.py
	$(BIN)/python bench/api.py
	$(BIN)/python bench/line_latency.py
	$(BIN)/python bench/bulk_stop.py
	$(BIN)/python bench/peer_dagster.py

bench-agents: install
	$(BIN)/python bench/llm.py
	$(BIN)/python bench/calls.py

schema: install
	$(BIN)/runwire export-schema > schema/schema.graphql

# The web console (web/ → server/runwire/http/console_dist, committed): types generated from
# the schema and the operations, then built. Only needed after changing those; `make run` serves
# the committed build without Node. tests/console/test_console_build.py says when it is stale.
console:
	cd web && npm ci --no-audit --no-fund && npm run build
