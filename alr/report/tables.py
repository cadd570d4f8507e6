"""The comparison tables from eval.json records: results/tables/{main,forgetting,power}.{csv,md}.

`main`: one row per domain x method (aggregated over seeds), plus two model-free rows per domain
(`lexical`, `majority`: alr.core.model_free). Every comparison is paired, on the same items or texts
(`alr.report.stats`), with a 95% t interval over seeds (one draw shared by every task) and items:
- against the base model: forgetting = the rise of the general NLL (mean token NLL of held-out
  natural text, nats; the primary measure), the change of the general multiple-choice score, the
  NLL rise on phase 1's own text (overlapping: the authors' protocol), and the domain gain in
  accuracy, in balanced accuracy (prior-robust) and in gold-answer NLL (continuous);
- against the reference method (default `lora`): the general NLL and the domain accuracy, each with
  the texts / items better and worse, an exact sign test and its Holm adjustment over the rows.
`forgetting`: the NLL rise against the base per general-text source and pooled.
`power`: the minimal detectable difference of each measure at the configured sizes.
`general_tasks`: the base model's score on each general task against chance (alr.report.general_tasks).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..core.examples import DataError, read_records
from ..core.model_free import answer_prior, balanced_accuracy, lexical_score, majority_score
from ..evaluate.records import scores_general_tasks
from ..methods.registry import BASE, PLAIN
from ..methods.runs import recorded_strength
from .claims import claim_comparisons, mde, scorecard, write_claims
from .comparisons import (
    VS_BASE,
    EvaluatedRun,
    compare,
    group_runs,
    held_out_sources,
    measure_scores,
    seed_ids,
    sign_comparison,
)
from .general_tasks import general_task_table, general_task_view
from .matched import write_matched
from .protocol import Protocol, load_protocol
from .render import BASELINES, write_table
from .selection import write_hypervolume
from .stats import holm, paired_interval

PAIRED = [
    f"{prefix}_{key}{suffix}"
    for key in ("general", "domain")
    for prefix, suffix in (
        ("d", ""),
        ("d", "_lo"),
        ("d", "_hi"),
        ("better", ""),
        ("worse", ""),
        ("p", ""),
        ("p", "_holm"),
    )
]
COLUMNS = [
    "domain",
    "method",
    "base_method",
    "strength",
    "n_seeds",
    "domain_score",
    "domain_score_sd",
    "domain_stderr",
    "domain_balanced",
    "domain_gold_nll",
    "general_nll",
    "general_nll_sd",
    "phase1_nll",
    "general_score",
    "general_score_sd",
    "general_stderr",
    "general_seeds",
    *[f"{m}{s}" for m in VS_BASE for s in ("", "_lo", "_hi", "_se", "_df")],
    "better_domain_base",
    "worse_domain_base",
    "p_domain_base",
    "reference",
    *PAIRED,
]


def _own_values(runs: list[EvaluatedRun], domain: str) -> dict:
    """The run group's own numbers (means over seeds)."""
    ev = [r.eval for r in runs]
    metric = ev[0]["tasks"][domain]["metric"]
    domain_items = [[v for (t, _), v in r.items.items() if t == domain] for r in runs]
    balanced = [balanced_accuracy([v["gold"] for v in rows], [v[metric] for v in rows]) for rows in domain_items]
    gold = [np.mean([v["gold_nll"] for v in rows]) for rows in domain_items]
    return {
        "n_seeds": len(runs),
        "domain_score": np.mean([e["domains"][domain]["score"] for e in ev]),
        "domain_score_sd": np.std([e["domains"][domain]["score"] for e in ev], ddof=1) if len(ev) > 1 else np.nan,
        "domain_stderr": np.mean([e["domains"][domain]["stderr"] for e in ev]),
        "domain_balanced": float(np.mean(balanced)),
        "domain_gold_nll": float(np.mean(gold)),
        "general_nll": np.mean([e["general"]["nll"] for e in ev]),
        "general_nll_sd": np.std([e["general"]["nll"] for e in ev], ddof=1) if len(ev) > 1 else np.nan,
        "phase1_nll": np.mean([e["general"]["phase1_text"]["nll"] for e in ev]),
        **_general_task_values(ev),
    }


def _general_task_values(ev: list[dict]) -> dict:
    """The general multiple-choice score over the seeds that scored those tasks (`general_seeds` of them:
    all, or the first alone with `eval.general_tasks_seeds: first`); NaN for a sweep point selection did
    not choose (its evaluations skip them)."""
    scored = [e for e in ev if scores_general_tasks(e)]
    if not scored:
        return {"general_score": np.nan, "general_score_sd": np.nan, "general_stderr": np.nan, "general_seeds": 0}
    return {
        "general_score": np.mean([e["general"]["score"] for e in scored]),
        "general_score_sd": np.std([e["general"]["score"] for e in scored], ddof=1) if len(scored) > 1 else np.nan,
        "general_stderr": np.mean([e["general"]["stderr"] for e in scored]),
        "general_seeds": len(scored),
    }


def baseline_rows(data_dir: str | Path, domain: str, metric_items: list[str]) -> list[dict]:
    """The lexical and majority rows of a domain, on the test items the models were scored on."""
    test = {r["id"]: r for r in read_records(Path(data_dir) / domain / "test.jsonl", "mc")}
    missing = sorted(set(metric_items) - set(test))
    if missing:
        raise DataError(
            f"{data_dir}/{domain}/test.jsonl lacks evaluated items {missing[:3]}: data and evaluations "
            "come from different builds"
        )
    items = [test[i] for i in metric_items]
    prior = answer_prior(read_records(Path(data_dir) / domain / "train.jsonl", "mc"))
    golds = [r["choices"][r["label"]] for r in items]
    rows = []
    for name, score in (("lexical", lexical_score), ("majority", lambda r: majority_score(r, prior))):
        correct = [score(r) for r in items]
        rows.append(
            {
                "domain": domain,
                "method": name,
                "n_seeds": 0,
                "domain_score": float(np.mean(correct)),
                "domain_balanced": balanced_accuracy(golds, correct),
            }
        )
    return rows


def _method_row(
    mine: list[EvaluatedRun],
    base: list[EvaluatedRun],
    ref: list[EvaluatedRun] | None,
    domain: str,
    method: str,
    comparison: dict,
) -> dict:
    """One main-table row: `mine`'s own values, its paired comparisons against the base and, where
    `ref` (the reference method's runs) is given, against the reference."""
    base_method, strength = (BASE, None) if method == BASE else recorded_strength(mine[0].eval["run"])
    row = {"domain": domain, "method": method, "base_method": base_method, "strength": strength}
    row.update(_own_values(mine, domain))
    for measure in VS_BASE:
        runs = [r for r in mine if scores_general_tasks(r.eval)] if measure == "forgetting_mc" else mine
        if not runs:
            continue  # a sweep point selection did not choose: no general tasks scored
        c = compare(runs, base, measure, domain, comparison)
        row.update({measure: c["d"], f"{measure}_lo": c["lo"], f"{measure}_hi": c["hi"], f"{measure}_se": c["se"]})
        row[f"{measure}_df"] = c["df"]
    s = sign_comparison(mine, base, "domain_gain", domain)
    row.update(better_domain_base=s["better"], worse_domain_base=s["worse"], p_domain_base=s["p"])
    if ref is not None:
        row["reference"] = comparison["reference"]
        for key, measure in (("general", "forgetting"), ("domain", "domain_gain")):
            c, s = compare(mine, ref, measure, domain, comparison), sign_comparison(mine, ref, measure, domain)
            row.update(
                {
                    f"d_{key}": c["d"],
                    f"d_{key}_lo": c["lo"],
                    f"d_{key}_hi": c["hi"],
                    f"better_{key}": s["better"],
                    f"worse_{key}": s["worse"],
                    f"p_{key}": s["p"],
                }
            )
    return row


def _source_rows(
    mine: list[EvaluatedRun], base: list[EvaluatedRun], domain: str, method: str, comparison: dict, held_out: set[str]
) -> list[dict]:
    """One forgetting-table row per general-text source: `mine`'s NLL rise against the base."""
    rows = []
    (sa, _), (sb, _) = measure_scores(mine, "forgetting", domain), measure_scores(base, "forgetting", domain)
    for task in mine[0].text_tasks():
        ci = paired_interval(
            {task: sa[task]}, {task: sb[task]}, comparison["level"], None, seed_ids(mine), seed_ids(base)
        )
        source = task.removeprefix("text:")
        rows.append(
            {
                "domain": domain,
                "method": method,
                "source": source,
                "held_out": source in held_out,
                "nll": float(sa[task][1].mean()),
                "forgetting": ci["diff"],
                "lo": ci["lo"],
                "hi": ci["hi"],
            }
        )
    return rows


def _main_table(rows: list[dict]) -> pd.DataFrame:
    """The main table of `rows`: Holm-adjusted p values, and the model-free rows' gains over the base."""
    table = pd.DataFrame(rows).reindex(columns=COLUMNS)
    for key in ("general", "domain"):
        table[f"p_{key}_holm"] = holm([float(p) for p in table[f"p_{key}"]])
    base_rows = table[table.method == BASE].set_index("domain")
    for col in ("domain_score", "domain_balanced"):  # the model-free rows' gains too
        table[col.replace("domain_score", "domain_gain").replace("domain_balanced", "balanced_gain")] = table[
            col
        ] - table.domain.map(base_rows[col])
    return table


def summarise(
    base_run: EvaluatedRun,
    groups: dict[tuple[str, str], list[EvaluatedRun]],
    method_order: list[str],
    eval_cfg: dict,
    data_dir: str | Path | None = None,
    held_out: set[str] = frozenset(),
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(main table, per-source forgetting table). `groups`: `group_runs(runs)`; `held_out`: the general-text
    sources no general-data consumer trained on (`held_out_sources`)."""
    base = [base_run]
    comparison = eval_cfg["compare"]
    reference = comparison["reference"]
    rows, sources = [], []
    for domain in sorted({d for d, _ in groups}):
        if domain not in base[0].eval["domains"]:
            raise DataError(f"base evaluation {base_run.path} has no score for domain {domain!r}")
        methods = [BASE] + [m for m in method_order if (domain, m) in groups]
        methods += sorted(m for d, m in groups if d == domain and m not in methods)
        for method in methods:
            mine = base if method == BASE else groups[(domain, method)]
            ref = groups.get((domain, reference)) if method not in (reference, BASE) else None
            rows.append(_method_row(mine, base, ref, domain, method, comparison))
            sources += _source_rows(mine, base, domain, method, comparison, held_out)
        if data_dir is not None:
            ids = sorted(i for (t, i) in base[0].items if t == domain)
            rows += baseline_rows(data_dir, domain, ids)
    return _main_table(rows), pd.DataFrame(sources)


def power_table(table: pd.DataFrame, reference: str, level: float) -> pd.DataFrame:
    """Per domain and measure: the minimal detectable difference (80% power, two-sided 1 - level) of a
    paired comparison at this run's sizes, from the t quantiles of the interval's own degrees of freedom
    and the standard error of reference - base (about the size of a method-vs-method difference's too,
    when two methods' errors are as correlated as a method's and the base's). The reference is
    `eval.compare.reference`, else the first method."""
    models = table[~table.method.isin([BASE, *BASELINES])]
    if reference not in set(models.method):
        reference = models.method.iloc[0] if len(models) else reference
    out = []
    for _, row in models[models.method == reference].iterrows():
        for measure, what in VS_BASE.items():
            se, df = row[f"{measure}_se"], row[f"{measure}_df"]
            size = mde(se, df, (1 - level) / 2)
            out.append(
                {
                    "domain": row.domain,
                    "method": reference,
                    "measure": measure,
                    "what": what,
                    "seeds": int(row.n_seeds),
                    "vs_base": row[measure],
                    "se": se,
                    "df": df,
                    "mde": size,
                    "detectable": se > 0 and abs(row[measure]) >= size,
                }
            )
    return pd.DataFrame(
        out, columns=["domain", "method", "measure", "what", "seeds", "vs_base", "se", "df", "mde", "detectable"]
    )


def _ci(d, lo, hi, digits: int = 3) -> str:
    return "" if pd.isna(d) else f"{d:+.{digits}f} [{lo:+.{digits}f}, {hi:+.{digits}f}]"


def _sign_note(better, worse, p, p_holm) -> str:
    return "" if pd.isna(p) else f"{int(better)}/{int(worse)} ({p:.2g}; {p_holm:.2g})"


def _vs_reference(table: pd.DataFrame, key: str, digits: int) -> list[str]:
    """The `key` ("general" or "domain") comparison against the reference: CI, better / worse, p and Holm's p."""
    return [
        "" if pd.isna(d) else f"{_ci(d, lo, hi, digits)} {_sign_note(b, w, p, ph)}"
        for d, lo, hi, b, w, p, ph in zip(
            table[f"d_{key}"],
            table[f"d_{key}_lo"],
            table[f"d_{key}_hi"],
            table[f"better_{key}"],
            table[f"worse_{key}"],
            table[f"p_{key}"],
            table[f"p_{key}_holm"],
        )
    ]


def _main_note(reference: str) -> str:
    """The main table's footnote."""
    return (
        "All differences are paired (same items, same texts) with a 95% t interval over seeds (one draw shared by "
        "every task; with one seed, conditional on that run) and items. Forgetting: rise of the mean token NLL of "
        "held-out natural text (every general-text source; nats; > 0 = forgot). General MC loss: base − method "
        "multiple-choice general score. NLL rise on phase-1 text: the same on the text phase 1 tuned on (the "
        "authors' protocol; overlapping, so it flatters methods anchored to phase 1). Domain: accuracy gain, "
        "balanced-accuracy gain (mean over gold answers: a shift of answer prior cannot raise it) and fall of the "
        "gold answer's NLL, raw and among the choices (the raw one also rewards learning the answers' vocabulary, "
        "which raises every choice). `lexical` and `majority` need no model (word overlap; most frequent train "
        f"answer). vs `{reference}`: texts / items better / worse, exact sign test p and its Holm adjustment over "
        "the rows (descriptive: the claims' verdicts rest on the CIs)."
    )


def main_view(table: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """The formatted main table and its footnote."""
    reference = next((r for r in table.reference if isinstance(r, str)), PLAIN)

    def col(measure, digits=3):
        return [_ci(*x, digits=digits) for x in zip(table[measure], table[f"{measure}_lo"], table[f"{measure}_hi"])]

    model = table.method.isin(BASELINES) == False  # noqa: E712 (a Series, not a bool)
    view = pd.DataFrame(
        {
            "domain": table.domain,
            "method": table.method,
            "seeds": table.n_seeds.astype(int),
            "domain acc": table.domain_score.map(lambda v: f"{v:.3f}"),
            "Δ acc vs base [95% CI]": [
                c if m else f"{g:+.3f}" for c, m, g in zip(col("domain_gain"), model, table.domain_gain)
            ],
            "Δ balanced acc vs base": [
                c if m else f"{g:+.3f}" for c, m, g in zip(col("balanced_gain"), model, table.balanced_gain)
            ],
            "gold NLL fall vs base (raw; among choices)": [
                f"{x}; {y}" if x else "" for x, y in zip(col("gold_nll_gain"), col("choice_nll_gain"))
            ],
            "forgetting: general NLL rise vs base": col("forgetting", 4),
            "general MC loss vs base": col("forgetting_mc"),
            "NLL rise on phase-1 text (overlap)": col("forgetting_phase1", 4),
            f"NLL vs {reference} (texts ±; p; Holm)": _vs_reference(table, "general", 4),
            f"acc vs {reference} (items ±; p; Holm)": _vs_reference(table, "domain", 3),
        }
    ).fillna("")
    note = _main_note(reference)
    if (model & table.general_score.isna()).any():
        note += (
            " An empty general MC cell: a sweep point that selection did not choose (its test pass skips the "
            "general multiple-choice tasks)."
        )
    return view, note


def forgetting_view(sources: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    label = [
        f"{s} (held out)" if h else s for s, h in zip(sources.source, sources.get("held_out", [False] * len(sources)))
    ]
    wide = sources.assign(
        cell=[_ci(d, lo, hi, 4) for d, lo, hi in zip(sources.forgetting, sources.lo, sources.hi)], label=label
    )
    view = wide.pivot_table(index=["domain", "method"], columns="label", values="cell", aggfunc="first", sort=False)
    view = view.reset_index()
    view.columns.name = None
    return view, (
        "General NLL rise against the base per natural-text source (nats, 95% t interval over seeds and "
        "texts, paired per text). A source marked held out has no text in the general train split: no "
        "general-data consumer (phase 1, the Fisher, MAS, replay, KL) read that genre."
    )


def power_view(power: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    view = power.assign(
        vs_base=power.vs_base.map(lambda v: f"{v:+.4f}"),
        se=power.se.map(lambda v: f"{v:.4f}"),
        mde=power.mde.map(lambda v: f"{v:.4f}"),
        detectable=power.detectable.map({True: "yes", False: "no"}),
    )
    return view, (
        "Minimal detectable difference (MDE) of each measure: (t(1 − α/2) + t(0.8)) × the standard error of the "
        "method's difference to the base, t on the interval's own degrees of freedom (df; 80% power, two-sided α "
        "= 1 − level), at this configuration's items, texts and seeds. A difference between two methods smaller "
        "than the MDE is undecided at this power; the claims' MDEs (claims.md) add Holm's adjustment."
    )


def write_main_table(
    base_eval: str | Path,
    runs: list[dict],
    method_order: list[str],
    eval_cfg: dict,
    out_prefix: str | Path,
    data_dir: str | Path | None = None,
    selection: dict | None = None,
    efficiency_csv: str | Path | None = None,
    protocol: Protocol | None = None,
) -> pd.DataFrame:
    """main.{csv,md,tex}, and beside it forgetting.* (per source), power.* (MDE), general_tasks.* (the
    base model against chance; with `data_dir`), hypervolume.*, matched.* (swept methods at the reference's
    gain) and claims.* (the scorecard, by `protocol`: the repository's config/protocol.yaml when None)."""
    protocol = protocol or load_protocol()
    groups = group_runs(runs)  # each run's eval.json and items are read once, for every table below
    base = EvaluatedRun(base_eval)  # its eval.json and items are read once, for the main and general-task tables
    held_out = held_out_sources(data_dir) if data_dir is not None else set()
    table, sources = summarise(base, groups, method_order, eval_cfg, data_dir, held_out)
    write_table(table, *main_view(table), out_prefix)
    folder = Path(out_prefix).parent
    write_table(sources, *forgetting_view(sources), folder / "forgetting")
    compare_cfg = eval_cfg["compare"]
    power = power_table(table, compare_cfg["reference"], compare_cfg["level"])
    write_table(power, *power_view(power), folder / "power")
    if data_dir is not None:
        general = general_task_table(base.eval, base.items, data_dir)
        write_table(general, *general_task_view(general), folder / "general_tasks")
    write_hypervolume(table, folder / "hypervolume")
    seeded = {key: {r.eval["run"]["seed"]: r for r in rs} for key, rs in groups.items()}
    primary = held_out if protocol.primary == "held_out" else None
    matched = write_matched(seeded, base.items, compare_cfg["reference"], protocol, folder / "matched", primary)
    comparisons = claim_comparisons(groups, table, eval_cfg, protocol, held_out, selection)
    decides = compare_cfg.get("decides")
    card = scorecard(comparisons, efficiency_csv, protocol, compare_cfg["reference"], matched, decides)
    write_claims(card, folder / "claims", protocol)
    return table
