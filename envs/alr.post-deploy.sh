#!/usr/bin/env bash
# Run by `snakemake --sdm conda` inside the freshly created env (see alr.yaml): installs this repository,
# editable and without dependencies (alr.yaml pins them), so each rule's `alr` command works.
# Snakemake copies this script to .snakemake/conda/<hash>.post-deploy.sh (or under --conda-prefix) and
# runs it from its working directory, so neither the script's path nor the cwd is the repository:
# workflow/rules/common.smk exports ALR_REPO (the Snakefile's folder) before the envs are created.
set -euo pipefail
repo="${ALR_REPO:-$PWD}"
if [ ! -f "$repo/pyproject.toml" ] || [ ! -d "$repo/alr" ]; then
    echo "alr.post-deploy.sh: $repo is not the alr repository; set ALR_REPO to it" >&2
    exit 1
fi
pip install --no-deps -e "$repo"
