"""Threads per job on CPU: two real jobs one after the other on two threads each, against the same two
jobs side by side on one thread each.

    python benchmarks/studies/job_threads.py [WORKDIR] [--kinds finetune evaluate]

In the folder of a finished default run (`make run`; it reads resources/ and the science lora adapter),
each kind runs as the pipeline runs it, a fresh `alr` process per job: `alr finetune` (science, lora,
seeds 0 and 1) and `alr evaluate` (the science lora adapter on the test split, twice). Outputs go to a
temporary folder. Prints each setting's wall time for the pair and the speed-up of side by side: the
reason the pipeline's model jobs run on one thread each (`MODEL_JOB_THREADS`). Whole jobs, not only
their matrix products: imports, loading, the Trainer's and lm-eval's Python work keep a second thread
of one job idle part of the time.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MODEL = "smollm2-135m-instruct"


def _common(threads: int) -> list[str]:
    """The `alr` flags every model job of a default run's folder takes."""
    common = ["--config", str(REPO / "config" / "config.yaml"), "--model-dir", f"resources/models/{MODEL}"]
    return [*common, "--data-dir", "resources/data", "--threads", str(threads)]


def evaluate_command(out: Path, threads: int, *extra: str) -> list[str]:
    """`alr evaluate` of the default run's science lora adapter on the test split, writing `out`."""
    alr = str(Path(sys.executable).parent / "alr")
    weights = f"results/{MODEL}/science/lora/seed0/model"
    job = [
        "evaluate",
        "--split",
        "test",
        "--domains",
        "science",
        "--weights",
        weights,
        "--run-name",
        "lora",
        "--seed",
        "0",
    ]
    return [alr, *job, *_common(threads), *extra, "--out", str(out)]


def command(kind: str, out: Path, seed: int, threads: int) -> list[str]:
    if kind == "finetune":
        alr = str(Path(sys.executable).parent / "alr")
        job = ["finetune", "--domain", "science", "--run-name", "lora", "--seed", str(seed)]
        return [alr, *job, *_common(threads), "--out", str(out / f"finetune{seed}")]
    return evaluate_command(out / f"eval{seed}.json", threads)


def wall(kind: str, tmp: Path, threads: int, side_by_side: bool) -> float:
    """Seconds until both jobs of `kind` finished."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    out = Path(tempfile.mkdtemp(dir=tmp))
    start = time.perf_counter()
    jobs = []
    for seed in (0, 1):
        job = subprocess.Popen(
            command(kind, out, seed, threads), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        jobs.append(job)
        if not side_by_side:
            job.wait()
    for job in jobs:
        if job.wait() != 0:
            raise SystemExit(f"job_threads: {kind} failed: {job.stderr.read().decode()[-2000:]}")
    return time.perf_counter() - start


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("work", nargs="?", default=".", help="a finished default run's folder (default: here)")
    p.add_argument("--kinds", nargs="+", default=["finetune", "evaluate"], choices=["finetune", "evaluate"])
    args = p.parse_args(argv)
    os.chdir(args.work)
    if not Path(f"results/{MODEL}/science/lora/seed0/model").is_dir():
        raise SystemExit(f"job_threads: no default run in {args.work}; run `make run` there first")
    with tempfile.TemporaryDirectory(prefix="alr-job-threads-") as tmp:
        for kind in args.kinds:
            serial = wall(kind, Path(tmp), threads=2, side_by_side=False)
            side = wall(kind, Path(tmp), threads=1, side_by_side=True)
            print(
                f"{kind}: two jobs one after the other on 2 threads {serial:.1f} s, side by side on 1 thread "
                f"{side:.1f} s: {serial / side:.2f}x",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
