# Two commands for a fresh machine (README.md "Quick start"), from a plain shell (nothing activated):
#   make run        build the embedded default end to end (snakemake --cores all), then results/report.html
#   make test       run the test suite;  make test-fast: the unit tests only (under 2 minutes)
#   make smoke      `make run` itself on a tiny random model and fixture data in a temporary folder (CI)
#   make check-assets  ask the package index whether every file the config pins is still served (CI)
#   make bench      overheads of importance recording and the penalty vs plain LoRA (benchmarks/README.md)
#   make lint       ruff check, ruff format --check, snakefmt --check, snakemake --lint (CI)
#   make format     rewrite the Python (ruff format) and the Snakefiles (snakefmt) in place
# Each creates .venv on first use and (re)installs the pinned package when pyproject.toml changes.
#
# Nothing here puts .venv/bin on PATH: the rules find the `alr` command beside the interpreter that
# runs Snakemake (workflow/rules/common.smk), so `make run` and a plain `snakemake` from any
# environment behave the same, and `make smoke` proves it from a shell without the venv.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.alr-installed
CORES ?= all
CONFIG ?= config/config.yaml
SNAKEMAKE_ARGS ?=
REPORT ?= results/report.html
# Tests and runs never touch the Hugging Face hub; assets come from the package registries.
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1

# What ruff and snakefmt look at (their settings: pyproject.toml [tool.ruff], [tool.snakefmt]).
PY_SOURCES := alr tests benchmarks
SNAKEFILES := Snakefile $(wildcard workflow/rules/*.smk)

.PHONY: run test test-fast smoke bench lint format dry-run clean-results check-assets

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

run: $(STAMP)
	$(BIN)/alr check-config $(CONFIG) $(filter --replace-workflow-config,$(SNAKEMAKE_ARGS))
	$(OFFLINE) $(BIN)/snakemake --cores $(CORES) --configfile $(CONFIG) $(SNAKEMAKE_ARGS)
	$(OFFLINE) $(BIN)/snakemake --cores 1 --configfile $(CONFIG) $(SNAKEMAKE_ARGS) --report $(REPORT)

test: $(STAMP)
	$(OFFLINE) $(BIN)/python -m pytest

test-fast: $(STAMP)
	$(OFFLINE) $(BIN)/python -m pytest -m "not slow"

# The `run` recipe above, unchanged, on the tiny configuration of the tests (written to a fresh
# temporary folder, which holds the whole run); fails if the tables or the report are missing.
smoke: $(STAMP)
	@set -e; dir=$$(mktemp -d "$${TMPDIR:-/tmp}/alr-smoke.XXXXXX"); \
	$(OFFLINE) $(BIN)/python -m tests.smoke_config "$$dir"; \
	$(MAKE) --no-print-directory run CONFIG="$$dir/tiny.yaml" REPORT="$$dir/report.html" \
		SNAKEMAKE_ARGS="--directory $$dir/work --replace-workflow-config"; \
	for f in results/tables/main.csv results/tables/efficiency.csv results/figures/tradeoff.png; do \
		test -s "$$dir/work/$$f" || { echo "smoke: $$dir/work/$$f is missing"; exit 1; }; done; \
	test -s "$$dir/report.html" || { echo "smoke: $$dir/report.html is missing"; exit 1; }; \
	echo "smoke: make run passed on the tiny configuration in $$dir"; rm -rf "$$dir"

bench: $(STAMP)
	$(OFFLINE) $(BIN)/python benchmarks/bench.py

# Are the default's pinned registry files (model wheel, data wheels) still served? A listing, no download.
check-assets: $(STAMP)
	$(BIN)/alr assets --check $(CONFIG)

# Every check runs, so one report lists all of them; the target fails if any failed.
lint: $(STAMP)
	@status=0; for check in "ruff check $(PY_SOURCES)" "ruff format --check --output-format concise $(PY_SOURCES)" \
		"snakefmt --check $(SNAKEFILES)" "snakemake --lint"; do \
		echo "lint: $$check"; $(BIN)/$$check || { status=1; echo "lint: FAILED: $$check"; }; done; \
	exit $$status

format: $(STAMP)
	$(BIN)/ruff format $(PY_SOURCES)
	$(BIN)/snakefmt $(SNAKEFILES)

dry-run: $(STAMP)
	$(BIN)/snakemake -n --configfile config/config.yaml

clean-results:
	rm -rf results logs benchmarks/runs
