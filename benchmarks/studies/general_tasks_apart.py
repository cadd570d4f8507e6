"""A test pass without the general multiple-choice tasks, and those tasks alone, against the whole pass.

    python benchmarks/studies/general_tasks_apart.py [WORKDIR]

In the folder of a finished default run (`make run`), `alr evaluate` of the science lora adapter on the
test split runs three times, a fresh process each on one thread, one after the other, as the pipeline
runs its jobs: `--general-tasks score` (the whole pass), `skip` (what a sweep point that selection did
not choose now runs) and `only` (what the chosen one adds, into eval_general.json). Prints each job's
wall time, and whether the skip and only records, merged as the reports merge them, equal the whole
pass: task scores, accuracies and text NLLs exactly, the domain's gold-answer NLLs within a bound
(lm-eval batches the domain's requests with the general tasks' in the whole pass).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from job_threads import MODEL, evaluate_command  # a sibling: `python benchmarks/<this file>` puts its folder first

from alr.core.io import read_json
from alr.evaluate.records import read_eval, read_eval_items, read_items

NLL_BOUND = 1e-4  # nats: float32 rounding of differently shaped batches, far below the effects measured


def timed(out: Path, mode: str) -> float:
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    start = time.perf_counter()
    job = subprocess.run(evaluate_command(out, 1, "--general-tasks", mode), env=env, capture_output=True, text=True)
    if job.returncode != 0:
        raise SystemExit(f"general_tasks_apart: the {mode} pass failed: {job.stderr[-2000:]}")
    return time.perf_counter() - start


def compare(whole: Path, apart: Path) -> str:
    """How the merged skip + only records differ from the whole pass."""
    merged, one = read_eval(apart), read_json(whole)
    same = all(merged[k] == one[k] for k in ("tasks", "general", "domains"))
    a, b = read_eval_items(apart), read_items(whole.with_name("eval_items.jsonl.gz"))
    exact = [k for k in ("acc", "acc_norm", "nll") if any(a[i].get(k) != b[i].get(k) for i in b)]
    worst = max(abs(a[i][k] - b[i][k]) for i in b for k in ("gold_nll", "choice_nll") if k in b[i])
    ok = same and set(a) == set(b) and not exact and worst <= NLL_BOUND
    return (
        f"merged equals whole: scores {same}, items {set(a) == set(b)}, differing exact fields {exact or 'none'}; "
        f"largest gold-answer NLL change {worst:.2g} nats (bound {NLL_BOUND:g}): {'ok' if ok else 'FAILED'}"
    )


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("work", nargs="?", default=".", help="a finished default run's folder (default: here)")
    args = p.parse_args(argv)
    os.chdir(args.work)
    if not Path(f"results/{MODEL}/science/lora/seed0/model").is_dir():
        raise SystemExit(f"general_tasks_apart: no default run in {args.work}; run `make run` there first")
    with tempfile.TemporaryDirectory(prefix="alr-general-apart-") as tmp:
        whole, apart = Path(tmp, "whole", "eval.json"), Path(tmp, "apart", "eval.json")
        seconds = {mode: timed(out, mode) for mode, out in (("score", whole), ("skip", apart))}
        seconds["only"] = timed(Path(tmp, "only", "eval.json"), "only")
        for name in ("eval.json", "eval_items.jsonl.gz"):  # where the pipeline writes it: beside the skip pass
            shutil.copy(Path(tmp, "only", name), apart.with_name(name.replace("eval", "eval_general", 1)))
        print(
            f"whole pass {seconds['score']:.1f} s; without the general tasks {seconds['skip']:.1f} s; "
            f"the general tasks alone {seconds['only']:.1f} s",
            flush=True,
        )
        print(compare(whole, apart))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
