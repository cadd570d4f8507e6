"""results/tables/general_tasks.{csv,md,tex}: how far above chance the base model scores on each
general multiple-choice task.

A general task measures forgetting only where the base model knows something: a score at chance
cannot fall. Per task: items, metric, chance (the mean of 1 / choices over the items), the base
score with its 95% Wilson interval, and the exact one-sided p of scoring at least that much by
guessing. Guessing item i right has probability 1 / choices_i, so the number right by chance follows
a Poisson-binomial distribution, computed exactly by convolution; tasks with a varying number of
choices (ARC has 3 to 5) need no approximation.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import binomtest

from ..core.examples import read_records
from ..methods.registry import BASE

ALPHA = 0.05


def chance_tail(chances: list[float], right: int) -> float:
    """P(at least `right` items right) when item i is right with probability chances[i]."""
    dist = np.array([1.0])
    for p in chances:
        dist = np.convolve(dist, [1 - p, p])
    return float(min(1.0, dist[right:].sum()))


def general_task_table(base_eval: dict, items: dict[tuple[str, str], dict], data_dir: str | Path) -> pd.DataFrame:
    """One row per general task whose items the build wrote, from the base model's eval.json and its
    per-item records (`stats.read_items`). lm-eval's built-in tasks have no file here: their chance is
    unknown, so they are left out."""
    rows = []
    for task in base_eval["general"]["tasks"]:
        path = Path(data_dir) / task / "test.jsonl"
        if not path.exists():
            continue
        choices = {r["id"]: len(r["choices"]) for r in read_records(path, "mc")}
        metric = base_eval["tasks"][task]["metric"]
        scored = [(k, r[metric]) for (t, k), r in items.items() if t == task]
        n, right = len(scored), int(round(sum(v for _, v in scored)))
        chances = [1 / choices[k] for k, _ in scored]
        ci = binomtest(right, n).proportion_ci(method="wilson")
        p = chance_tail(chances, right)
        rows.append(
            {
                "task": task,
                "items": n,
                "metric": metric,
                "chance": float(np.mean(chances)),
                "base": right / n,
                "lo": ci.low,
                "hi": ci.high,
                "p_chance": p,
                "above_chance": p < ALPHA,
            }
        )
    return pd.DataFrame(
        rows, columns=["task", "items", "metric", "chance", BASE, "lo", "hi", "p_chance", "above_chance"]
    )


def general_task_view(table: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    view = pd.DataFrame(
        {
            "task": table.task,
            "items": table["items"].astype(str),
            "metric": table.metric,
            "chance": table.chance.map(lambda v: f"{v:.3f}"),
            "base [95% CI]": [f"{b:.3f} [{lo:.3f}, {hi:.3f}]" for b, lo, hi in zip(table.base, table.lo, table.hi)],
            "p (≥ base by guessing)": table.p_chance.map(lambda v: f"{v:.2g}"),
            "above chance": table.above_chance.map({True: "yes", False: "no"}),
        }
    )
    return view, (
        "Base model on each general multiple-choice task (test items). Chance: the mean of 1 / choices. "
        "CI: Wilson. p: exact one-sided probability of scoring at least the base's by guessing "
        f"(Poisson-binomial); above chance when p < {ALPHA}. A task at chance cannot show forgetting; "
        "the general multiple-choice measure's minimal detectable difference is in power.md."
    )
