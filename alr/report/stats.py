"""Paired statistics on per-item scores: a seeds-by-items t interval, an exact sign test, Holm.

Two methods evaluated on the same items are compared item by item. Each method's scores of a task
are a matrix, one row per seed (training run), one column per item; a comparison's statistic is the
mean over tasks (general-text sources, general tasks) of the task's mean difference (a - b).

- `paired_interval`: that difference with a t interval whose variance has two parts, each estimated
  from the data (a two-way seeds x items random-effects decomposition):
  - seeds: the variance of the per-seed differences over seeds, divided by the number of seeds. One
    training run's effect is shared by every task and every item of that run, so a seed is one draw
    for all tasks together, never re-drawn per task. When both methods ran the same seeds (by seed id,
    two or more) they are paired seed by seed; otherwise each method's seed variance is added, and a
    tuned method with one seed takes the other method's per-seed variance (the training noise of two
    fine-tunes of one model taken as alike). The base model is not a training run and adds none. Two
    single runs give an interval conditional on those runs (the claims give it no verdict).
  - items: the variance of the per-item seed-mean differences within each task, divided by its items
    (a cluster-robust variance where items share an entity), minus the within-item seed noise that the
    seed part already holds; summed over tasks with weight 1/tasks^2.
  Its degrees of freedom are Welch-Satterthwaite's, so with three seeds and a dominant seed part the
  interval is as wide as a t interval on 2 degrees of freedom (`tests/test_stats.py` checks coverage in
  simulation at the configs' sizes and at every seed shape the tables print: 3 against 3, 3 against 1,
  3 against the base, and shows that 1 against 1 does not reach it). A percentile bootstrap over three
  seeds cannot reach its level.
- `sign_test`: per item, the seed-mean score of a minus that of b; the items where a is better
  and where it is worse, and the exact two-sided binomial test of better vs worse (ties dropped).
  With one seed this is the exact McNemar test on the discordant pairs.
- `holm`: Holm's step-down adjustment of a family of p-values.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..core.examples import DataError

Scores = dict[str, tuple[list[str], np.ndarray]]  # task -> (item ids, [seeds x items] correctness)


def item_scores(runs: list[dict[tuple[str, str], dict]], tasks: list[str], metric_of) -> Scores:
    """{task: (item ids, [runs x items] correctness)}; every run must hold the same items."""
    out = {}
    for task in tasks:
        ids = sorted(key[1] for key in runs[0] if key[0] == task)
        if not ids:
            raise DataError(f"no per-item records for task {task!r}")
        for run in runs[1:]:
            if sorted(key[1] for key in run if key[0] == task) != ids:
                raise DataError(f"runs disagree on the items of task {task!r}; cannot pair them")
        metric = metric_of(task)
        out[task] = (ids, np.array([[float(run[(task, i)][metric]) for i in ids] for run in runs]))
    return out


def _rows(scores: np.ndarray) -> np.ndarray:
    return scores.reshape(1, -1) if scores.ndim == 1 else scores


def _paired_tasks(a: Scores, b: Scores):
    if sorted(a) != sorted(b):
        raise DataError(f"the two methods were evaluated on different tasks: {sorted(a)} vs {sorted(b)}")
    for task in sorted(a):
        (ids_a, sa), (ids_b, sb) = a[task], b[task]
        if ids_a != ids_b:
            raise DataError(f"task {task!r}: the two methods were evaluated on different items")
        yield task, _rows(sa), _rows(sb)


def _seed_part(rows: list[np.ndarray]) -> tuple[float, int]:
    """(variance of the mean over seeds, its degrees of freedom) from per-task [seeds x items]
    matrices of one method (or of paired differences): a seed's value is its mean over tasks."""
    per_seed = np.mean([m.mean(axis=1) for m in rows], axis=0)
    k = len(per_seed)
    return (float(per_seed.var(ddof=1)) / k, k - 1) if k > 1 else (0.0, 0)


def _within_item_noise(m: np.ndarray) -> float:
    """The residual variance of a [seeds x items] matrix after seed and item means (two-way ANOVA):
    how much one item's score moves between seeds beyond the seed's shift of every item."""
    k, n = m.shape
    if k < 2 or n < 2:
        return 0.0
    resid = m - m.mean(axis=0, keepdims=True) - m.mean(axis=1, keepdims=True) + m.mean()
    return float((resid**2).sum()) / ((k - 1) * (n - 1))


def _mean_variance(values: np.ndarray, clusters: list | None) -> float:
    """The variance of the mean of `values` over items, with items of one cluster resampled together."""
    n = len(values)
    if n < 2:
        return 0.0
    if clusters is None:
        return float(values.var(ddof=1)) / n
    dev = pd.Series(values - values.mean()).groupby(clusters).sum().to_numpy()
    c = len(dev)
    return float(c / (c - 1) * (dev**2).sum()) / n**2 if c > 1 else 0.0


def _seed_parts(tasks, seeds_a, seeds_b) -> tuple[list[tuple[float, int]], str]:
    """The seed part(s) of the variance and how the seeds were treated (module docstring): paired by seed
    id when both sides ran the same seeds (two or more); otherwise each tuned side's own variance, a side
    with one tuned seed taking the other side's per-seed variance (training noise taken as alike across
    methods); an untrained side (the base model: `None`) adds none."""
    k_a, k_b = tasks[0][1].shape[0], tasks[0][2].shape[0]
    if seeds_a is not None and seeds_a == seeds_b and k_a > 1:
        return [_seed_part([sa - sb for _, sa, sb in tasks])], "paired"
    own_a, own_b = _seed_part([sa for _, sa, _ in tasks]), _seed_part([sb for _, _, sb in tasks])
    tuned_a, tuned_b = seeds_a is not None, seeds_b is not None
    if tuned_a and tuned_b and (k_a == 1) != (k_b == 1):
        donor, k_donor = (own_b, k_b) if k_a == 1 else (own_a, k_a)
        per_seed = donor[0] * k_donor  # the donor's variance of one seed
        return [(per_seed / k_donor + per_seed, donor[1])], "one seed, variance borrowed"
    parts = [part for part in (own_a, own_b) if part[1]]
    return parts, "independent" if parts else "conditional on the runs"


def paired_interval(
    a: Scores,
    b: Scores,
    level: float = 0.95,
    clusters: dict[str, dict[str, str]] | None = None,
    seeds_a: list | None = None,
    seeds_b: list | None = None,
) -> dict:
    """(a - b) of the mean-over-tasks score with the seeds x items t interval of the module docstring.
    `clusters`: {task: {item id: entity}} for tasks whose items share an entity (resampled together).
    `seeds_a`, `seeds_b`: the seed ids of the rows of each side's matrices (None: not a trained run)."""
    from scipy.stats import t as student_t

    tasks = list(_paired_tasks(a, b))
    weight = 1 / len(tasks)
    seed_parts, seeds = _seed_parts(tasks, seeds_a, seeds_b)
    paired = seeds == "paired"
    diff, item_var, item_df = 0.0, 0.0, 0
    for task, sa, sb in tasks:
        d = sa.mean(axis=0) - sb.mean(axis=0)
        diff += weight * float(d.mean())
        if paired:
            noise = _within_item_noise(sa - sb) / len(sa)
        else:
            noise = _within_item_noise(sa) / len(sa) + _within_item_noise(sb) / len(sb)
        ids = a[task][0]
        groups = [clusters[task][i] for i in ids] if clusters and task in clusters else None
        item_var += weight**2 * max(_mean_variance(d, groups) - noise / len(d), 0.0)
        item_df += (len(set(groups)) if groups else len(d)) - 1
    parts = [*seed_parts, *([(item_var, item_df)] if item_df else [])]
    var = sum(v for v, _ in parts)
    se = math.sqrt(var)
    denominator = sum(v**2 / df for v, df in parts if v > 0)
    df = var**2 / denominator if denominator > 0 else math.inf
    half = float(student_t.ppf(0.5 + level / 2, df)) * se if se > 0 else 0.0
    p = float(2 * student_t.sf(abs(diff) / se, df)) if se > 0 else float(diff == 0)
    return {
        "diff": diff,
        "lo": diff - half,
        "hi": diff + half,
        "se": se,
        "df": df,
        "p": p,
        "level": level,
        "seeds": seeds,
    }


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
