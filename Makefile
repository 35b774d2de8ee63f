# Every target installs what it needs into .venv at the repository root.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
CHECKOV_VENV := $(VENV)/tools/checkov
CHECKOV := $(CHECKOV_VENV)/bin/checkov
CHECKOV_VERSION := 3.3.30
# The SAM CLI, like checkov, pins many packages of its own: a venv of its own.
SAM_VENV := $(VENV)/tools/sam
SAM := $(SAM_VENV)/bin/sam
SAM_VERSION := 1.170.0
# `sam build` packs the function with the runtime's interpreter (python3.12) and looks for it on
# PATH; pyenv installs count too, even when its shim is not active.
# Deferred (=, not :=): only `make build` pays for probing interpreters.
PY312 = $(firstword $(foreach p,$(shell command -v python3.12) $(wildcard $(HOME)/.pyenv/versions/3.12.*/bin/python3.12),$(shell $(p) -c 'import sys; print(sys.executable)' 2>/dev/null)))
REQUIREMENTS := requirements/dev.txt lambdas/classify_upload/requirements.txt \
	training/container/requirements.txt training/container/requirements-serving.txt

export SAGEMAKER_SUPPRESS_V2_WARNING := 1
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: help install test test-fast lint format demo local bench hostile parity validate build deploy clean

help:
	@echo "make demo    train a small model, run the whole system offline, print the results"
	@echo "make local   start the offline stack and leave it running"
	@echo "make test    lint, then the test suite (installs into .venv first)"
	@echo "make test-fast   the unit tests only (seconds)"
	@echo "make bench   CPU serving benchmark: eager PyTorch vs the served path (JSON)"
	@echo "make hostile   peak memory per request for hostile images, endpoint and function (JSON)"
	@echo "make parity  train and serve in the SageMaker images' Python 3.12 runtimes (.venv/parity, GBs)"
	@echo "make deploy  sam build + sam deploy --guided (the SAM CLI goes into .venv/tools/sam)"
	@echo "make redrive STACK=...    move the dead-letter queue's messages back to the upload queue"
	@echo "make reprocess STACK=... ARGS=\"--all --wait\"   classify stored uploads again (after a model update)"

# The three environments install side by side: each pip keeps about one core busy, and a fresh
# clone spends minutes here. Each one's output is printed whole when it ends.
install:
	@$(MAKE) --no-print-directory -j3 --output-sync=target $(STAMP) $(CHECKOV) $(SAM)

$(STAMP): $(REQUIREMENTS) pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements/dev.txt
	@# The repository itself, editable: its packages import from where they live, no sys.path edits.
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e . 2>&1 | grep -v "^ \|^$$\|!!" || true
	$(PY) -m pip check
	touch $@

# checkov pins dozens of packages of its own (protobuf, numpy ...): it gets a venv of its own.
$(CHECKOV):
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet checkov==$(CHECKOV_VERSION)

$(SAM):
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/python -m pip install --quiet aws-sam-cli==$(SAM_VERSION)

validate: $(SAM)
	SAM_CLI_TELEMETRY=0 $(SAM) validate --lint

build: $(SAM)
	@test -n "$(PY312)" || { echo "sam build needs python3.12 (the function's runtime) on PATH" >&2; exit 2; }
	PATH="$(dir $(PY312)):$$PATH" SAM_CLI_TELEMETRY=0 $(SAM) build

deploy: build
	SAM_CLI_TELEMETRY=0 $(SAM) deploy --guided

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# Two workers, one test module at a time each, in the order tests/conftest.py gives (the longest
# modules first, the many short unit modules last to even out the end): CI has 2 cores, and most of
# the end-to-end time is waiting for uploads, queues and timeouts. TEST_WORKERS=0: one process.
TEST_WORKERS ?= 2

test: install lint
	$(VENV)/bin/pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

# The unit tests only (pure functions, no servers, no training run): seconds, for your own loop.
test-fast: $(STAMP)
	$(VENV)/bin/pytest -q tests/unit

# Options pass through, e.g. make demo ARGS="--data-dir dogImages --train-args '--pretrained true'"
ARGS ?=

# Both run the function as `sam build` packs it for python3.12: they install the SAM CLI too
# (beside the development environment, as `make install` does).
demo: $(STAMP) $(SAM)
	$(PY) -m local demo $(ARGS)

local: $(STAMP) $(SAM)
	$(PY) -m local up $(ARGS)

# The stack's operator commands (docs/operations.md), e.g.
#   make redrive STACK=dog-breeds
#   make reprocess STACK=dog-breeds ARGS="--breed Beagle --wait"
# ARGS also takes --region, --profile, --endpoint-url (the offline stack of `make local`).
STACK ?= dog-breeds
.PHONY: redrive reprocess

redrive: $(STAMP)
	$(PY) -m classify_ops redrive --stack $(STACK) $(ARGS)

reprocess: $(STAMP)
	$(PY) -m classify_ops reprocess --stack $(STACK) $(ARGS)

bench: $(STAMP)
	$(PY) benchmarks/bench_serving.py $(ARGS)

hostile: $(STAMP)
	$(PY) benchmarks/bench_hostile.py $(ARGS)

# Not part of `make test`: the first run downloads several GB (PyPI's torch is the CUDA build).
parity: $(STAMP)
	$(PY) -m local.parity

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .aws-sam runs
