"""Strength selection on the validation split, and the Pareto summary of a sweep.

Selection reads `valid.json` records only (`alr evaluate --split valid`: the domains' valid items,
carved from the training data, and the general text's valid texts), never a test item: a record of
another split is refused. For each swept method and domain, every strength's validation
- forgetting: mean paired NLL rise of the valid texts against the base model (nats);
- gain: mean paired fall of the gold answer's NLL among the choices on the valid items against the
  base (nats; with 16 valid items accuracy moves in steps of 1/16, this NLL is continuous, and among
  the choices it ignores what raises every choice alike, such as the answers' vocabulary)
and the rule (`selection.keep_gain`, default 0.9): among the strengths whose gain is at least
keep_gain x the reference method's (lora's) gain, the one with the least forgetting; when none
keeps that much, the one with the largest gain, flagged in `selection.json` (`gain_not_reached`):
the claims never compare such a point (alr.report.claims: "undecided (gain not reached)"), and a
strength selected at either end of its grid is flagged too (`at_edge`: the best strength may lie
beyond the grid; the claims give it no verdict). `hypervolume` is the
area of the (forgetting, gain) plane a method's points dominate, within a box common to every method of a domain.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..core.examples import DataError
from ..core.io import read_json, write_json
from ..evaluate.records import items_path, read_items
from ..methods.registry import BASE
from ..methods.runs import format_strength, recorded_strength
from .render import BASELINES, write_table


def _valid_record(path: str | Path) -> tuple[dict, dict]:
    rec = read_json(path)
    if rec.get("split") != "valid":
        raise DataError(
            f"{path} is a {rec.get('split', 'test')!r}-split evaluation; selection reads valid.json "
            "files only (`alr evaluate --split valid`)"
        )
    return rec, read_items(items_path(path))


def _paired_mean(items: dict, base: dict, task_filter, field: str) -> float:
    keys = [k for k in base if task_filter(k[0])]
    missing = [k for k in keys if k not in items]
    if missing or not keys:
        raise DataError(f"validation records disagree on their items ({len(missing)} of {len(keys)} missing)")
    return float(np.mean([items[k][field] - base[k][field] for k in keys]))


def validation_points(base_valid: str | Path, valid: list[str | Path]) -> pd.DataFrame:
    """One row per validated run (domain, run, method, strength, seed): its forgetting and gain."""
    _, base = _valid_record(base_valid)
    rows = []
    for path in valid:
        rec, items = _valid_record(path)
        run = rec["run"]
        domain = run["domain"]
        method, lam = recorded_strength(run)
        rows.append(
            {
                "domain": domain,
                "run": run["run"],
                "method": method,
                "strength": lam,
                "seed": run["seed"],
                "forgetting": _paired_mean(items, base, lambda t: t.startswith("text:"), "nll"),
                "gain": -_paired_mean(items, base, lambda t, d=domain: t == d, "choice_nll"),
                "acc": rec["domains"][domain]["score"],
            }
        )
    return pd.DataFrame(rows)


def select(points: pd.DataFrame, reference: str, keep_gain: float) -> pd.DataFrame:
    """Per domain and swept method, its points (means over seeds) with `selected` and the rule's reason."""
    means = points.groupby(["domain", "run", "method", "strength"], dropna=False, as_index=False)[
        ["forgetting", "gain", "acc"]
    ].mean()
    out = []
    for (domain, _method), group in means[means.strength.notna()].groupby(["domain", "method"], sort=True):
        group = group.sort_values("strength")
        ref = means[(means.domain == domain) & (means.run == reference)]
        if ref.empty:
            raise DataError(f"selection needs the reference {reference!r} validated on {domain!r}")
        floor = keep_gain * float(ref.gain.iloc[0])
        kept = group[group.gain >= floor]
        choice = kept.forgetting.idxmin() if len(kept) else group.gain.idxmax()
        reason = (
            f"least valid forgetting among gains >= {keep_gain:g} x {reference}'s"
            if len(kept)
            else f"no strength kept {keep_gain:g} x {reference}'s gain: the largest gain"
        )
        out.append(
            group.assign(
                reference_gain=float(ref.gain.iloc[0]),
                floor=floor,
                kept=group.gain >= floor,
                selected=group.index == choice,
                reason=reason,
            )
        )
    if not out:
        raise DataError("no swept method to select a strength for")
    return pd.concat(out, ignore_index=True)


def pareto_mask(forgetting: np.ndarray, gain: np.ndarray) -> np.ndarray:
    """True where no other point forgets less (or equal) and gains more (or equal), one strictly."""
    f, g = np.asarray(forgetting, float), np.asarray(gain, float)
    return np.array([not ((f <= fi) & (g >= gi) & ((f < fi) | (g > gi))).any() for fi, gi in zip(f, g)])


def hypervolume(forgetting, gain, ref_forgetting: float, ref_gain: float) -> float:
    """Area dominated by the points (less forgetting, more gain is better) inside the box whose worst
    corner is (ref_forgetting, ref_gain); points outside the box add nothing."""
    pts = sorted((f, g) for f, g in zip(forgetting, gain) if f < ref_forgetting and g > ref_gain)
    area, best_gain = 0.0, ref_gain
    for i, (f, g) in enumerate(pts):  # by increasing forgetting: each point adds the strip up to the next
        best_gain = max(best_gain, g)
        right = pts[i + 1][0] if i + 1 < len(pts) else ref_forgetting
        area += (right - f) * (best_gain - ref_gain)
    return area


def hypervolumes(main: pd.DataFrame) -> pd.DataFrame:
    """Per domain and method: the hypervolume of its test-split points (every strength of a sweep;
    forgetting = general NLL rise, gain = domain accuracy gain), normalised by the box spanned by all
    methods' points of the domain (worst corner: the largest forgetting and the smallest gain, 0 at
    most), so 1 would be one point at the best forgetting and the best gain seen."""
    rows = main[~main.method.isin([BASE, *BASELINES])].copy()
    out = []
    for domain, d in rows.groupby("domain", sort=True):
        ref_f, ref_g = float(d.forgetting.max()), min(0.0, float(d.domain_gain.min()))
        box = (ref_f - float(d.forgetting.min())) * (float(d.domain_gain.max()) - ref_g)
        for method, m in d.groupby("base_method", sort=False):
            hv = hypervolume(m.forgetting, m.domain_gain, ref_f, ref_g)
            out.append(
                {
                    "domain": domain,
                    "method": method,
                    "points": len(m),
                    "hypervolume": hv,
                    "hypervolume_norm": hv / box if box > 0 else np.nan,
                }
            )
    return pd.DataFrame(out)


def write_selection(table: pd.DataFrame, out_prefix: str | Path, reference: str, keep_gain: float) -> dict:
    """selection.{csv,md} and selection.json ({"selected": {domain: {method: selected run}}, and the
    methods per domain whose selection kept no strength ("gain_not_reached") or chose an end of the grid
    ("at_edge"))."""
    out_prefix = Path(out_prefix)
    view = pd.DataFrame(
        {
            "domain": table.domain,
            "method": table.method,
            "strength": table.strength.map(format_strength),
            "valid forgetting (nats)": table.forgetting.map(lambda v: f"{v:+.4f}"),
            "valid gain: gold NLL fall among choices (nats)": table.gain.map(lambda v: f"{v:+.3f}"),
            "valid acc": table.acc.map(lambda v: f"{v:.3f}"),
            f"gain floor ({keep_gain:g} × {reference}'s)": table.floor.map(lambda v: f"{v:+.3f}"),
            "kept": table.kept.map({True: "yes", False: "no"}),
            "selected": table.selected.map({True: "**yes**", False: ""}),
            "rule": table.reason,
        }
    )
    note = (
        "Validation split only (the domains' valid items, the general text's valid texts), paired against the "
        "base. Rule: among the strengths whose valid gain (gold NLL fall among the choices) is at least "
        f"{keep_gain:g} × `{reference}`'s, the least valid forgetting; if none is, the largest gain, which the "
        "claims do not compare (gain not reached)."
    )
    write_table(table, view, note, out_prefix)
    chosen, unmatched, edge = {}, {}, {}
    grids = table.groupby(["domain", "method"]).strength.agg(["min", "max", "count"])
    for r in table[table.selected].itertuples():
        chosen.setdefault(r.domain, {})[r.method] = r.run
        if not r.kept:
            unmatched.setdefault(r.domain, []).append(r.method)
        grid = grids.loc[(r.domain, r.method)]
        if grid["count"] > 1 and r.strength in (grid["min"], grid["max"]):
            edge.setdefault(r.domain, []).append(r.method)
    record = {"selected": chosen, "gain_not_reached": unmatched, "at_edge": edge}
    write_json(out_prefix.with_suffix(".json"), record)
    return record


def write_hypervolume(main: pd.DataFrame, out_prefix: str | Path) -> pd.DataFrame:
    table = hypervolumes(main)
    view = table.assign(
        hypervolume=table.hypervolume.map(lambda v: f"{v:.4f}"),
        hypervolume_norm=table.hypervolume_norm.map(lambda v: f"{v:.3f}"),
    )
    write_table(
        table,
        view,
        "Hypervolume of each method's (forgetting, domain gain) points on the test split, "
        "normalised by the box of all methods' points of the domain; a swept method counts every strength.",
        out_prefix,
    )
    return table
