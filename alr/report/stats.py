"""Paired statistics on per-item correctness: a two-level bootstrap CI, an exact sign test, Holm.

Two methods evaluated on the same items are compared item by item. Each method's scores of a task
are a matrix, one row per seed (training run), one column per item.

- `paired_bootstrap`: the difference (a - b) of the general score (mean over tasks of the task
  accuracy) or of the domain accuracy, with a percentile CI from a two-level bootstrap: every
  replicate draws seeds with replacement (the same seeds for both methods when both have the same
  seeds, e.g. 0, 1, 2; independently otherwise, e.g. against the single base model), then items
  with replacement (the same items for both). So the CI holds training variance as well as item
  variance; averaging seeds per item before an item bootstrap would leave the first out.
- `sign_test`: per item, the seed-mean correctness of a minus that of b; the items where a is better
  and where it is worse, and the exact two-sided binomial test of better vs worse (ties dropped).
  With one seed this is the exact McNemar test on the discordant pairs.
- `holm`: Holm's step-down adjustment of a family of p-values (every method against the reference).
"""
from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import numpy as np

Scores = dict[str, tuple[list[str], np.ndarray]]  # task -> (item ids, [seeds x items] correctness)


def read_items(path: str | Path) -> dict[tuple[str, str], dict]:
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh]
    return {(r["task"], r["id"]): r for r in rows}


def item_scores(runs: list[dict[tuple[str, str], dict]], tasks: list[str], metric_of) -> Scores:
    """{task: (item ids, [runs x items] correctness)}; every run must hold the same items."""
    out = {}
    for task in tasks:
        ids = sorted(key[1] for key in runs[0] if key[0] == task)
        if not ids:
            raise ValueError(f"no per-item records for task {task!r}")
        for run in runs[1:]:
            if sorted(key[1] for key in run if key[0] == task) != ids:
                raise ValueError(f"runs disagree on the items of task {task!r}; cannot pair them")
        metric = metric_of(task)
        out[task] = (ids, np.array([[float(run[(task, i)][metric]) for i in ids] for run in runs]))
    return out


def _rows(scores: np.ndarray) -> np.ndarray:
    return scores.reshape(1, -1) if scores.ndim == 1 else scores


def _paired_tasks(a: Scores, b: Scores):
    if sorted(a) != sorted(b):
        raise ValueError(f"the two methods were evaluated on different tasks: {sorted(a)} vs {sorted(b)}")
    for task in sorted(a):
        (ids_a, sa), (ids_b, sb) = a[task], b[task]
        if ids_a != ids_b:
            raise ValueError(f"task {task!r}: the two methods were evaluated on different items")
        yield task, _rows(sa), _rows(sb)


def paired_bootstrap(a: Scores, b: Scores, samples: int = 2000, seed: int = 0, level: float = 0.95) -> dict:
    """Difference (a - b) of the mean-over-tasks score, with the two-level bootstrap CI above."""
    rng = np.random.default_rng(seed)
    observed, replicates = 0.0, np.zeros(samples)
    for _, sa, sb in _paired_tasks(a, b):
        observed += sa.mean() - sb.mean()
        rows_a = rng.integers(0, len(sa), size=(samples, len(sa)))
        rows_b = rows_a if len(sa) == len(sb) else rng.integers(0, len(sb), size=(samples, len(sb)))
        per_item = sa[rows_a].mean(axis=1) - sb[rows_b].mean(axis=1)  # [samples x items]
        items = rng.integers(0, sa.shape[1], size=(samples, sa.shape[1]))
        replicates += np.take_along_axis(per_item, items, axis=1).mean(axis=1)
    observed /= len(a)
    replicates /= len(a)
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(replicates, [tail, 100 - tail])
    return {"diff": float(observed), "lo": float(lo), "hi": float(hi), "se": float(replicates.std(ddof=1)),
            "level": level, "samples": samples}


def sign_test(a: Scores, b: Scores) -> dict:
    """Items (over all tasks) where a's seed-mean correctness is above / below b's, and the exact
    two-sided binomial p-value of that split (1.0 when no item differs)."""
    from scipy.stats import binomtest

    better = worse = 0
    for _, sa, sb in _paired_tasks(a, b):
        diff = sa.mean(axis=0) - sb.mean(axis=0)
        better += int((diff > 0).sum())
        worse += int((diff < 0).sum())
    p = binomtest(better, better + worse, 0.5).pvalue if better + worse else 1.0
    return {"better": better, "worse": worse, "p": float(p)}


def holm(pvalues: list[float]) -> list[float]:
    """Holm-adjusted p-values, in the input order; NaN entries are not part of the family."""
    family = sorted((p, i) for i, p in enumerate(pvalues) if not math.isnan(p))
    out = [math.nan] * len(pvalues)
    running = 0.0
    for rank, (p, i) in enumerate(family):
        running = max(running, min(1.0, (len(family) - rank) * p))
        out[i] = running
    return out
