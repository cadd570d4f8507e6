"""Paired comparisons of evaluated runs: the per-item values a measure reads and its interval
(alr.report.stats), shared by the tables and the claims."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..core.examples import DataError
from ..core.io import read_json
from ..evaluate.records import read_eval, read_eval_items
from ..evaluate.tasks import PHASE1_TEXT
from .stats import Scores, item_scores, paired_interval, sign_test

# measures against the base: (column, what, lower is better for the model's own value)
VS_BASE = {
    "forgetting": "general NLL rise (nats)",
    "forgetting_mc": "general multiple-choice score loss",
    "forgetting_phase1": "NLL rise on phase 1's own text (overlapping)",
    "domain_gain": "domain accuracy gain",
    "balanced_gain": "domain balanced-accuracy gain (prior-robust)",
    "gold_nll_gain": "domain gold-answer NLL fall (nats)",
    "choice_nll_gain": "domain gold-answer NLL fall among the choices (nats)",
}


class EvaluatedRun:
    """One evaluated run: its eval.json and, on demand, its per-item records as [1 x items] scores."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.eval = read_eval(self.path)
        self._items = None

    @property
    def items(self):
        if self._items is None:
            self._items = read_eval_items(self.path)
        return self._items

    def text_tasks(self) -> list[str]:
        return sorted(self.eval["general"]["sources"])


def _weights(items: dict, task: str) -> dict[str, float]:
    """Per item, the weight that makes a mean of correctness the balanced accuracy of the task."""
    golds = {i: r["gold"] for (t, i), r in items.items() if t == task}
    counts = pd.Series(list(golds.values())).value_counts()
    return {i: len(golds) / (len(counts) * counts[g]) for i, g in golds.items()}


def measure_scores(
    runs: list[EvaluatedRun], measure: str, domain: str, sources: set[str] | None = None
) -> tuple[Scores, int]:
    """The [seeds x items] values a measure is computed from (text NLLs, correctness, gold NLLs, or
    correctness weighted to balanced accuracy), and the sign that turns a difference (a - b) of their
    means into the measure as VS_BASE names it (a loss or a fall: -1). `sources`: the general-text
    sources the forgetting reads (all of them when None)."""
    first = runs[0].eval
    items = [r.items for r in runs]
    if measure == "forgetting":
        texts = [t for t in runs[0].text_tasks() if sources is None or t.removeprefix("text:") in sources]
        if not texts:
            raise DataError(f"no general-text source among {sorted(sources or [])} was evaluated")
        return item_scores(items, texts, lambda t: "nll"), 1
    if measure == "forgetting_phase1":
        return item_scores(items, [PHASE1_TEXT], lambda t: "nll"), 1
    if measure == "forgetting_mc":
        return item_scores(items, first["general"]["tasks"], lambda t: first["tasks"][t]["metric"]), -1
    if measure == "domain_gain":
        return item_scores(items, [domain], lambda t: first["tasks"][t]["metric"]), 1
    if measure == "gold_nll_gain":
        return item_scores(items, [domain], lambda t: "gold_nll"), -1
    if measure == "choice_nll_gain":
        return item_scores(items, [domain], lambda t: "choice_nll"), -1
    if measure == "balanced_gain":
        metric = first["tasks"][domain]["metric"]
        ids, values = item_scores(items, [domain], lambda t: metric)[domain]
        w = _weights(runs[0].items, domain)
        return {domain: (ids, values * np.array([w[i] for i in ids]))}, 1
    raise ValueError(f"unknown measure {measure!r}")


def _clusters(run: EvaluatedRun, tasks) -> dict[str, dict[str, str]]:
    """{task: {item id: group}} for tasks whose items name a shared entity (`group`, e.g. chemistry's
    element, which two questions ask about): such items are resampled together."""
    out: dict[str, dict[str, str]] = {}
    for (task, item), record in run.items.items():
        if task in tasks and record.get("group") is not None:
            out.setdefault(task, {})[item] = str(record["group"])
    return out


def _seed_of(run: EvaluatedRun) -> int | None:
    """The training seed of a run (None for the base model, which is no training run)."""
    return (run.eval.get("run") or {}).get("seed")


def seed_ids(runs: list[EvaluatedRun]) -> list | None:
    seeds = [_seed_of(r) for r in runs]
    return None if None in seeds else seeds


def by_seed(runs: list[EvaluatedRun]) -> list[EvaluatedRun]:
    """The runs ordered by seed id, so that two methods' matrices pair seed k with seed k."""
    return sorted(runs, key=lambda r: _seed_of(r) or 0)


def compare(
    a: list[EvaluatedRun],
    b: list[EvaluatedRun],
    measure: str,
    domain: str,
    comparison: dict,
    sources: set[str] | None = None,
) -> dict:
    """(a - b) of a measure, signed as VS_BASE names it, with its CI, standard error and degrees of
    freedom; seeds paired by id (alr.report.stats)."""
    a, b = by_seed(a), by_seed(b)
    (sa, sign), (sb, _) = measure_scores(a, measure, domain, sources), measure_scores(b, measure, domain, sources)
    ci = paired_interval(sa, sb, comparison["level"], _clusters(a[0], sa), seed_ids(a), seed_ids(b))
    lo, hi = sorted((sign * ci["lo"], sign * ci["hi"]))
    return {"d": sign * ci["diff"], "lo": lo, "hi": hi, "se": ci["se"], "df": ci["df"], "p": ci["p"]}


def sign_comparison(a: list[EvaluatedRun], b: list[EvaluatedRun], measure: str, domain: str) -> dict:
    """Items (texts) where a is better than b, worse, and the exact sign test; "better" is a higher
    accuracy or a lower NLL."""
    (sa, _), (sb, _) = measure_scores(a, measure, domain), measure_scores(b, measure, domain)
    if measure == "forgetting":  # lower NLL is better
        sa = {t: (i, -v) for t, (i, v) in sa.items()}
        sb = {t: (i, -v) for t, (i, v) in sb.items()}
    return sign_test(sa, sb)


def group_runs(runs: list[dict]) -> dict[tuple[str, str], list[EvaluatedRun]]:
    """{(domain, run name): its evaluated seeds}."""
    groups: dict[tuple[str, str], list[EvaluatedRun]] = {}
    for r in runs:
        groups.setdefault((r["domain"], r["method"]), []).append(EvaluatedRun(r["eval"]))
    return groups


def held_out_sources(data_dir: str | Path) -> set[str]:
    """The general-text sources no general-data consumer read: no text of theirs in the train split
    (`train_size: 0`), so forgetting on them is measured where no method trained."""
    manifest = read_json(Path(data_dir) / "manifest.json")
    counts = manifest["datasets"]["general_text"]["splits"]["train"]["sources"]
    return {source for source, n in counts.items() if n == 0}
