"""Paired bootstrap confidence intervals on per-item correctness.

Two methods evaluated on the same items are compared item by item: each bootstrap replicate
resamples the items of every task with replacement (the same indices for both methods), and the
statistic is the difference of the general score (mean over tasks of the task accuracy) or of the
domain accuracy. With several seeds, an item's correctness is first averaged over seeds.
"""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np


def read_items(path: str | Path) -> dict[tuple[str, str], dict]:
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh]
    return {(r["task"], r["id"]): r for r in rows}


def item_scores(runs: list[dict[tuple[str, str], dict]], tasks: list[str], metric_of) -> dict[str, tuple[list[str], np.ndarray]]:
    """{task: (item ids, correctness averaged over the runs)}; every run must hold the same items."""
    out = {}
    for task in tasks:
        ids = sorted(key[1] for key in runs[0] if key[0] == task)
        if not ids:
            raise ValueError(f"no per-item records for task {task!r}")
        for run in runs[1:]:
            if sorted(key[1] for key in run if key[0] == task) != ids:
                raise ValueError(f"runs disagree on the items of task {task!r}; cannot pair them")
        metric = metric_of(task)
        out[task] = (ids, np.mean([[run[(task, i)][metric] for i in ids] for run in runs], axis=0))
    return out


def paired_bootstrap(a: dict[str, tuple[list[str], np.ndarray]], b: dict[str, tuple[list[str], np.ndarray]],
                     samples: int = 2000, seed: int = 0, level: float = 0.95) -> dict:
    """Difference (a - b) of the mean-over-tasks accuracy with a percentile bootstrap CI."""
    rng = np.random.default_rng(seed)
    observed, replicates = 0.0, np.zeros(samples)
    for task in sorted(a):
        ids_a, scores_a = a[task]
        ids_b, scores_b = b[task]
        if ids_a != ids_b:
            raise ValueError(f"task {task!r}: the two methods were evaluated on different items")
        diff = scores_a - scores_b
        observed += diff.mean()
        idx = rng.integers(0, len(diff), size=(samples, len(diff)))
        replicates += diff[idx].mean(axis=1)
    observed /= len(a)
    replicates /= len(a)
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(replicates, [tail, 100 - tail])
    return {"diff": float(observed), "lo": float(lo), "hi": float(hi), "level": level, "samples": samples}
