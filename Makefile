# Two commands for a fresh machine (README "Quick start"):
#   make run    build the embedded default end to end (snakemake --cores all), then results/report.html
#   make test   run the test suite
#   make bench  overheads of importance recording and the penalty vs plain LoRA (benchmarks/README.md)
# Both create .venv on first use and (re)install the pinned package when pyproject.toml changes.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.alr-installed
CORES ?= all
# Tests and runs never touch the Hugging Face hub; assets come from the package registries.
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1

.PHONY: run test bench lint dry-run clean-results

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

run: $(STAMP)
	$(OFFLINE) $(BIN)/snakemake --cores $(CORES) --configfile config/config.yaml
	$(OFFLINE) $(BIN)/snakemake --cores 1 --configfile config/config.yaml --report results/report.html

test: $(STAMP)
	$(OFFLINE) $(BIN)/python -m pytest

bench: $(STAMP)
	$(OFFLINE) $(BIN)/python benchmarks/bench.py

lint: $(STAMP)
	$(BIN)/snakemake --lint

dry-run: $(STAMP)
	$(BIN)/snakemake -n --configfile config/config.yaml

clean-results:
	rm -rf results logs benchmarks/runs
