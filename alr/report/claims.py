"""The claims scorecard (results/tables/claims.{csv,md}): every claim of the paper, its measured
quantity with intervals, and a verdict by the one rule of the claims protocol (config/protocol.yaml,
`alr.report.protocol`), whose version and sha256 the card prints. docs/protocol.md states the rules.

Comparison claims: "`better` forgets less than `than` at similar domain gain", per domain, paired on
the same texts and items (`alr.report.stats`). d = F(better) − F(than), the difference of the general
NLL rise against the base on the protocol's primary texts (the held-out genre); g = G(better) − G(than),
the difference of the domain gain in the protocol's gain measure; e the minimum effect, m the margin,
both fixed numbers of the protocol. The three-zone rule, read from intervals only:
- supported: d's interval lies below −e (an effect of at least e in the claimed direction) and g's
  lies above −m (the gain is not lower by m or more);
- contradicted: d's interval lies above −e (no effect of e in the claimed direction: none, or the
  opposite) and g's lies below +m (the missing effect is not bought with a higher gain);
- otherwise undecided at this power.
Both zones are one-sided tests at (1 − level)/2 whose two conditions must both hold (an intersection-
union test: its p is the larger of the two); Holm's step-down runs over each family of the protocol as
listed, run or not (a claim that did not run has p = 1). A row's "decision interval" is at the level
Holm gives its step, so the verdict can be read off the intervals the card prints.
Gates, in order, before the rule: not run; a domain the protocol does not judge the claim on
(descriptive); fewer tuned seeds than `verdicts.min_seeds` on both sides (descriptive (one seed): such
an interval is conditional on the runs); a strength selection that kept no strength at the reference's
valid gain (gain not reached); a selected strength at either end of its grid; `than` showing no domain
gain (its gain interval against the base reaching 0). A gated row stays in its family with p = 1.
Where `better` was swept and `than` is the reference, the claim is also read at the reference's gain
along the sweep (`alr.report.matched`): a verdict stands only if that interval is in the same zone.

Efficiency claims (one measurement each, no interval): speed, the Fisher's time over SI's at the
prescribed sample counts, at least `min_ratio`; storage, SI's bytes at most `max_share` of a Fisher's,
once per Fisher scope recorded. A figure below its threshold reads "not reproduced at this scale",
naming the model and device it was measured on: it does not contradict a claim made at another scale.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import t as student_t

from .comparisons import EvaluatedRun, compare
from .matched import GAIN_NOT_REACHED
from .protocol import Claim, Protocol
from .render import write_table

SUPPORTED, CONTRADICTED, UNDECIDED, NOT_RUN = "supported", "contradicted", "undecided at this power", "not run"
DESCRIPTIVE_ONE_SEED = "descriptive (one seed)"
OUTSIDE = "descriptive (outside the protocol)"
AT_EDGE = "undecided (strength at the edge of its grid)"
NO_GAIN = "undecided (no domain gain shown)"
NOT_AT_SCALE = "not reproduced at this scale"
ANOTHER_RUN = "descriptive (another run decides this claim)"
EFFICIENCY = "efficiency"  # the family name of the speed and storage rows (claims `speed`, `storage`)
DECIDED = (SUPPORTED, CONTRADICTED)
POWER = 0.8  # the power of the minimal detectable effects the card prints


def _below(value: float, se: float, df: float, bound: float) -> float:
    """p of the one-sided test that the true value lies below `bound` (small when the data show it)."""
    if se <= 0:
        return 0.0 if value < bound else 1.0
    return float(student_t.sf((bound - value) / se, df))


def zone_pvalues(c: dict, protocol: Protocol) -> tuple[float, float]:
    """(p of "supported", p of "contradicted") of one comparison row (d, se, df; g, g_se, g_df): each
    the larger p of its two one-sided conditions."""
    e, m = protocol.min_effect, protocol.margin
    d, g = (c["d"], c["se"], c["df"]), (c["g"], c["g_se"], c["g_df"])
    supported = max(_below(*d, -e), _below(-g[0], g[1], g[2], m))
    contradicted = max(_below(-d[0], d[1], d[2], e), _below(*g, m))
    return supported, contradicted


def holm_levels(pvalues: list[float], alpha: float) -> tuple[list[bool], list[float]]:
    """Holm's step-down over `pvalues` at one-sided `alpha`: (rejected, the alpha each row is read at).
    A row at step r (0-based, by increasing p) of m is read at alpha / (m − r); rows after the first
    step that fails are read at that step's alpha, at which they fail too (their p is no smaller)."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    rejected, at = [False] * m, [alpha] * m
    stop = None
    for step, i in enumerate(order):
        level = alpha / (m - (stop if stop is not None else step))
        at[i] = level
        if stop is None and pvalues[i] < level:
            rejected[i] = True
        elif stop is None:
            stop = step
    return rejected, at


def decision_interval(value: float, se: float, df: float, alpha: float) -> tuple[float, float]:
    """The two-sided interval at level 1 − 2·alpha: each end a one-sided bound at alpha."""
    half = float(student_t.ppf(1 - alpha, df)) * se if se > 0 else 0.0
    return value - half, value + half


def three_zone(d_ci: tuple[float, float], g_ci: tuple[float, float], protocol: Protocol) -> str:
    """The rule of the module docstring on a row's decision intervals of d and g."""
    e, m = protocol.min_effect, protocol.margin
    if d_ci[1] < -e and g_ci[0] > -m:
        return SUPPORTED
    if d_ci[0] > -e and g_ci[1] < m:
        return CONTRADICTED
    return UNDECIDED


def mde(se: float, df: float, alpha: float) -> float:
    """The smallest true effect the rule shows with probability POWER at one-sided `alpha`."""
    return (float(student_t.ppf(1 - alpha, df)) + float(student_t.ppf(POWER, df))) * se


def gate(claim: Claim, c: dict | None, protocol: Protocol) -> str | None:
    """The verdict a row gets before the rule (module docstring), or None when the rule decides."""
    if c is None:
        return NOT_RUN
    if c["domain"] not in claim.domains:
        return OUTSIDE
    if max(c["seeds_better"], c["seeds_than"]) < protocol.min_seeds:
        return DESCRIPTIVE_ONE_SEED
    if not c.get("gain_reached", True):
        return GAIN_NOT_REACHED
    if c.get("at_edge", False):
        return AT_EDGE
    if protocol.require_gain_shown and not c["gain_than_lo"] > 0:
        return NO_GAIN
    if not all(math.isfinite(c[k]) for k in ("d", "se", "g", "g_se")):
        return UNDECIDED
    return None


def matched_zone(reading: dict, protocol: Protocol) -> str:
    """The zone of the matched-gain interval (d only: the gain is matched by construction)."""
    if not reading.get("reached", True) or pd.isna(reading["lo"]):
        return GAIN_NOT_REACHED
    e = protocol.min_effect
    return SUPPORTED if reading["hi"] < -e else CONTRADICTED if reading["lo"] > -e else UNDECIDED


def _matched_reading(claim: Claim, domain: str, matched: pd.DataFrame | None, reference: str) -> dict | None:
    if matched is None or claim.than != reference:
        return None
    rows = matched[(matched.domain == domain) & (matched.method == claim.better)]
    return rows.iloc[0].to_dict() if len(rows) else None


def _rule_text(verdict: str, alpha: float, step: str, protocol: Protocol) -> str:
    e, m = protocol.min_effect, protocol.margin
    level = f"{100 * (1 - 2 * alpha):.2f}% ({step})"
    if verdict == SUPPORTED:
        return f"supported: d interval at {level} below −{e:g} and g interval above −{m:g}"
    if verdict == CONTRADICTED:
        return f"contradicted: d interval at {level} above −{e:g} and g interval below +{m:g}"
    return f"neither zone at {level}: supported needs d < −{e:g} and g > −{m:g}, contradicted d > −{e:g} and g < +{m:g}"


def _ci(v, lo, hi, digits):
    return f"{v:+.{digits}f} [{lo:+.{digits}f}, {hi:+.{digits}f}]"


def _measured(c: dict, protocol: Protocol, alpha: float, mdes: tuple[float, float]) -> str:
    d_ci, d_nom = (decision_interval(c["d"], c["se"], c["df"], a) for a in (alpha, protocol.alpha))
    g_ci, g_nom = (decision_interval(c["g"], c["g_se"], c["g_df"], a) for a in (alpha, protocol.alpha))
    sens = _ci(c["d_sens"], c["d_sens_lo"], c["d_sens_hi"], 4)
    sized = "sized to decide" if mdes[0] < protocol.min_effect and mdes[1] < protocol.margin else "not sized to decide"
    return (
        f"d ({protocol.primary}) = {_ci(c['d'], *d_nom, 4)}, decision {_ci(c['d'], *d_ci, 4)}; "
        f"g ({protocol.gain_measure}) = {_ci(c['g'], *g_nom, 3)}, decision {_ci(c['g'], *g_ci, 3)}; "
        f"MDE d {mdes[0]:.4f} (e {protocol.min_effect:g}), g {mdes[1]:.3f} (m {protocol.margin:g}): {sized}; "
        f"seeds {c['seeds_better']} vs {c['seeds_than']}; {protocol.sensitivity} d {sens}"
    )


def _members(protocol: Protocol, family: str, comparisons: pd.DataFrame) -> list[dict]:
    """Every (claim, domain) the family lists, then its claims' rows on domains the protocol does not
    list; each with its comparison row (None: not run) and its gate."""
    claims = protocol.family(family)
    ran = {(r["key"], r["domain"]): r for r in comparisons.to_dict("records")} if len(comparisons) else {}
    members = [(claim, domain) for claim in claims for domain in claim.domains]
    by_key = {c.key: c for c in claims}
    listed = {(c.key, d) for c, d in members}
    members += [(by_key[k], d) for k, d in sorted(k for k in ran if k[0] in by_key and k not in listed)]
    rows = []
    for claim, domain in members:
        c = ran.get((claim.key, domain))
        rows.append({"claim": claim, "domain": domain, "c": c, "gate": gate(claim, c, protocol)})
    return rows


def _holm(rows: list[dict], protocol: Protocol, family: str, decides: list[str] | None = None) -> int:
    """Give each family member (every row but those outside the protocol) its zone p-values, Holm's
    decision and the alpha of its step; return the family's size. A member another run decides counts
    with p = 1 here, as one that did not run."""
    in_family = [r for r in rows if r["c"] is None or r["gate"] != OUTSIDE]
    for r in in_family:
        here = decides is None or r["claim"].key in decides
        r["p"] = zone_pvalues(r["c"], protocol) if r["gate"] is None and here else (1.0, 1.0)
    pvalues = [min(r["p"]) for r in in_family]
    rejected, at = holm_levels(pvalues, protocol.alpha)
    rank = {i: step for step, i in enumerate(sorted(range(len(pvalues)), key=lambda i: pvalues[i]))}
    for i, r in enumerate(in_family):
        step = f"Holm step {rank[i] + 1} of {len(pvalues)} in family {family}"
        r.update(rejected=rejected[i], alpha=at[i], step=step)
    return len(pvalues)


def _matched_gate(row: dict, claim: Claim, domain: str, matched: pd.DataFrame | None, reference: str, protocol) -> None:
    """Add the matched-gain reading to a decided row; a verdict stands only if it reads the same zone."""
    reading = _matched_reading(claim, domain, matched, reference)
    if reading is None:
        return
    where = f"at {claim.than}'s gain along {claim.better}'s sweep (seed {reading['seed']})"
    zone = matched_zone(reading, protocol)
    row["matched"] = (
        f"{where}: {zone}"
        if pd.isna(reading["diff"])
        else f"{where}: d = {_ci(reading['diff'], reading['lo'], reading['hi'], 4)}, {zone}"
    )
    row["measured"] += f"; {row['matched']}"
    if row["verdict"] in DECIDED and zone != row["verdict"]:
        row["verdict"] = f"undecided (at matched gain: {zone})"


def _card_row(r: dict, family: str, size: int, protocol: Protocol, matched, reference: str) -> dict:
    """One row of the card: the claim, its numbers (decision intervals, p-values, MDEs) and its verdict."""
    claim, domain, c = r["claim"], r["domain"], r["c"]
    row = {"claim": claim.key, "family": family, "text": claim.text, "domain": domain}
    row.update(better=claim.better, than=claim.than)
    if r["gate"] is not None:
        row.update(verdict=r["gate"], rule=f"gated: {r['gate']}")
    if c is None:
        return row
    alpha, first_step = r.get("alpha", protocol.alpha), protocol.alpha / size
    mdes = (mde(c["se"], c["df"], first_step), mde(c["g_se"], c["g_df"], first_step))
    d_ci = decision_interval(c["d"], c["se"], c["df"], alpha)
    g_ci = decision_interval(c["g"], c["g_se"], c["g_df"], alpha)
    p = r.get("p", (math.nan, math.nan))
    row.update(
        {key: c[key] for key in ("run_better", "run_than", "seeds_better", "seeds_than", "se", "df")},
        value=c["d"],
        decision_lo=d_ci[0],
        decision_hi=d_ci[1],
        gain_d=c["g"],
        gain_se=c["g_se"],
        gain_decision_lo=g_ci[0],
        gain_decision_hi=g_ci[1],
        p_supported=p[0],
        p_contradicted=p[1],
        decision_level=1 - 2 * alpha,
        holm_rejected=r.get("rejected", False),
        mde=mdes[0],
        gain_mde=mdes[1],
        measured=_measured(c, protocol, alpha, mdes),
    )
    if r["gate"] is None:
        verdict = three_zone(d_ci, g_ci, protocol)
        row.update(verdict=verdict, rule=_rule_text(verdict, alpha, r["step"], protocol))
        _matched_gate(row, claim, domain, matched, reference, protocol)
    return row


def _family_rows(
    protocol: Protocol,
    family: str,
    comparisons: pd.DataFrame,
    matched: pd.DataFrame | None,
    reference: str,
    decides: list[str] | None = None,
) -> list[dict]:
    """Every (claim, domain) of one family, and the rows of its claims on domains outside the protocol."""
    rows = _members(protocol, family, comparisons)
    size = _holm(rows, protocol, family, decides)
    return [_card_row(r, family, size, protocol, matched, reference) for r in rows]


def efficiency_rows(efficiency_csv: str | Path | None, protocol: Protocol) -> list[dict]:
    """The speed claim against the full-model Fisher, and the storage claim once per Fisher scope the
    run recorded (`baselines.efficiency_estimators`)."""
    eff = pd.read_csv(efficiency_csv) if efficiency_csv else pd.DataFrame(columns=["name", "kind"])
    est = eff[eff["kind"] == "importance"].set_index("name") if len(eff) else eff.set_index("name")
    rows = []
    for key, spec in (("speed", protocol.speed), ("storage", protocol.storage)):
        scopes = ["fisher"] if key == "speed" else [s for s in STORAGE_SCOPES if s in est.index]
        if "si" not in est.index or not scopes or scopes[0] not in est.index:
            rows.append({"claim": key, "family": EFFICIENCY, "text": spec["text"], "domain": "-", "verdict": NOT_RUN})
            continue
        scale = _scale(est)
        for scope in scopes:
            if key == "speed":
                ratio, measured = _speed(est, spec["prescribed"])
                ok, rule = ratio >= spec["min_ratio"], f"supported if the Fisher / SI time >= {spec['min_ratio']:g}x"
            else:
                ratio = float(est.loc["si", "bytes"] / est.loc[scope, "bytes"])
                ok, rule = ratio <= spec["max_share"], f"supported if SI / Fisher bytes <= {100 * spec['max_share']:g}%"
                measured = f"SI / {STORAGE_SCOPES[scope]} bytes = {100 * ratio:.1f}%: {STORAGE_SOURCE[scope]}"
            rows.append(
                {
                    "claim": key,
                    "family": EFFICIENCY,
                    "text": spec["text"],
                    "domain": "-" if key == "speed" else scope,
                    "value": ratio,
                    "measured": f"{measured}; measured at {scale}",
                    "rule": rule,
                    "verdict": SUPPORTED if ok else f"{NOT_AT_SCALE} ({scale})",
                }
            )
    return rows


STORAGE_SCOPES = {"fisher": "the full-model Fisher (EWC-LoRA's)", "fisher_adapted": "a Fisher of the adapted modules"}
STORAGE_SOURCE = {
    "fisher": "the saving is the adapted modules' share of the model's parameters (SI stores those only)",
    "fisher_adapted": "the same modules: one value per parameter each, so no saving from the estimator",
}


def _scale(est: pd.DataFrame) -> str:
    """The model and device the estimators ran on, as their sidecars record them."""
    model = est.loc["si"].get("model", "") if "model" in est.columns else ""
    device = est.loc["si"].get("device", "") if "device" in est.columns else ""
    return ", ".join(str(x) for x in (model, device) if isinstance(x, str) and x) or "this run's model and device"


def _speed(est: pd.DataFrame, prescribed: dict) -> tuple[float, str]:
    """(Fisher / SI time at the prescribed sample counts, the measurement in words): medians of the time per
    token over each estimator's repeats, and the ratio's range over their extremes."""
    scale = prescribed["fisher"] / prescribed["si"]
    per_token = {e: float(est.loc[e, "s_per_token"]) for e in ("si", "fisher")}
    ratio = per_token["fisher"] / per_token["si"] * scale
    low = float(est.loc["fisher", "s_per_token_min"] / est.loc["si", "s_per_token_max"]) * scale
    high = float(est.loc["fisher", "s_per_token_max"] / est.loc["si", "s_per_token_min"]) * scale
    repeats = {e: int(est.loc[e, "repeats"]) for e in ("si", "fisher")}
    spread = f" [{low:.2f}, {high:.2f} over the repeats' extremes]" if max(repeats.values()) > 1 else ""
    measured = (
        f"time per token, tokenized texts in, importance out: Fisher {1e3 * per_token['fisher']:.2f} ms "
        f"({repeats['fisher']} run{'s' * (repeats['fisher'] > 1)}), SI {1e3 * per_token['si']:.2f} ms "
        f"({repeats['si']} run{'s' * (repeats['si'] > 1)}, median); at {prescribed['fisher']:,} Fisher samples vs "
        f"{prescribed['si']:,} SI sample passes: {ratio:.2f}x{spread}"
    )
    return ratio, measured


def scorecard(
    comparisons: pd.DataFrame,
    efficiency_csv: str | Path | None,
    protocol: Protocol,
    reference: str,
    matched: pd.DataFrame | None = None,
    decides: list[str] | None = None,
) -> pd.DataFrame:
    """`comparisons`: the rows of alr.report.claims.claim_comparisons; `matched`: matched.csv's rows;
    `decides`: the claims (keys, and `speed`, `storage`) whose verdicts this run gives (None: all). Each claim
    is decided by one run, and in Holm's adjustment a claim another run decides counts with p = 1; its rows
    keep their numbers and read ANOTHER_RUN (docs/protocol.md: the runs together keep the family's level)."""
    rows = []
    for family in protocol.families:
        rows += _family_rows(protocol, family, comparisons, matched, reference, decides)
    rows += efficiency_rows(efficiency_csv, protocol)
    for row in rows:
        if decides is not None and row["claim"] not in decides and row.get("verdict") != NOT_RUN:
            row.update(verdict=ANOTHER_RUN, rule=f"gated: {ANOTHER_RUN}")
    return pd.DataFrame(rows).assign(protocol_version=protocol.version, protocol_sha256=protocol.sha256)


def overall(card: pd.DataFrame) -> pd.DataFrame:
    """One verdict per claim over the domains the protocol judges it on: supported (contradicted) only
    when every one of them says so; a mix of the two is "mixed"; descriptive when no domain could be
    judged for that reason; otherwise undecided."""
    out = []
    for key, group in card.groupby("claim", sort=False):
        judged = set(group.verdict) - {NOT_RUN, OUTSIDE}
        if not judged:
            v = NOT_RUN if set(group.verdict) <= {NOT_RUN} else OUTSIDE
        elif len(judged) == 1:
            v = next(iter(judged))
        elif {SUPPORTED, CONTRADICTED} <= judged:
            v = "mixed"
        else:
            v = UNDECIDED
        counts = ", ".join(f"{n} {x}" for x, n in group.verdict.value_counts().items())
        out.append({"claim": key, "text": group.text.iloc[0], "verdict": v, "domains": counts})
    return pd.DataFrame(out)


def write_claims(card: pd.DataFrame, out_prefix: str | Path, protocol: Protocol) -> None:
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
    one_seed = (card.verdict == DESCRIPTIVE_ONE_SEED).any()
    note = (
        f"Verdicts by {protocol.label()}, {Path(protocol.path).name}: the rules are in docs/protocol.md. "
        f"d: general NLL rise of better − than on the {protocol.primary} texts (nats; {protocol.sensitivity} as a "
        f"sensitivity reading); g: {protocol.gain_measure} of better − than. {100 * protocol.level:g}% intervals, "
        f"and decision intervals at the level Holm's step-down gives each row within its family (every claim and "
        f"domain the protocol lists, run or not). Supported: d below −{protocol.min_effect:g} and g above "
        f"−{protocol.margin:g}; contradicted: d above −{protocol.min_effect:g} and g below +{protocol.margin:g}; "
        "otherwise undecided at this power. MDE: the smallest effect shown with 80% power at the first Holm step. "
        "Efficiency: one measurement each, read at the scale it was measured at. Row 'all': the verdict over the "
        "protocol's domains."
    )
    if one_seed:
        note += (
            " Descriptive (one seed): with one tuned seed per method an interval says nothing about another training "
            "run, so no verdict is given; config/cpu-decide.yaml runs three seeds."
        )
    write_table(card, view[["claim", "domain", "claim (paper)", "measured", "rule", "verdict"]], note, out_prefix)


# claim_comparisons' columns: better − than of the primary forgetting (d, se, df), of the sensitivity
# forgetting (d_sens with its interval), of the gain in the protocol's measure (g, g_se, g_df); the lower
# CI end of `than`'s own gain against the base; and the selection's flags
CLAIM_COLUMNS = [
    "key",
    "domain",
    "better",
    "than",
    "run_better",
    "run_than",
    "seeds_better",
    "seeds_than",
    "d",
    "se",
    "df",
    "d_sens",
    "d_sens_lo",
    "d_sens_hi",
    "g",
    "g_se",
    "g_df",
    "gain_than_lo",
    "gain_reached",
    "at_edge",
]


def _forgetting(
    a: list[EvaluatedRun], b: list[EvaluatedRun], domain: str, comparison: dict, reading: str, held_out: set[str]
) -> dict:
    """(a - b) of the forgetting on the texts a reading of the protocol names: `held_out` (the sources no
    general-data consumer trained on; no value when the run has none) or `pooled` (every source)."""
    if reading == "held_out" and not held_out:
        return dict.fromkeys(("d", "lo", "hi", "se", "df"), np.nan)
    return compare(a, b, "forgetting", domain, comparison, held_out if reading == "held_out" else None)


def claim_comparisons(
    groups: dict[tuple[str, str], list[EvaluatedRun]],
    table: pd.DataFrame,
    eval_cfg: dict,
    protocol: Protocol,
    held_out: set[str],
    selection: dict | None = None,
) -> pd.DataFrame:
    """For each claim of the protocol and each domain where both its methods ran: the differences its
    rule reads (CLAIM_COLUMNS). A swept method stands for its selected run (`selection`: {"selected":
    {domain: {method: run}}, "gain_not_reached": ..., "at_edge": ...})."""
    comparison = eval_cfg["compare"]
    chosen = (selection or {}).get("selected", {})
    unmatched = (selection or {}).get("gain_not_reached", {})
    edge = (selection or {}).get("at_edge", {})
    own = table.set_index(["domain", "method"])
    out = []
    for domain in sorted({d for d, _ in groups}):
        for claim in protocol.claims:
            better, than = (chosen.get(domain, {}).get(m, m) for m in (claim.better, claim.than))
            if (domain, better) not in groups or (domain, than) not in groups:
                continue
            a, b = groups[(domain, better)], groups[(domain, than)]
            row = {
                "key": claim.key,
                "domain": domain,
                "better": claim.better,
                "than": claim.than,
                "run_better": better,
                "run_than": than,
                "seeds_better": len(a),
                "seeds_than": len(b),
                "gain_than_lo": float(own.loc[(domain, than), f"{protocol.gain_measure}_lo"]),
                "gain_reached": not {claim.better, claim.than} & set(unmatched.get(domain, [])),
                "at_edge": bool({claim.better, claim.than} & set(edge.get(domain, []))),
            }
            c = _forgetting(a, b, domain, comparison, protocol.primary, held_out)
            row.update(d=c["d"], se=c["se"], df=c["df"])
            sens = _forgetting(a, b, domain, comparison, protocol.sensitivity, held_out)
            row.update(d_sens=sens["d"], d_sens_lo=sens["lo"], d_sens_hi=sens["hi"])
            g = compare(a, b, protocol.gain_measure, domain, comparison)
            row.update(g=g["d"], g_se=g["se"], g_df=g["df"])
            out.append(row)
    return pd.DataFrame(out, columns=CLAIM_COLUMNS)
