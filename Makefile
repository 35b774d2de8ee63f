# Every target installs what it needs into .venv at the repository root.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
CHECKOV_VENV := $(VENV)/tools/checkov
CHECKOV := $(CHECKOV_VENV)/bin/checkov
CHECKOV_VERSION := 3.3.30
REQUIREMENTS := requirements/dev.txt lambdas/classify_upload/requirements.txt \
	training/requirements.txt training/requirements-serving.txt

export SAGEMAKER_SUPPRESS_V2_WARNING := 1
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: help install test lint format demo local bench clean

help:
	@echo "make demo    train a small model, run the whole system offline, print the results"
	@echo "make local   start the offline stack and leave it running"
	@echo "make test    lint, then the test suite (installs into .venv first)"
	@echo "make bench   CPU serving benchmark: eager PyTorch vs the served path (JSON)"

install: $(STAMP) $(CHECKOV)

$(STAMP): $(REQUIREMENTS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements/dev.txt
	$(PY) -m pip check
	touch $@

# checkov pins dozens of packages of its own (protobuf, numpy ...): it gets a venv of its own.
$(CHECKOV):
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet checkov==$(CHECKOV_VERSION)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

test: install lint
	$(VENV)/bin/pytest

demo: $(STAMP)
	$(PY) -m local.demo

local: $(STAMP)
	$(PY) -m local.stack

bench: $(STAMP)
	$(PY) tests/benchmarks/bench_serving.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache runs
