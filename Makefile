# The Makefile is the interface: every command installs what it needs into .venv first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
STAGE ?= dev

export AWS_DEFAULT_REGION ?= us-east-1

.PHONY: install test unit lint typecheck run demo package deploy bench clean

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $(STAMP)

install: $(STAMP)

## make test: the whole test suite (unit, integration on moto, infrastructure, end-to-end).
test: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

unit: $(STAMP)
	$(BIN)/python -m pytest -q tests/unit

lint: $(STAMP)
	$(BIN)/ruff check functions app.py tests local bench infrastructure
	$(BIN)/ruff format --check functions app.py
	$(BIN)/mypy functions

## make run: the whole system locally on a moto server (contract §8). Ctrl-C stops it.
run: $(STAMP)
	POSTBACKS_ALLOW_PRIVATE_TARGETS=$${POSTBACKS_ALLOW_PRIVATE_TARGETS-1} $(BIN)/python -m local.stack

clean:
	rm -rf $(VENV) vendor dist .pytest_cache .mypy_cache .ruff_cache
