"""The SLURM profile on a real one-node SLURM that the tests start and stop (tools/slurm-local.sh), not a
parse of it: `make test-slurm` (root; a few minutes). `make test` leaves these out (marker `slurm`).

The shipped profile is used as it is, through an overlay written here (tests/slurm_profile.py): the
placeholders filled for the local cluster, no GPU asked of a node that has none, memory and threads cut to
this machine. The DAG is the smoke configuration with one more method, `flaky_lora` (tests/flaky_plugin.py),
whose first attempt fails.
"""

from __future__ import annotations

import datetime
import os
import re
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.slurm_profile import local_slurm_profile
from tests.tiny import REPO, snakemake, tiny_config

pytestmark = pytest.mark.slurm
SCRIPT = REPO / "tools" / "slurm-local.sh"
PLUGIN = {"ALR_PLUGINS": "tests.flaky_plugin", "PYTHONPATH": str(REPO)}


def _run(*cmd: str, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def cluster():
    if os.geteuid() != 0:
        pytest.fail("make test-slurm starts a SLURM cluster on this machine: run it as root")
    up = _run(str(SCRIPT), "start")
    assert up.returncode == 0, up.stdout + up.stderr
    yield
    down = _run(str(SCRIPT), "stop")
    assert down.returncode == 0, down.stdout + down.stderr
    assert not _run("pgrep", "-x", "slurmctld").stdout.strip()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """(the config file, the overlay profile) in a module folder."""
    root = tmp_path_factory.mktemp("slurm")
    cfg = tiny_config(root)
    cfg.update(domains=["science"], methods=["lora", "alr", "flaky_lora"])
    path = root / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path, local_slurm_profile(REPO / "workflow" / "profiles" / "slurm", root / "profile", "alr", "debug")


def _jobs(since: str) -> pd.DataFrame:
    """Every SLURM job since `since`: its id, the run's uuid (the job name), the rule (from the comment the
    plugin sets) and the state."""
    out = _run("sacct", "-X", "--parsable2", "--noheader", "--starttime", since, "--format=JobID,JobName,Comment,State")
    assert out.returncode == 0, out.stderr
    rows = [line.split("|") for line in out.stdout.splitlines() if line.strip()]
    df = pd.DataFrame(rows, columns=["id", "run", "comment", "state"])
    df["rule"] = df.comment.str.extract(r"^rule_([a-z_]+?)(?:_wildcards_.*)?$", expand=False)
    return df


def _rules_run(stdout: str) -> set[str]:
    """The rules of a run, from Snakemake's "Job stats" table (`all` is the target, not a job)."""
    table = stdout.split("Job stats:", 1)[1].split("\n\n", 1)[0].splitlines()[3:]
    return {line.split()[0] for line in table if line.split() and line.split()[0] not in ("total", "all")}


def _same_tables(a: Path, b: Path) -> None:
    """The tables of two runs agree but for what measures time or memory (efficiency, the speed claim)."""
    for csv in sorted((a / "results" / "tables").glob("*.csv")):
        if csv.name in ("efficiency.csv", "claims.csv"):
            continue
        left, right = pd.read_csv(csv), pd.read_csv(b / "results" / "tables" / csv.name)
        keep = [c for c in left.columns if not any(k in c for k in ("time", "mem", "wall"))]
        pd.testing.assert_frame_equal(left[keep], right[keep], obj=csv.name)


def test_the_smoke_dag_runs_through_the_slurm_profile(cluster, setup, tmp_path):
    """Every rule runs as a SLURM job (sacct), the tables equal a local run's, and the injected fault is
    retried by the profile's `retries`."""
    config, profile = setup
    local, remote = tmp_path / "local", tmp_path / "slurm"
    local.mkdir()
    remote.mkdir()
    here = snakemake(local, config, env=PLUGIN)
    assert here.returncode == 0, here.stdout[-3000:] + here.stderr[-3000:]
    since = datetime.datetime.now().strftime("%Y-%m-%dT%H:%M:%S")
    marker = tmp_path / "failed-once"
    there = snakemake(
        remote, config, "--profile", str(profile), env={**PLUGIN, "ALR_TEST_FAIL_ONCE": str(marker)}, timeout=1800
    )
    out = there.stdout + there.stderr
    assert there.returncode == 0, out[-4000:]
    assert marker.exists() and "injected fault" in out  # the first attempt of flaky_lora's fine-tune failed
    jobs = _jobs(since)
    mine = jobs[jobs.run == _run_id(out)]
    assert set(mine.rule) == _rules_run(here.stdout + here.stderr), mine
    assert (mine[mine.rule == "finetune"].state == "FAILED").sum() == 1  # the fault, then its retry
    assert (mine.state == "COMPLETED").sum() == len(mine) - 1
    _same_tables(local, remote)


def test_a_cancelled_job_is_reported_and_a_rerun_redoes_nothing_done(cluster, setup, tmp_path):
    """`scancel` of a running fine-tune fails the run (no retry here), and Snakemake says so; the rerun
    completes and submits none of the jobs that had finished."""
    config, profile = setup
    work = tmp_path / "work"
    work.mkdir()
    since = datetime.datetime.now().strftime("%Y-%m-%dT%H:%M:%S")
    proc = subprocess.Popen(
        [*_snakemake_argv(work, config), "--profile", str(profile), "--retries", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=_env(),
    )
    cancelled = None
    for _ in range(600):
        if proc.poll() is not None:
            pytest.fail(f"snakemake ended before a fine-tune ran:\n{proc.stdout.read()[-4000:]}")
        # squeue: sacct stores a job's comment (the plugin's rule name) only when the job ends
        queue = _run("squeue", "-h", "-t", "RUNNING", "-o", "%i|%k").stdout.split()
        target = [job.split("|")[0] for job in queue if job.split("|")[1].startswith("rule_finetune")]
        if target:
            cancelled = target[0]
            assert _run("scancel", cancelled).returncode == 0
            break
        time.sleep(1)
    assert cancelled, "no fine-tune ran within 10 minutes"
    out, _ = proc.communicate(timeout=1800)
    assert proc.returncode != 0 and cancelled in out and "CANCELLED" in out, out[-4000:]
    first = _jobs(since)
    finished = set(first[(first.run == _run_id(out)) & (first.state == "COMPLETED")].comment)
    done = {p: p.stat().st_mtime_ns for p in (work / "results").rglob("*.json")}
    again = subprocess.run(
        [*_snakemake_argv(work, config), "--profile", str(profile)], capture_output=True, text=True, env=_env()
    )
    rerun_out = again.stdout + again.stderr
    assert again.returncode == 0, rerun_out[-4000:]
    assert {p: p.stat().st_mtime_ns for p in done} == done  # nothing that had finished was redone
    rerun = _jobs(since)
    rerun = rerun[rerun.run == _run_id(rerun_out)]
    assert finished and "finetune" in set(rerun.rule) and not finished & set(rerun.comment), (finished, rerun)


def test_one_job_through_sbatch_and_sacct(cluster, setup, tmp_path):
    """The short form CI runs (`make test-slurm-short`): one rule submitted through the profile, found in
    sacct as COMPLETED."""
    config, profile = setup
    work = tmp_path / "work"
    work.mkdir()
    since = datetime.datetime.now().strftime("%Y-%m-%dT%H:%M:%S")
    proc = snakemake(work, config, "--profile", str(profile), "resources/data/manifest.json", env=PLUGIN)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    jobs = _jobs(since)
    assert list(jobs.rule) == ["prepare_data"] and list(jobs.state) == ["COMPLETED"], jobs


def _run_id(out: str) -> str:
    """The plugin's id of a Snakemake run, the job name of each of its SLURM jobs."""
    return re.search(r"SLURM run ID: (\S+)", out)[1]


def _snakemake_argv(work: Path, config: Path) -> list[str]:
    import sys

    return [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(work), "--cores", "2"] + [
        "--configfile",
        str(config),
        "--replace-workflow-config",
    ]


def _env() -> dict:
    import sys

    bindir = os.path.dirname(sys.executable)
    path = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep) if p and p != bindir)
    return {k: v for k, v in dict(os.environ, PATH=path, **PLUGIN).items() if k != "VIRTUAL_ENV"}
