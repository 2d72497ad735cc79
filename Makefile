# The two commands the README promises: `make run` and `make test`. Both create .venv and
# install the project on first use, so they work on a fresh machine with python3.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

.PHONY: run test lint bench schema install

$(BIN)/runwire: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

install: $(BIN)/runwire

run: install
	$(BIN)/runwire serve

test: install
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check server tests bench
	$(BIN)/ruff format --check server tests bench
	$(BIN)/mypy

# P1-P7 in one run, each next to its baselines (bench/README.md); about 20 minutes.
bench: install
	$(BIN)/python bench/event_path.py
	$(BIN)/python bench/fanout.py
	$(BIN)/python bench/capacity.py
	$(BIN)/python bench/api.py

schema: install
	$(BIN)/runwire export-schema > schema/schema.graphql
