"""The main comparison table from eval.json records: results/tables/main.{csv,md}.

One row per domain x method (aggregated over seeds): domain score, general score, forgetting
(base general - method general), domain gain (method domain - base domain) and general NLL.
With several seeds a value is "mean ± sd"; with one seed the numeric columns are that run's.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..io import atomic_path, read_json

COLUMNS = ["domain", "method", "n_seeds", "domain_score", "domain_score_sd", "general_score", "general_score_sd",
           "forgetting", "domain_gain", "general_nll"]


def collect(base_eval: str | Path, runs: list[dict]) -> pd.DataFrame:
    """`runs`: [{"domain", "method", "seed", "eval": path}] -> one row per run, base rows included."""
    base = read_json(base_eval)
    rows = []
    for domain in sorted({r["domain"] for r in runs}):
        if domain not in base["domains"]:
            raise ValueError(f"base evaluation {base_eval} has no score for domain {domain!r}")
        rows.append({"domain": domain, "method": "base", "seed": None,
                     "domain_score": base["domains"][domain]["score"], "general_score": base["general"]["score"],
                     "general_nll": base["general"]["nll"]})
    for r in runs:
        ev = read_json(r["eval"])
        rows.append({"domain": r["domain"], "method": r["method"], "seed": r["seed"],
                     "domain_score": ev["domains"][r["domain"]]["score"], "general_score": ev["general"]["score"],
                     "general_nll": ev["general"]["nll"]})
    df = pd.DataFrame(rows)
    base_by_domain = df[df.method == "base"].set_index("domain")
    df["forgetting"] = df.domain.map(base_by_domain.general_score) - df.general_score
    df["domain_gain"] = df.domain_score - df.domain.map(base_by_domain.domain_score)
    return df


def summarise(runs: pd.DataFrame, method_order: list[str]) -> pd.DataFrame:
    order = {m: i for i, m in enumerate(["base"] + [m for m in method_order if m != "base"])}
    agg = runs.groupby(["domain", "method"], sort=False).agg(
        n_seeds=("general_score", "size"),
        domain_score=("domain_score", "mean"), domain_score_sd=("domain_score", "std"),
        general_score=("general_score", "mean"), general_score_sd=("general_score", "std"),
        forgetting=("forgetting", "mean"), domain_gain=("domain_gain", "mean"), general_nll=("general_nll", "mean"),
    ).reset_index()
    agg["_order"] = agg.method.map(order)
    return agg.sort_values(["domain", "_order"]).drop(columns="_order")[COLUMNS].reset_index(drop=True)


def _fmt(mean: float, sd: float | None) -> str:
    return f"{mean:.3f}" if sd is None or pd.isna(sd) else f"{mean:.3f} ± {sd:.3f}"


def to_markdown(table: pd.DataFrame) -> str:
    view = pd.DataFrame({
        "domain": table.domain,
        "method": table.method,
        "seeds": table.n_seeds,
        "domain score": [_fmt(m, s) for m, s in zip(table.domain_score, table.domain_score_sd)],
        "general score": [_fmt(m, s) for m, s in zip(table.general_score, table.general_score_sd)],
        "forgetting": table.forgetting.map(lambda v: f"{v:+.3f}"),
        "domain gain": table.domain_gain.map(lambda v: f"{v:+.3f}"),
        "general NLL": table.general_nll.map(lambda v: f"{v:.3f}"),
    })
    align = ("left", "left") + ("right",) * (view.shape[1] - 2)
    return view.to_markdown(index=False, disable_numparse=True, colalign=align) + "\n"


def write_main_table(base_eval: str | Path, runs: list[dict], method_order: list[str], out_prefix: str | Path) -> pd.DataFrame:
    table = summarise(collect(base_eval, runs), method_order)
    out_prefix = Path(out_prefix)
    with atomic_path(out_prefix.with_suffix(".csv")) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g")
    with atomic_path(out_prefix.with_suffix(".md")) as tmp:
        tmp.write_text(to_markdown(table), encoding="utf-8")
    return table
