# atac-denoise: `make demo` runs the whole workflow on the bundled real data; `make test` runs the tests.
# Both create .venv and install everything on first use (MACS3 compiles from source: ~6-8 min).

PYTHON ?= python3
VENV ?= .venv
# The PyTorch build to install. The default is a CPU/CUDA-agnostic pin; on a GPU node any recent CUDA
# build works, e.g. `make venv TORCH="torch --index-url https://download.pytorch.org/whl/cu124"`.
TORCH ?= torch==2.13.0
CORES ?= 2
PROFILE ?= profiles/local
# the demo's config, given explicitly: a run with another --configfile takes nothing from it
DEMO_CONFIG ?= config/config.yaml
PYTEST_ARGS ?=

BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: help venv demo report test test-fast lint format docs install-profile clean gpu-wheels

help:
	@echo "make demo            install (first time) and run the whole workflow on the demo data"
	@echo "make test            install (first time) and run the test suite"
	@echo "make test-fast       the test suite without the slow end-to-end tests"
	@echo "make install-profile link profiles/slurm-gpu into ~/.config/snakemake/ (snakemake --profile slurm-gpu)"
	@echo "make lint            ruff (lint + format check), snakefmt --check, snakemake --lint"
	@echo "make format          ruff format + snakefmt: rewrite the files in place"
	@echo "make docs            regenerate the config-key tables of README.md and config/README.md from the schema"
	@echo "make clean           remove results/ and .snakemake/ (keeps .venv)"
	@echo "make gpu-wheels      cp312 wheels of what a bare GPU image lacks (.gpuwheels/; benchmarks/gpu_session.sh)"

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "atac-denoise needs Python >= 3.11 (found %d.%d); set PYTHON=python3.11" % sys.version_info[:2])'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip setuptools wheel
	$(BIN)/pip install "$(TORCH)"
	$(BIN)/pip install -e ".[workflow,test,lint]"
	@touch $@

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/snakemake --profile $(PROFILE) --cores $(CORES) --configfile $(DEMO_CONFIG)
	$(BIN)/snakemake --profile $(PROFILE) --cores $(CORES) --configfile $(DEMO_CONFIG) --report results/report.html
	@echo "Report: $(CURDIR)/results/report.html"

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/snakefmt --check Snakefile workflow/rules
	$(BIN)/snakemake --lint

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .
	$(BIN)/snakefmt Snakefile workflow/rules

docs: $(STAMP)
	$(BIN)/python docs/configdoc.py --write

install-profile:
	bash profiles/install.sh

# what the GPU image (torch + Triton, Python 3.12) lacks, as wheels to carry there (benchmarks/gpu_session.sh)
GPU_WHEELS := pysam==0.24.1 pyBigWig==0.3.29 isal==1.9.1 jsonschema==4.26.0 pybbi==0.4.2 deflate==0.9.0
gpu-wheels: $(STAMP)
	$(BIN)/pip download -q -d .gpuwheels --only-binary=:all: --python-version 3.12 --implementation cp \
		--abi cp312 --abi abi3 --abi none --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
		--platform manylinux_2_17_x86_64 --platform any $(GPU_WHEELS)
	rm -f .gpuwheels/numpy-*.whl .gpuwheels/typing_extensions-*.whl  # the image's own stay in charge

clean:
	rm -rf results .snakemake
