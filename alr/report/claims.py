"""The claims scorecard: each claim of the paper, the measured quantity with its CI, and a verdict by
a fixed rule, stated with its margin beside every verdict (results/tables/claims.{csv,md}).

Comparison claims (per domain, paired on the same texts / items, CIs from `alr.report.stats`; F is
the general NLL rise against the base, G the balanced-accuracy gain against the base, which a shift
of the answer prior cannot raise; d = F_a - F_b, g = G_a - G_b; m = `eval.compare.margin` x G_b, the
gain loss that still counts as "similar domain gain"; e = `eval.compare.min_effect` x the
reference's F, the smallest forgetting difference that counts as a cost):
- `forgets_less`: a forgets less than b at similar domain gain.
  supported: the CI of d lies below 0 (and d's p, Holm-adjusted over every comparison claim and domain
  of the card, is below 1 - level) and the lower end of g's CI is above -m (non-inferior gain);
  contradicted: the CI of d lies above 0 and the upper end of g's CI is below m (b forgets less and
  gains no less, by the same margin); otherwise undecided at this power.
- `costs`: removing a part of the penalty costs: a (ablated) forgets more than b (the full method).
  supported: the CI of d lies above 0 (Holm as above), d >= e, and the upper end of g's CI is below m (the extra
  forgetting is not bought with extra gain); contradicted: the CI of d lies below e (no cost of
  practical size) and the lower end of g's CI is above -m; otherwise undecided.
A claim is undecided before any rule when b gained nothing (G_b <= 0: no gain to match), or when strength
selection found no strength of a or b that kept the reference's valid gain ("gain not reached";
`selection.json`): a fallback point is never compared.
Efficiency claims (one measurement each, no CI; the rule names its threshold):
- SI importance about 20x faster than the Fisher, read at the claim's own sample counts: each
  estimator's time per token processed (SI: every epoch's tokens; Fisher: one per-sample pass each) times
  the tokens of its prescribed run (`PRESCRIBED_PASSES`: the authors' 2,000 texts x 5 epochs, the
  EWC-LoRA Fisher script's 5,000 samples, at one text length for both); supported if the Fisher's
  extrapolated time / SI's >= 10, else contradicted (per-token cost taken as constant in length);
- SI importance 10-15% of the Fisher's storage: supported if SI bytes / Fisher bytes lies within
  10-15%, else contradicted; one row per Fisher scope recorded (the full model, as EWC-LoRA stores it;
  the adapted modules, the same scope as SI).
A claim whose methods were not run reads "not run". Methods swept in strength stand for their
selected strength (`selection.json`); where a `forgets_less` claim's a was swept and its b is the
reference, a's forgetting is also read at b's domain gain along a's sweep (`alr.report.matched`), and
the verdict must hold there too: supported needs "forgets less at the reference's gain", contradicted
"forgets more"; otherwise it is undecided, naming the matched reading.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .matched import FORGETS_LESS, FORGETS_MORE, GAIN_NOT_REACHED
from .render import Z_POWER, write_table
from .stats import holm

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
    Claim(
        "no_layer_costs",
        "removing the layer-wise part costs (alr_no_layer forgets more than alr)",
        "costs",
        "alr_no_layer",
        "alr",
    ),
    Claim(
        "element_matters",
        "the element-wise importance matters (alr forgets less than alr_shuffled, its "
        "importance permuted within each module, at similar domain gain)",
        "forgets_less",
        "alr",
        "alr_shuffled",
    ),
    Claim(
        "no_element_costs",
        "removing the element-wise part costs (alr_no_element forgets more than alr)",
        "costs",
        "alr_no_element",
        "alr",
    ),
    Claim(
        "both_cost_more",
        "removing both costs more (l2_lora, uniform importance and coefficients, forgets more than alr_no_layer)",
        "costs",
        "l2_lora",
        "alr_no_layer",
    ),
    Claim(
        "official_vs_lora",
        "alr_official forgets less than LoRA at similar domain gain",
        "forgets_less",
        "alr_official",
        "lora",
    ),
    Claim(
        "official_penalty",
        "alr_official's penalty, beyond its warm start, forgets less (vs lora_official)",
        "forgets_less",
        "alr_official",
        "lora_official",
    ),
    Claim(
        "official_no_layer_costs",
        "removing the layer-wise part of alr_official costs",
        "costs",
        "alr_official_no_layer",
        "alr_official",
    ),
    Claim("speed", "SI importance is about 20x faster to compute than the EWC Fisher", "speed"),
    Claim("storage", "SI importance takes 10-15% of the Fisher's storage", "storage"),
)
COMPARISONS = [(c.a, c.b) for c in CLAIMS if c.kind in ("forgets_less", "costs")]


NO_GAIN = "undecided (no gain to match)"


def verdict(claim: Claim, c: dict | None, compare_cfg: dict) -> str:
    """The rule of the module docstring for one comparison row of `claim_comparisons` (d, lo, hi;
    gain_lo, gain_hi; gain_b; forgetting_reference; gain_reached)."""
    if c is None:
        return NOT_RUN
    if not c.get("gain_reached", True):
        return GAIN_NOT_REACHED
    if not c["gain_b"] > 0:
        return NO_GAIN
    margin = compare_cfg["margin"] * c["gain_b"]
    gain_no_lower, gain_no_higher = c["gain_lo"] > -margin, c["gain_hi"] < margin
    # a difference from 0 must also survive Holm's adjustment over every claim and domain of the card
    significant = c.get("p_holm", 0.0) < 1 - compare_cfg["level"]
    if claim.kind == "forgets_less":
        if c["hi"] < 0 and significant and gain_no_lower:
            return SUPPORTED
        if c["lo"] > 0 and significant and gain_no_higher:
            return CONTRADICTED
        return UNDECIDED
    effect = compare_cfg["min_effect"] * max(c["forgetting_reference"], 0.0)
    if c["lo"] > 0 and significant and c["d"] >= effect and gain_no_higher:
        return SUPPORTED
    if c["hi"] < effect and gain_no_lower:
        return CONTRADICTED
    return UNDECIDED


def at_matched_gain(selected: str, matched: str) -> str:
    """The verdict where the claim was also read at the reference's gain along a's sweep (`matched`, a
    verdict of alr.report.matched): a supported or contradicted verdict stands only if that reading
    agrees with it."""
    agrees = {SUPPORTED: FORGETS_LESS, CONTRADICTED: FORGETS_MORE}.get(selected)
    if agrees is None or matched == agrees:
        return selected
    return f"undecided (at matched gain: {matched})"


def _matched_reading(claim: Claim, domain: str, matched: pd.DataFrame | None, compare_cfg: dict) -> dict | None:
    """The matched-gain row of a forgets_less claim against the reference, where a was swept."""
    if matched is None or claim.kind != "forgets_less" or claim.b != compare_cfg["reference"]:
        return None
    rows = matched[(matched.domain == domain) & (matched.method == claim.a)]
    return rows.iloc[0].to_dict() if len(rows) else None


def _matched_text(claim: Claim, reading: dict) -> str:
    where = f"at {claim.b}'s gain along {claim.a}'s sweep (seed {reading['seed']})"
    if pd.isna(reading["diff"]):
        return f"{where}: {reading['verdict']}"
    return f"{where}: d = {reading['diff']:+.4f} [{reading['lo']:+.4f}, {reading['hi']:+.4f}], {reading['verdict']}"


def rule_text(claim: Claim, c: dict, compare_cfg: dict) -> str:
    """The rule with this row's margins in numbers."""
    margin = compare_cfg["margin"] * c["gain_b"]
    gain = f"g CI above −{margin:.3f} ({compare_cfg['margin']:g} × {c['run_b']}'s gain)"
    if claim.kind == "forgets_less":
        return f"supported: d CI < 0 and {gain}"
    effect = compare_cfg["min_effect"] * max(c["forgetting_reference"], 0.0)
    return (
        f"supported: d CI > 0, d ≥ {effect:.4f} ({compare_cfg['min_effect']:g} × {compare_cfg['reference']}'s "
        f"forgetting) and g CI below +{margin:.3f}"
    )


# Sample passes of each estimator's prescribed run: the authors' phase 1 (2,000 general texts, 5 epochs)
# and the Fisher of the EWC-LoRA script the official code ships (5,000 samples, one pass each).
PRESCRIBED_PASSES = {"si": 2000 * 5, "fisher": 5000}
STORAGE_BAND = (0.10, 0.15)  # "10-15% of the Fisher's storage", read as a two-sided band
STORAGE_SCOPES = {"fisher": "the full-model Fisher (EWC-LoRA's)", "fisher_adapted": "a Fisher of the adapted modules"}


def efficiency_rows(efficiency_csv: str | Path | None) -> list[dict]:
    """The speed claim against the full-model Fisher, and the storage claim once per Fisher scope the
    run recorded (`baselines.efficiency_estimators`): against the whole model, SI's share follows
    from `lora.targets`; against a Fisher of the same modules, from the storage dtypes."""
    rows = []
    eff = pd.read_csv(efficiency_csv) if efficiency_csv else pd.DataFrame(columns=["name"])
    est = eff[eff.get("kind", pd.Series(dtype=str)) == "importance"].set_index("name") if len(eff) else eff
    for claim in (c for c in CLAIMS if c.kind in ("speed", "storage")):
        scopes = [s for s in STORAGE_SCOPES if s in est.index] if claim.kind == "storage" else ["fisher"]
        if "si" not in est.index or not scopes or "fisher" not in est.index and claim.kind == "speed":
            rows.append({"claim": claim.key, "text": claim.text, "domain": "-", "measured": "", "verdict": NOT_RUN})
            continue
        for scope in scopes:
            if claim.kind == "speed":
                ratio, measured = _speed(est)
                ok, rule = ratio >= 10, "supported if the Fisher / SI time at the prescribed counts >= 10x"
            else:
                ratio = float(est.loc["si", "bytes"] / est.loc[scope, "bytes"])
                ok = STORAGE_BAND[0] <= ratio <= STORAGE_BAND[1]
                measured = f"SI / {STORAGE_SCOPES[scope]} bytes = {100 * ratio:.1f}%"
                rule = f"supported if within {100 * STORAGE_BAND[0]:.0f}-{100 * STORAGE_BAND[1]:.0f}%"
            rows.append(
                {
                    "claim": claim.key,
                    "text": claim.text,
                    "domain": "-" if claim.kind == "speed" else scope,
                    "value": ratio,
                    "measured": measured,
                    "rule": rule,
                    "verdict": SUPPORTED if ok else CONTRADICTED,
                }
            )
    return rows


def _speed(est: pd.DataFrame) -> tuple[float, str]:
    """(Fisher / SI time at the prescribed sample counts, the measurement in words)."""
    per_token = {e: float(est.loc[e, "wall_time_s"] / est.loc[e, "tokens"]) for e in ("si", "fisher")}
    per_token_ratio = per_token["fisher"] / per_token["si"]
    ratio = per_token_ratio * PRESCRIBED_PASSES["fisher"] / PRESCRIBED_PASSES["si"]
    measured = (
        f"time per token: Fisher {1e3 * per_token['fisher']:.2f} ms, SI {1e3 * per_token['si']:.2f} ms "
        f"({per_token_ratio:.2f}x); at {PRESCRIBED_PASSES['fisher']:,} Fisher samples vs "
        f"{PRESCRIBED_PASSES['si']:,} SI sample passes: {ratio:.2f}x (one measurement each)"
    )
    return ratio, measured


def scorecard(
    comparisons: pd.DataFrame,
    efficiency_csv: str | Path | None,
    compare_cfg: dict,
    matched: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """`comparisons`: the rows of alr.report.tables.claim_comparisons; `matched`: matched.csv's rows."""
    rows = []
    domains = sorted(comparisons.domain.unique()) if len(comparisons) else []
    if len(comparisons):  # the family: every comparison claim on every domain that ran
        comparisons = comparisons.assign(p_holm=holm([float(p) for p in comparisons.p]))
    for claim in (c for c in CLAIMS if c.kind in ("forgets_less", "costs")):
        for domain in domains or ["-"]:
            sel = comparisons[(comparisons.domain == domain) & (comparisons.a == claim.a) & (comparisons.b == claim.b)]
            c = sel.iloc[0].to_dict() if len(sel) else None
            row = {"claim": claim.key, "text": claim.text, "domain": domain, "verdict": verdict(claim, c, compare_cfg)}
            if c is not None:
                mde = Z_POWER * c["se"]
                row.update(
                    a=c["run_a"],
                    b=c["run_b"],
                    value=c["d"],
                    lo=c["lo"],
                    hi=c["hi"],
                    p=c["p"],
                    p_holm=c["p_holm"],
                    mde=mde,
                    gain_d=c["gain_d"],
                    gain_lo=c["gain_lo"],
                    gain_hi=c["gain_hi"],
                    gain_b=c["gain_b"],
                    rule=rule_text(claim, c, compare_cfg),
                    measured=(
                        f"d = NLL rise {c['run_a']} − {c['run_b']} = {c['d']:+.4f} [{c['lo']:+.4f}, "
                        f"{c['hi']:+.4f}] (Holm p {c['p_holm']:.2g}; MDE {mde:.4f}); g = balanced gain "
                        f"{c['gain_d']:+.3f} [{c['gain_lo']:+.3f}, {c['gain_hi']:+.3f}] ({c['run_b']}'s "
                        f"own {c['gain_b']:+.3f})"
                    ),
                )
            reading = _matched_reading(claim, domain, matched, compare_cfg)
            if reading is not None:
                row["verdict"] = at_matched_gain(row["verdict"], reading["verdict"])
                row["matched"] = _matched_text(claim, reading)
                row["measured"] = f"{row.get('measured', '')}; {row['matched']}"
            rows.append(row)
    rows += efficiency_rows(efficiency_csv)
    return pd.DataFrame(rows)


def overall(card: pd.DataFrame) -> pd.DataFrame:
    """One verdict per claim over its domains: supported (contradicted) only when every domain that ran
    says so; a mix of supported and contradicted is "mixed"; otherwise undecided."""
    out = []
    for key, group in card.groupby("claim", sort=False):
        verdicts = set(group.verdict) - {NOT_RUN}
        v = (
            NOT_RUN
            if not verdicts
            else next(iter(verdicts))
            if len(verdicts) == 1
            else "mixed"
            if {SUPPORTED, CONTRADICTED} <= verdicts
            else UNDECIDED
        )
        counts = ", ".join(f"{n} {x}" for x, n in group.verdict.value_counts().items())
        out.append({"claim": key, "text": group.text.iloc[0], "verdict": v, "domains": counts})
    return pd.DataFrame(out)


def write_claims(card: pd.DataFrame, out_prefix: str | Path, compare_cfg: dict) -> None:
    summary = overall(card)
    view = pd.concat(
        [
            summary.assign(domain="all", rule="").rename(columns={"domains": "measured"})[
                ["claim", "domain", "text", "measured", "rule", "verdict"]
            ],
            card.reindex(columns=[*card.columns, *({"measured", "rule"} - set(card.columns))]).assign(
                measured=lambda c: c.measured.fillna(""), rule=lambda c: c.rule.fillna("")
            )[["claim", "domain", "text", "measured", "rule", "verdict"]],
        ]
    ).rename(columns={"text": "claim (paper)"})
    view = view.sort_values(
        ["claim", "domain"], key=lambda s: s.map(lambda v: "" if v == "all" else str(v)), kind="stable"
    ).reset_index(drop=True)
    level = f"{100 * compare_cfg['level']:g}%"
    write_table(
        card,
        view[["claim", "domain", "claim (paper)", "measured", "rule", "verdict"]],
        (
            f"Verdicts by fixed rules (alr/report/claims.py), {level} CIs (t intervals over seeds and items, paired). "
            "d: general NLL rise of a − b (nats), with its p Holm-adjusted over every claim and domain below and its "
            "minimal detectable difference (MDE: 80% power); g: balanced-accuracy gain of a − b. 'Similar domain "
            f"gain' is non-inferiority: g's CI above −{compare_cfg['margin']:g} × b's gain; an ablation costs only "
            f"when d is at least {compare_cfg['min_effect']:g} × {compare_cfg['reference']}'s forgetting. A method "
            "whose strength selection kept no strength at the reference's valid gain is never compared (undecided, "
            "gain not reached); a swept method compared with the reference is also read at the reference's gain "
            "along its sweep (matched.csv), and a verdict stands only if that reading agrees. Efficiency: one "
            "timing / size measurement each, thresholds 10x and the 10-15% band, storage once per Fisher scope "
            "recorded. Row 'all': the verdict over domains (every domain alike, else "
            "mixed or undecided)."
        ),
        out_prefix,
    )
