"""The main comparison table from eval.json records: results/tables/main.{csv,md}.

One row per domain x method (aggregated over seeds): domain score, general score, forgetting
(base general - method general), domain gain (method domain - base domain), general NLL, and against
the reference method (default `lora`), on the same items (`alr.report.stats`): the difference with a
95% CI from a bootstrap over seeds and items, the items better / worse with an exact sign test, and
that p-value Holm-adjusted over every row's comparison (per metric). With several seeds a score is
"mean ± sd"; with one seed "score ± stderr" (lm-eval's stderr; for the general score combined over
tasks as independent).
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..evaluate import items_path
from ..io import atomic_path, read_json
from ..methods import BASE
from .stats import holm, item_scores, paired_bootstrap, read_items, sign_test

PAIRED = [f"{prefix}_{key}{suffix}" for key in ("general", "domain")
          for prefix, suffix in (("d", ""), ("d", "_lo"), ("d", "_hi"), ("better", ""), ("worse", ""), ("p", ""),
                                 ("p", "_holm"))]
COLUMNS = ["domain", "method", "n_seeds", "domain_score", "domain_score_sd", "domain_stderr", "general_score",
           "general_score_sd", "general_stderr", "forgetting", "domain_gain", "general_nll", "reference", *PAIRED]


def _row(domain: str, method: str, seed, ev: dict, path) -> dict:
    return {"domain": domain, "method": method, "seed": seed,
            "domain_score": ev["domains"][domain]["score"], "domain_stderr": ev["domains"][domain]["stderr"],
            "general_score": ev["general"]["score"], "general_stderr": ev["general"]["stderr"],
            "general_nll": ev["general"]["nll"], "eval": str(path)}


def collect(base_eval: str | Path, runs: list[dict]) -> pd.DataFrame:
    """`runs`: [{"domain", "method", "seed", "eval": path}] -> one row per run, base rows included."""
    base = read_json(base_eval)
    rows = []
    for domain in sorted({r["domain"] for r in runs}):
        if domain not in base["domains"]:
            raise ValueError(f"base evaluation {base_eval} has no score for domain {domain!r}")
        rows.append(_row(domain, BASE, None, base, base_eval))
    rows += [_row(r["domain"], r["method"], r["seed"], read_json(r["eval"]), r["eval"]) for r in runs]
    df = pd.DataFrame(rows)
    base_by_domain = df[df.method == BASE].set_index("domain")
    df["forgetting"] = df.domain.map(base_by_domain.general_score) - df.general_score
    df["domain_gain"] = df.domain_score - df.domain.map(base_by_domain.domain_score)
    return df


def _paired(runs: pd.DataFrame, domain: str, method: str, reference: str, boot: dict) -> dict:
    """(method - reference) for the general score and the domain score: bootstrap CI and sign test."""
    mine = runs[(runs.domain == domain) & (runs.method == method)]
    ref = runs[(runs.domain == domain) & (runs.method == reference)]
    if ref.empty or method == reference:
        return {}
    first = read_json(mine["eval"].iloc[0])
    general = first["general"]["tasks"]

    def metric_of(task):
        return first["tasks"][task]["metric"]

    items_mine = [read_items(items_path(p)) for p in mine["eval"]]
    items_ref = [read_items(items_path(p)) for p in ref["eval"]]
    out = {"reference": reference}
    for key, tasks in (("general", general), ("domain", [domain])):
        a, b = item_scores(items_mine, tasks, metric_of), item_scores(items_ref, tasks, metric_of)
        ci = paired_bootstrap(a, b, boot["samples"], boot["seed"])
        sign = sign_test(a, b)
        out.update({f"d_{key}": ci["diff"], f"d_{key}_lo": ci["lo"], f"d_{key}_hi": ci["hi"],
                    f"better_{key}": sign["better"], f"worse_{key}": sign["worse"], f"p_{key}": sign["p"]})
    return out


def summarise(runs: pd.DataFrame, method_order: list[str], eval_cfg: dict) -> pd.DataFrame:
    order = {m: i for i, m in enumerate([BASE] + [m for m in method_order if m != BASE])}
    agg = runs.groupby(["domain", "method"], sort=False).agg(
        n_seeds=("general_score", "size"),
        domain_score=("domain_score", "mean"), domain_score_sd=("domain_score", "std"),
        domain_stderr=("domain_stderr", "mean"),
        general_score=("general_score", "mean"), general_score_sd=("general_score", "std"),
        general_stderr=("general_stderr", "mean"),
        forgetting=("forgetting", "mean"), domain_gain=("domain_gain", "mean"), general_nll=("general_nll", "mean"),
    ).reset_index()
    boot = eval_cfg["bootstrap"]
    paired = [_paired(runs, d, m, boot["reference"], boot) for d, m in zip(agg.domain, agg.method)]
    agg = pd.concat([agg, pd.DataFrame(paired, index=agg.index)], axis=1).reindex(columns=COLUMNS + ["_order"])
    for key in ("general", "domain"):
        agg[f"p_{key}_holm"] = holm([float(p) for p in agg[f"p_{key}"]])
    agg["_order"] = agg.method.map(order)
    return agg.sort_values(["domain", "_order"]).drop(columns="_order").reset_index(drop=True)


def _fmt(mean: float, sd: float, se: float, n: int) -> str:
    spread = sd if n > 1 else se
    return f"{mean:.3f}" if pd.isna(spread) else f"{mean:.3f} ± {spread:.3f}"


def _ci(diff, lo, hi) -> str:
    return "" if pd.isna(diff) else f"{diff:+.3f} [{lo:+.3f}, {hi:+.3f}]"


def _sign(better, worse, p, p_holm) -> str:
    return "" if pd.isna(p) else f"{int(better)}/{int(worse)} ({p:.2g}; {p_holm:.2g})"


def main_view(table: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """The formatted table and its footnote."""
    reference = next((r for r in table.reference if isinstance(r, str)), "reference")
    view = pd.DataFrame({
        "domain": table.domain,
        "method": table.method,
        "seeds": table.n_seeds,
        "domain score": [_fmt(*x) for x in zip(table.domain_score, table.domain_score_sd, table.domain_stderr, table.n_seeds)],
        "general score": [_fmt(*x) for x in zip(table.general_score, table.general_score_sd, table.general_stderr, table.n_seeds)],
        "forgetting": table.forgetting.map(lambda v: f"{v:+.3f}"),
        "domain gain": table.domain_gain.map(lambda v: f"{v:+.3f}"),
        "general NLL": table.general_nll.map(lambda v: f"{v:.3f}"),
        f"Δ general vs {reference} [95% CI]": [_ci(*x) for x in zip(table.d_general, table.d_general_lo, table.d_general_hi)],
        f"general items ± vs {reference} (p; Holm)": [_sign(*x) for x in zip(
            table.better_general, table.worse_general, table.p_general, table.p_general_holm)],
        f"Δ domain vs {reference} [95% CI]": [_ci(*x) for x in zip(table.d_domain, table.d_domain_lo, table.d_domain_hi)],
        f"domain items ± vs {reference} (p; Holm)": [_sign(*x) for x in zip(
            table.better_domain, table.worse_domain, table.p_domain, table.p_domain_holm)],
    })
    note = ("± is the sd over seeds when seeds > 1, else lm-eval's stderr. Forgetting = base general − method "
            f"general. Δ columns: difference to `{reference}` on the same items, 95% CI from a bootstrap over "
            "seeds and items. Items ±: items better / worse than the reference (seed means), exact sign test p "
            "and its Holm adjustment over every row of the table.")
    return view, note


def _latex_escape(latex: str) -> str:
    for raw, tex in (("%", "\\%"), ("_", "\\_"), ("±", "$\\pm$"), ("Δ", "$\\Delta$"), ("−", "-")):
        latex = latex.replace(raw, tex)
    return latex


def write_table(numeric: pd.DataFrame, view: pd.DataFrame, note: str, out_prefix: str | Path) -> None:
    """`<prefix>.csv` (numbers), `.md` and `.tex` (booktabs, formatted), each written atomically."""
    out_prefix = Path(out_prefix)
    with atomic_path(out_prefix.with_suffix(".csv")) as tmp:
        numeric.to_csv(tmp, index=False, float_format="%.6g")
    align = ("left", "left") + ("right",) * (view.shape[1] - 2)
    with atomic_path(out_prefix.with_suffix(".md")) as tmp:
        tmp.write_text(view.to_markdown(index=False, disable_numparse=True, colalign=align) + "\n\n" + note + "\n",
                       encoding="utf-8")
    latex = view.style.hide(axis="index").to_latex(hrules=True, column_format="ll" + "r" * (view.shape[1] - 2))
    with atomic_path(out_prefix.with_suffix(".tex")) as tmp:
        tmp.write_text(f"% {note}\n" + _latex_escape(latex), encoding="utf-8")


def write_main_table(base_eval: str | Path, runs: list[dict], method_order: list[str], eval_cfg: dict,
                     out_prefix: str | Path) -> pd.DataFrame:
    table = summarise(collect(base_eval, runs), method_order, eval_cfg)
    write_table(table, *main_view(table), out_prefix)
    return table
