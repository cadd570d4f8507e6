"""The multiple-choice scoring of a test pass with the output head only where lm-eval reads it, against HFLM's.

    python benchmarks/studies/continuation_head.py [WORKDIR] [--repeats 2]

In the folder of a finished default run (`make run`), on one thread as the pipeline's jobs run: the
lm-eval part of the base model's test pass (the general multiple-choice tasks and every domain's test
items, `alr.evaluate.tasks.run_lm_eval`), scored by `ContinuationHeadLM` (alr/evaluate/scored_lm.py, the pipeline's
scorer) and by lm-eval's own HFLM, alternating which goes first, `--repeats` times each. Prints each
pass's time, the ratio of the medians, whether every accuracy is equal, and the largest change in a
gold answer's NLL (summed log-likelihood) and NLL among the choices.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import time
from pathlib import Path
from unittest import mock

import torch
from general_tasks_apart import NLL_BOUND  # a sibling: `python benchmarks/<this file>` puts its folder first
from lm_eval.models.huggingface import HFLM

from alr.config import DEFAULT_CONFIG, load_config
from alr.evaluate.run import load_scoring_model, task_sources
from alr.evaluate.tasks import run_lm_eval
from alr.plugins import load_plugins


def score(cfg: dict, model, tok, sources: tuple[dict, dict], plain: bool) -> tuple[float, list[dict]]:
    """(seconds, per-item records) of the lm-eval part of the base model's test pass; `sources`:
    (built-in tasks, split files) as `task_sources` gives them."""
    builtin, files = sources
    scorer = mock.patch("alr.evaluate.scored_lm.ContinuationHeadLM", HFLM) if plain else contextlib.nullcontext()
    with scorer:
        start = time.perf_counter()
        _, items = run_lm_eval(model, tok, files, cfg["eval"]["batch_size"], None, builtin)
        return time.perf_counter() - start, items


def compare(ours: list[dict], theirs: list[dict]) -> str:
    same_acc = [a["acc"] for a in ours] == [b["acc"] for b in theirs]
    worst = max(abs(a[k] - b[k]) for a, b in zip(ours, theirs) for k in ("gold_nll", "choice_nll") if k in b)
    ok = same_acc and worst <= NLL_BOUND and len(ours) == len(theirs)
    return (
        f"{len(theirs)} items: accuracies equal {same_acc}; largest gold-answer NLL change {worst:.2g} nats "
        f"(bound {NLL_BOUND:g}): {'ok' if ok else 'FAILED'}"
    )


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("work", nargs="?", default=".", help="a finished default run's folder (default: here)")
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args(argv)
    os.chdir(args.work)
    model_dir = Path("resources/models/smollm2-135m-instruct")
    if not (model_dir / "config.json").is_file():
        raise SystemExit(f"continuation_head: no default run in {args.work}; run `make run` there first")
    torch.set_num_threads(1)
    load_plugins()
    cfg = load_config(DEFAULT_CONFIG)
    model, tok = load_scoring_model(model_dir, None, cfg["model"]["dtype"], 1.0)
    names = list(cfg["data"]["general"]["tasks"]) + list(cfg["domains"])
    sources = task_sources(cfg, Path("resources/data"), names, "test")
    times: dict[str, list[float]] = {"continuation head": [], "HFLM": []}
    items = {}
    for r in range(args.repeats):
        for name in ("continuation head", "HFLM") if r % 2 == 0 else ("HFLM", "continuation head"):
            seconds, items[name] = score(cfg, model, tok, sources, plain=name == "HFLM")
            times[name].append(seconds)
            print(f"repeat {r} {name}: {seconds:.1f} s", flush=True)
    ratio = statistics.median(times["continuation head"]) / statistics.median(times["HFLM"])
    print(f"median continuation head / HFLM: {ratio:.3f}")
    print(compare(items["continuation head"], items["HFLM"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
