"""The claims scorecard: each claim of the paper, the measured quantity with its CI, and a verdict by
a fixed rule (results/tables/claims.{csv,md}).

Comparison claims (per domain, paired on the same texts / items, 95% CI from the bootstrap over seeds
and items, `alr.report.tables.compare`):
- `forgets_less`: a forgets less than b at similar domain gain. d = NLL rise of a - that of b.
  supported: the CI of d lies below 0 and a's domain accuracy is not lower than b's (its CI does not
  lie below 0); contradicted: the CI of d lies above 0; otherwise undecided at this power (a CI that
  excludes 0 with a domain loss is a trade-off, not the claim: also undecided).
- `costs`: removing a part of the penalty costs: a (ablated) forgets more than b (the full method).
  supported: the CI of d lies above 0; contradicted: below 0; otherwise undecided.
Efficiency claims (one measurement each, no CI; the rule names its threshold):
- SI importance about 20x faster than the Fisher: supported if Fisher time / SI time >= 10, else
  contradicted;
- SI importance 10-15% of the Fisher's storage: supported if SI bytes / Fisher bytes <= 0.15, else
  contradicted.
A claim whose methods were not run reads "not run". Methods swept in strength stand for their
selected strength (`selection.json`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

SUPPORTED, CONTRADICTED, UNDECIDED, NOT_RUN = "supported", "contradicted", "undecided at this power", "not run"


@dataclass(frozen=True)
class Claim:
    key: str
    text: str
    kind: str  # forgets_less | costs | speed | storage
    a: str = ""
    b: str = ""


CLAIMS = (
    Claim("alr_vs_lora", "alr forgets less than LoRA at similar domain gain", "forgets_less", "alr", "lora"),
    Claim("alr_vs_ewc", "alr forgets less than EWC-LoRA", "forgets_less", "alr", "ewc_lora"),
    Claim("no_layer_costs", "removing the layer-wise part costs (alr_no_layer forgets more than alr)", "costs",
          "alr_no_layer", "alr"),
    Claim("no_element_costs", "removing the element-wise part costs (alr_no_element forgets more than alr)", "costs",
          "alr_no_element", "alr"),
    Claim("both_cost_more", "removing both costs more (l2_lora, uniform importance and coefficients, forgets more "
          "than alr_no_layer)", "costs", "l2_lora", "alr_no_layer"),
    Claim("official_vs_lora", "alr_official forgets less than LoRA at similar domain gain", "forgets_less",
          "alr_official", "lora"),
    Claim("official_penalty", "alr_official's penalty, beyond its warm start, forgets less (vs lora_official)",
          "forgets_less", "alr_official", "lora_official"),
    Claim("official_no_layer_costs", "removing the layer-wise part of alr_official costs", "costs",
          "alr_official_no_layer", "alr_official"),
    Claim("speed", "SI importance is about 20x faster to compute than the EWC Fisher", "speed"),
    Claim("storage", "SI importance takes 10-15% of the Fisher's storage", "storage"),
)
COMPARISONS = [(c.a, c.b) for c in CLAIMS if c.kind in ("forgets_less", "costs")]


def verdict(claim: Claim, forgetting: dict | None, domain: dict | None) -> str:
    """The rule of the module docstring, from the CIs of d = a - b: forgetting {"lo", "hi"}, domain
    accuracy {"lo", "hi"}."""
    if forgetting is None:
        return NOT_RUN
    if claim.kind == "forgets_less":
        if forgetting["lo"] > 0:
            return CONTRADICTED
        if forgetting["hi"] < 0 and not domain["hi"] < 0:
            return SUPPORTED
        return UNDECIDED
    if forgetting["lo"] > 0:
        return SUPPORTED
    return CONTRADICTED if forgetting["hi"] < 0 else UNDECIDED


def efficiency_rows(efficiency_csv: str | Path | None) -> list[dict]:
    rows = []
    eff = pd.read_csv(efficiency_csv) if efficiency_csv else pd.DataFrame(columns=["name"])
    est = eff[eff.get("kind", pd.Series(dtype=str)) == "importance"].set_index("name") if len(eff) else eff
    for claim in (c for c in CLAIMS if c.kind in ("speed", "storage")):
        if not {"si", "fisher"} <= set(est.index):
            rows.append({"claim": claim.key, "text": claim.text, "domain": "-", "measured": "", "verdict": NOT_RUN})
            continue
        if claim.kind == "speed":
            ratio = float(est.loc["fisher", "wall_time_s"] / est.loc["si", "wall_time_s"])
            ok = ratio >= 10
            measured, rule = f"Fisher / SI time = {ratio:.2f}x", "supported if >= 10x"
        else:
            ratio = float(est.loc["si", "bytes"] / est.loc["fisher", "bytes"])
            ok = ratio <= 0.15
            measured, rule = f"SI / Fisher bytes = {100 * ratio:.1f}%", "supported if <= 15%"
        rows.append({"claim": claim.key, "text": claim.text, "domain": "-", "value": ratio, "measured": measured,
                     "rule": rule, "verdict": SUPPORTED if ok else CONTRADICTED})
    return rows


def scorecard(comparisons: pd.DataFrame, efficiency_csv: str | Path | None) -> pd.DataFrame:
    """`comparisons`: rows (domain, a, b, measure, d, lo, hi) from alr.report.tables.claim_comparisons."""
    rows = []
    domains = sorted(comparisons.domain.unique()) if len(comparisons) else []
    for claim in (c for c in CLAIMS if c.kind in ("forgets_less", "costs")):
        for domain in domains or ["-"]:
            sel = comparisons[(comparisons.domain == domain) & (comparisons.a == claim.a) & (comparisons.b == claim.b)]
            get = {m: sel[sel.measure == m].iloc[0].to_dict() for m in ("forgetting", "domain_gain")
                   if (sel.measure == m).any()}
            v = verdict(claim, get.get("forgetting"), get.get("domain_gain"))
            row = {"claim": claim.key, "text": claim.text, "domain": domain, "verdict": v}
            if "forgetting" in get:
                f, g = get["forgetting"], get["domain_gain"]
                row.update(a=f["run_a"], b=f["run_b"], value=f["d"], lo=f["lo"], hi=f["hi"],
                           domain_d=g["d"], domain_lo=g["lo"], domain_hi=g["hi"],
                           measured=(f"NLL rise {f['run_a']} − {f['run_b']} = {f['d']:+.4f} [{f['lo']:+.4f}, "
                                     f"{f['hi']:+.4f}]; domain acc {g['d']:+.3f} [{g['lo']:+.3f}, {g['hi']:+.3f}]"))
            rows.append(row)
    rows += efficiency_rows(efficiency_csv)
    return pd.DataFrame(rows)


def overall(card: pd.DataFrame) -> pd.DataFrame:
    """One verdict per claim over its domains: supported (contradicted) only when every domain that ran
    says so; a mix of supported and contradicted is "mixed"; otherwise undecided."""
    out = []
    for key, group in card.groupby("claim", sort=False):
        verdicts = set(group.verdict) - {NOT_RUN}
        v = (NOT_RUN if not verdicts else next(iter(verdicts)) if len(verdicts) == 1
             else "mixed" if {SUPPORTED, CONTRADICTED} <= verdicts else UNDECIDED)
        counts = ", ".join(f"{n} {x}" for x, n in group.verdict.value_counts().items())
        out.append({"claim": key, "text": group.text.iloc[0], "verdict": v, "domains": counts})
    return pd.DataFrame(out)


def write_claims(card: pd.DataFrame, out_prefix: str | Path) -> None:
    from .tables import write_table

    summary = overall(card)
    view = pd.concat([
        summary.assign(domain="all").rename(columns={"domains": "measured"})[["claim", "domain", "text", "measured", "verdict"]],
        card.assign(measured=card.get("measured", "").fillna(""))[["claim", "domain", "text", "measured", "verdict"]],
    ]).rename(columns={"text": "claim (paper)"})
    view = view.sort_values(["claim", "domain"], key=lambda s: s.map(lambda v: "" if v == "all" else str(v)),
                            kind="stable").reset_index(drop=True)
    write_table(card, view[["claim", "domain", "claim (paper)", "measured", "verdict"]], (
        "Verdicts by fixed rules (alr/report/claims.py): a comparison is supported or contradicted only when its 95% "
        "CI (bootstrap over seeds and items, paired) excludes 0 in that direction; 'forgets less' also needs the "
        "domain accuracy not lower (CI). Efficiency: one timing / size measurement each, thresholds 10x and 15%. "
        "Row 'all': the verdict over domains (every domain alike, else mixed or undecided)."), out_prefix)
