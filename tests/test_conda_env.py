"""envs/alr.yaml under `snakemake --sdm conda`, replayed without conda: Snakemake copies the env file to
.snakemake/conda/<hash>.yaml (conda's pip step runs from that folder) and the post-deploy script to
<hash>.post-deploy.sh, which it runs with the new env activated, from its own working directory."""

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.tiny import REPO, snakemake

ENV_FILE = REPO / "envs" / "alr.yaml"
PINNED = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(\[[A-Za-z0-9,._-]+\])?==[^\s=]+")


def deploy_copy(root: Path, env_file: Path = ENV_FILE) -> Path:
    """The env file (and its post-deploy script, if any) where Snakemake puts them: `.snakemake/conda/<hash>.*`."""
    folder = root / ".snakemake" / "conda"
    folder.mkdir(parents=True)
    address = folder / hashlib.sha256(env_file.read_bytes()).hexdigest()[:32]
    shutil.copy(env_file, f"{address}.yaml")
    script = env_file.with_suffix(".post-deploy.sh")
    if script.exists():
        shutil.copy(script, f"{address}.post-deploy.sh")
    return Path(f"{address}.yaml")


def unresolvable(env_copy: Path) -> list[str]:
    """The pip requirements that are neither `name==version` nor a Python project reached from the copy's folder."""
    env = yaml.safe_load(env_copy.read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    bad = []
    for req in pip:
        if PINNED.fullmatch(req):
            continue
        target = env_copy.parent / req.split()[-1]  # `-e PATH`, `PATH`: relative to where conda runs pip
        if not ((target / "pyproject.toml").exists() or (target / "setup.py").exists()):
            bad.append(req)
    return bad


def fake_bin(folder: Path, log: Path) -> Path:
    """A folder holding a `pip` that appends its arguments, one JSON list a line, to `log`."""
    folder.mkdir(parents=True, exist_ok=True)
    pip = folder / "pip"
    pip.write_text(
        f'#!{sys.executable}\nimport json, sys\nopen({str(log)!r}, "a").write(json.dumps(sys.argv[1:]) + "\\n")\n'
    )
    pip.chmod(0o755)
    return folder


def pip_calls(log: Path) -> list[list[str]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def run_post_deploy(env_copy: Path, cwd: Path, bindir: Path, **env) -> subprocess.CompletedProcess:
    script = env_copy.with_suffix(".post-deploy.sh")
    assert script.exists(), "envs/alr.post-deploy.sh is missing, so nothing installs the repository"
    environ = {k: v for k, v in os.environ.items() if k != "ALR_REPO"}
    environ.update(PATH=os.pathsep.join([str(bindir), environ.get("PATH", "")]), **env)
    return subprocess.run(["bash", str(script)], cwd=cwd, env=environ, capture_output=True, text=True)


def test_every_pip_requirement_resolves_from_snakemakes_copy(tmp_path):
    assert unresolvable(deploy_copy(tmp_path)) == []


def test_the_check_catches_a_relative_path_to_the_repository(tmp_path):
    """The old `-e ..` line: from .snakemake/conda/ it names .snakemake/, not the repository."""
    old = tmp_path / "old" / "alr.yaml"
    old.parent.mkdir()
    env = yaml.safe_load(ENV_FILE.read_text())
    section = next(d for d in env["dependencies"] if isinstance(d, dict))
    section["pip"] = [req for req in section["pip"] if PINNED.fullmatch(req)] + ["-e .."]
    old.write_text(yaml.safe_dump(env))
    assert unresolvable(deploy_copy(tmp_path / "work", old)) == ["-e .."]


def test_post_deploy_installs_the_repository_from_the_copy(tmp_path):
    """Run as Snakemake runs it: from the copy, in a working directory that is not the repository, with
    ALR_REPO as workflow/rules/common.smk exports it."""
    work = tmp_path / "work"
    env_copy = deploy_copy(work)
    log = tmp_path / "pip.log"
    proc = run_post_deploy(env_copy, work, fake_bin(tmp_path / "bin", log), ALR_REPO=str(REPO))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    calls = pip_calls(log)
    assert len(calls) == 1 and calls[0][:3] == ["install", "--no-deps", "-e"], calls
    assert Path(calls[0][3]).resolve() == REPO


def test_post_deploy_without_alr_repo_refuses_a_folder_that_is_not_the_repository(tmp_path):
    work = tmp_path / "work"
    env_copy = deploy_copy(work)
    log = tmp_path / "pip.log"
    proc = run_post_deploy(env_copy, work, fake_bin(tmp_path / "bin", log))
    assert proc.returncode != 0 and "ALR_REPO" in proc.stderr and pip_calls(log) == []


FAKE_CONDA = """#!/usr/bin/env bash
# Answers what Snakemake asks conda; `env create --file F --prefix P` makes P and records F.
case "$*" in
  "--version") echo "conda 25.1.1" ;;
  "info --json") echo '{{"platform": "linux-64", "conda_prefix": "{base}"}}' ;;
  "config --get channel_priority --json") echo '{{"get": {{"channel_priority": "strict"}}}}' ;;
  env\\ create*)
    prefix=$(echo "$*" | sed -E 's/.*--prefix "?([^" ]+)"?.*/\\1/')
    mkdir -p "$prefix/bin" && echo "$*" >> "{base}/created.log" ;;
  clean*) ;;
  *) echo "fake conda: unexpected $*" >&2; exit 1 ;;
esac
"""


@pytest.mark.slow
def test_snakemake_sdm_conda_runs_the_post_deploy_script_on_the_repository(tiny_config_file, tmp_path, monkeypatch):
    """Snakemake itself creates the env (a fake conda whose `activate` puts a recording pip first on PATH)
    in a working directory outside the repository: the post-deploy script installs the repository."""
    base, log = tmp_path / "conda", tmp_path / "pip.log"
    bindir = fake_bin(base / "bin", log)
    (bindir / "conda").write_text(FAKE_CONDA.format(base=base))
    (bindir / "conda").chmod(0o755)
    (bindir / "activate").write_text(f'export PATH="{bindir}:$PATH"\n')
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.setenv("PATH", os.pathsep.join([str(bindir), os.environ.get("PATH", "")]))
    proc = snakemake(work, tiny_config_file, "--sdm", "conda", "--conda-create-envs-only")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "post-deploy" in out and (base / "created.log").exists(), out[-3000:]
    calls = pip_calls(log)
    assert len(calls) == 1 and calls[0][:3] == ["install", "--no-deps", "-e"], calls
    assert Path(calls[0][3]).resolve() == REPO
