"""The claims protocol and its one rule: the three zones on a table of cases (the review's findings among
them), Holm's step-down over a fixed family, the gates (one seed, grid edge, gain not reached, no gain),
the matched-gain reading, efficiency at its scale, and a golden file that fails when a verdict changes on
fixed inputs while the protocol's version does not."""

import json
import math
from pathlib import Path

import pandas as pd
import pytest
import yaml
from scipy.stats import norm

from alr.core.errors import ConfigError
from alr.report.claims import (
    ANOTHER_RUN,
    AT_EDGE,
    CONTRADICTED,
    DESCRIPTIVE_ONE_SEED,
    NO_GAIN,
    NOT_AT_SCALE,
    NOT_RUN,
    OUTSIDE,
    SUPPORTED,
    UNDECIDED,
    decision_interval,
    efficiency_rows,
    holm_levels,
    overall,
    scorecard,
    three_zone,
    zone_pvalues,
)
from alr.report.matched import GAIN_NOT_REACHED
from alr.report.protocol import DEFAULT_PROTOCOL, load_protocol

GOLDEN = Path(__file__).parent / "data" / "protocol_verdicts.json"
Z = norm.ppf(0.975)


def _protocol(tmp_path, **changes):
    """The repository's protocol with `changes` applied (dotted keys), written to a new file."""
    spec = yaml.safe_load(DEFAULT_PROTOCOL.read_text())
    for dotted, value in changes.items():
        *parents, leaf = dotted.split(".")
        node = spec
        for key in parents:
            node = node[key]
        node[leaf] = value
    path = tmp_path / f"protocol-{len(list(tmp_path.iterdir()))}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return load_protocol(path)


def _one_claim(tmp_path, **changes):
    """A protocol whose only comparison claim is alr vs lora on science (a family of one), with the gain in
    balanced accuracy and m = 0.05: the units of the review's numbers in the cases below."""
    claim = {"key": "alr_vs_lora", "better": "alr", "than": "lora", "domains": ["science"], "text": "t"}
    units = {"gain.measure": "balanced_gain", "gain.margin": 0.05}
    return _protocol(tmp_path, families={"paper": [claim]}, **{**units, **changes})


def _row(d_ci, g_ci, key="alr_vs_lora", domain="science", seeds=(3, 3), **extra):
    """A comparison row from nominal 95% intervals (normal: df = inf)."""
    d, g = sum(d_ci) / 2, sum(g_ci) / 2
    return {
        "key": key,
        "domain": domain,
        "run_better": "alr",
        "run_than": "lora",
        "seeds_better": seeds[0],
        "seeds_than": seeds[1],
        "d": d,
        "se": (d_ci[1] - d_ci[0]) / (2 * Z),
        "df": math.inf,
        "d_sens": d,
        "d_sens_lo": d_ci[0],
        "d_sens_hi": d_ci[1],
        "g": g,
        "g_se": (g_ci[1] - g_ci[0]) / (2 * Z),
        "g_df": math.inf,
        "gain_than_lo": 0.05,
        "gain_reached": True,
        "at_edge": False,
        **extra,
    }


@pytest.mark.parametrize(
    "d_ci, g_ci, expected",
    [
        ((-0.02, -0.01), (-0.03, 0.03), SUPPORTED),  # an effect beyond e = 0.005 at a gain within m = 0.05
        ((-0.02, -0.004), (-0.03, 0.03), UNDECIDED),  # the CI reaches past −e: the effect may be smaller than e
        ((-0.02, -0.01), (-0.06, 0.03), UNDECIDED),  # may gain 0.06 less: beyond the margin
        ((-0.004, 0.02), (-0.03, 0.03), CONTRADICTED),  # no effect of e in the claimed direction, similar gain
        ((0.01, 0.02), (-0.03, 0.03), CONTRADICTED),  # the opposite effect
        ((0.01, 0.02), (0.01, 0.08), UNDECIDED),  # forgets more but may gain more: a trade-off, not a contradiction
        ((-0.01, 0.02), (-0.03, 0.03), UNDECIDED),  # spans −e
        # finding 2: alr − alr_no_element = −0.0066 [−0.0094, −0.0038]: the point is beyond e, the CI is not
        ((-0.0094, -0.0038), (-0.014, 0.072), UNDECIDED),
        # finding 3: alr − ewc_lora [−0.000, +0.012] and [−0.001, +0.015] rule out an effect of e: contradicted
        ((-0.0004, 0.012), (-0.04, 0.04), CONTRADICTED),
        ((-0.001, 0.015), (-0.04, 0.04), CONTRADICTED),
        # finding 10: the default's chemistry, d far below 0, g's CI about ±0.13 against the margin: undecided
        ((-0.052, -0.033), (-0.129, 0.13), UNDECIDED),
    ],
)
def test_three_zones_read_from_the_intervals(tmp_path, d_ci, g_ci, expected):
    protocol = _one_claim(tmp_path)
    assert three_zone(d_ci, g_ci, protocol) == expected
    card = scorecard(pd.DataFrame([_row(d_ci, g_ci)]), None, protocol, "lora").set_index("claim")
    assert card.loc["alr_vs_lora", "verdict"] == expected  # a family of one: the decision CI is the nominal one
    assert card.loc["alr_vs_lora", "rule"].startswith(
        {SUPPORTED: "supported:", CONTRADICTED: "contradicted:", UNDECIDED: "neither zone"}[expected]
    )


def test_the_verdict_is_holms_decision_and_both_zones_are_gated(tmp_path):
    """Over random rows of a family of eight, a row is decided exactly when Holm's step-down rejects its
    intersection-union p, and the zone read from its decision intervals is the one with the smaller p."""
    import numpy as np

    rng = np.random.default_rng(0)
    protocol = load_protocol()
    alpha = protocol.alpha
    for _ in range(200):
        rows = [
            _row(sorted(rng.normal(-0.004, 0.01, 2)), sorted(rng.normal(0, 0.05, 2)), domain=str(i)) for i in range(8)
        ]
        p = [zone_pvalues(r, protocol) for r in rows]
        rejected, at = holm_levels([min(x) for x in p], alpha)
        for r, (ps, pc), ok, a in zip(rows, p, rejected, at, strict=True):
            zone = three_zone(
                decision_interval(r["d"], r["se"], r["df"], a),
                decision_interval(r["g"], r["g_se"], r["g_df"], a),
                protocol,
            )
            assert (zone != UNDECIDED) == ok
            if ok:
                assert zone == (SUPPORTED if ps < pc else CONTRADICTED)


def test_holm_family_is_the_protocols_whether_or_not_a_claim_ran(tmp_path):
    """A row whose d is 2.2 standard errors beyond −e (one-sided p 0.014): alone in a family of one it is
    supported; in a family of three (two domains of its claim, one of another) its first Holm step asks
    p < 0.025 / 3, whether the other members ran or not, so running another claim never moves it."""
    claim = {"key": "alr_vs_lora", "better": "alr", "than": "lora", "domains": ["science", "chemistry"], "text": "t"}
    other = {"key": "alr_vs_ewc", "better": "alr", "than": "ewc_lora", "domains": ["science"], "text": "t"}
    se = 0.004
    d = -0.005 - 2.2 * se
    ci = (d - Z * se, d + Z * se)
    row = _row(ci, (-0.02, 0.02))
    alone = scorecard(pd.DataFrame([row]), None, _one_claim(tmp_path), "lora")
    assert alone.verdict.iloc[0] == SUPPORTED
    family = _protocol(tmp_path, families={"paper": [claim, other]})
    card = scorecard(pd.DataFrame([row]), None, family, "lora").set_index(["claim", "domain"])
    assert card.loc[("alr_vs_lora", "science"), "verdict"] == UNDECIDED  # 0.025 / 3 at its step: not shown
    assert card.loc[("alr_vs_lora", "chemistry"), "verdict"] == NOT_RUN
    assert "Holm step 1 of 3" in card.loc[("alr_vs_lora", "science"), "rule"]
    ewc = _row((0.001, 0.01), (-0.02, 0.02), key="alr_vs_ewc")
    with_ewc = scorecard(pd.DataFrame([row, ewc]), None, family, "lora").set_index(["claim", "domain"])
    assert with_ewc.loc[("alr_vs_lora", "science"), "verdict"] == UNDECIDED


def test_gates_before_the_rule(tmp_path):
    protocol = _one_claim(tmp_path)
    clear = ((-0.03, -0.02), (-0.02, 0.02))

    def verdict(domain="science", **extra):
        card = scorecard(pd.DataFrame([_row(*clear, domain=domain, **extra)]), None, protocol, "lora")
        return card.set_index("domain").verdict[domain]

    assert verdict() == SUPPORTED
    assert verdict(seeds=(1, 1)) == DESCRIPTIVE_ONE_SEED
    assert verdict(seeds=(3, 1)) == SUPPORTED  # a calibrated shape (tests/test_stats.py)
    assert verdict(at_edge=True) == AT_EDGE
    assert verdict(gain_reached=False) == GAIN_NOT_REACHED
    assert verdict(gain_than_lo=-0.01) == NO_GAIN
    assert verdict(domain="icd10") == OUTSIDE
    assert scorecard(pd.DataFrame(columns=list(_row(*clear))), None, protocol, "lora").verdict.iloc[0] == NOT_RUN


def test_a_verdict_against_the_reference_must_hold_at_matched_gain_in_the_same_zone(tmp_path):
    protocol = _one_claim(tmp_path)
    row = pd.DataFrame([_row((-0.03, -0.02), (-0.02, 0.02))])

    def verdict(lo, hi, reached=True):
        matched = pd.DataFrame(
            [
                {
                    "domain": "science",
                    "method": "alr",
                    "seed": 0,
                    "diff": (lo + hi) / 2,
                    "lo": lo,
                    "hi": hi,
                    "reached": reached,
                }
            ]
        )
        return scorecard(row, None, protocol, "lora", matched).set_index("claim").loc["alr_vs_lora"]

    assert verdict(-0.03, -0.01).verdict == SUPPORTED
    wide = verdict(-0.03, 0.01)
    assert wide.verdict == f"undecided (at matched gain: {UNDECIDED})" and "along alr's sweep (seed 0)" in wide.measured
    assert verdict(math.nan, math.nan, reached=False).verdict == f"undecided (at matched gain: {GAIN_NOT_REACHED})"


def test_efficiency_is_read_at_its_scale(tmp_path):
    """Storage: "at most 15%" per Fisher scope (9.9% of the full-model Fisher is supported, 100% of a Fisher
    of the same modules is not reproduced, naming where the saving comes from); speed at the prescribed counts."""
    path = tmp_path / "efficiency.csv"
    pd.DataFrame(
        {
            "kind": ["importance"] * 3,
            "name": ["si", "fisher", "fisher_adapted"],
            "wall_time_s": [10.0, 150.0, 40.0],
            "tokens": [1000, 500, 500],
            "s_per_token": [0.010, 0.300, 0.080],  # SI's median of 3 runs, 8-12 ms; Fisher 300 ms: 30x per token
            "s_per_token_min": [0.008, 0.300, 0.080],
            "s_per_token_max": [0.012, 0.300, 0.080],
            "repeats": [3, 1, 1],
            "bytes": [99, 1000, 99],
            "model": ["smollm2-135m-instruct"] * 3,
            "device": ["cpu (1 threads)"] * 3,
        }
    ).to_csv(path, index=False)
    rows = {(r["claim"], r["domain"]): r for r in efficiency_rows(path, load_protocol())}
    assert rows[("storage", "fisher")]["verdict"] == SUPPORTED and "9.9%" in rows[("storage", "fisher")]["measured"]
    adapted = rows[("storage", "fisher_adapted")]
    assert adapted["verdict"] == f"{NOT_AT_SCALE} (smollm2-135m-instruct, cpu (1 threads))"
    assert "no saving from the estimator" in adapted["measured"]
    speed = rows[("speed", "-")]  # at 5,000 Fisher samples against 10,000 SI passes: 15x, 12.5x-18.75x
    assert speed["verdict"] == SUPPORTED and speed["value"] == pytest.approx(15.0)
    assert "15.00x [12.50, 18.75 over the repeats' extremes]" in speed["measured"]
    assert "(3 runs, median)" in speed["measured"]
    assert {r["verdict"] for r in efficiency_rows(None, load_protocol())} == {NOT_RUN}


def test_overall_counts_only_the_domains_the_protocol_judges():
    card = pd.DataFrame(
        {
            "claim": ["a", "a", "a", "b", "b", "c"],
            "text": ["x"] * 6,
            "verdict": [SUPPORTED, SUPPORTED, OUTSIDE, SUPPORTED, CONTRADICTED, OUTSIDE],
        }
    )
    assert overall(card).set_index("claim").verdict.to_dict() == {"a": SUPPORTED, "b": "mixed", "c": OUTSIDE}


def test_a_bad_protocol_is_one_line_naming_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"gain\.margin"):
        _protocol(tmp_path, **{"gain.margin": -1})
    with pytest.raises(ConfigError, match="listed twice"):
        claim = {"key": "k", "better": "alr", "than": "lora", "domains": ["science"], "text": "t"}
        _protocol(tmp_path, families={"a": [claim], "b": [claim]})


def _fixed_inputs():
    """Every comparison claim of the protocol on each of its domains and on one it does not judge,
    with intervals spread over the zones; the same numbers every time."""
    protocol = load_protocol()
    rows = []
    for i, claim in enumerate(protocol.claims):
        for j, domain in enumerate([*claim.domains, "icd10"]):
            shift = 0.004 * ((i + 2 * j) % 7) - 0.012
            seeds = (1, 1) if (i + j) % 4 == 3 else (3, 1 + 2 * ((i + j) % 2))
            half = 0.002 + 0.004 * (i % 2)
            d_ci, g_ci = (shift - half, shift + half), (-0.02 + 0.01 * (i % 3), 0.02 + 0.01 * (j % 2))
            rows.append(_row(d_ci, g_ci, key=claim.key, domain=domain, seeds=seeds))
    return protocol, pd.DataFrame(rows)


def test_verdicts_on_fixed_inputs_change_only_with_the_protocol_version():
    """The golden file records the verdicts of `_fixed_inputs` under one protocol version and that file's
    sha256: an edit of config/protocol.yaml, or of the rule, without a new version fails here. A new
    version writes its own golden file (the assertion message holds its content)."""
    protocol, rows = _fixed_inputs()
    card = scorecard(rows, None, protocol, "lora")
    got = {f"{r.claim}/{r.domain}": r.verdict for r in card.itertuples() if r.family != "efficiency"}
    current = {"version": protocol.version, "sha256": protocol.sha256, "verdicts": got}
    golden = json.loads(GOLDEN.read_text())
    assert golden["version"] == protocol.version, f"protocol v{protocol.version}: write {GOLDEN} as {current}"
    assert golden["sha256"] == protocol.sha256, "config/protocol.yaml changed without a new version"
    assert golden["verdicts"] == got, "a verdict changed on fixed inputs without a new protocol version"
    assert set(got.values()) == {SUPPORTED, CONTRADICTED, UNDECIDED, DESCRIPTIVE_ONE_SEED, OUTSIDE}


def test_a_run_decides_only_the_claims_its_config_names(tmp_path):
    """Each claim is decided by one run (eval.compare.decides): a claim another run decides keeps its numbers,
    reads ANOTHER_RUN and counts with p = 1 in this run's Holm adjustment, so the decided claims face the
    thresholds they would face had it not run; what did not run reads "not run"; an unknown name is refused."""
    protocol = load_protocol()
    strong = _row((-0.03, -0.02), (-0.03, 0.03))
    weaker = _row((-0.02, -0.006), (-0.03, 0.03), key="no_layer_costs", domain="chemistry")
    rows = pd.DataFrame([strong, weaker])
    card = scorecard(rows, None, protocol, "lora", decides=["no_layer_costs"]).set_index(["claim", "domain"])
    alone = scorecard(rows.iloc[[1]], None, protocol, "lora").set_index(["claim", "domain"])
    assert card.loc[("alr_vs_lora", "science"), "verdict"] == ANOTHER_RUN
    assert card.loc[("alr_vs_lora", "science"), "value"] == pytest.approx(-0.025)
    assert (
        card.loc[("no_layer_costs", "chemistry"), "decision_level"]
        == alone.loc[("no_layer_costs", "chemistry"), "decision_level"]
    )
    assert card.loc[("no_layer_costs", "chemistry"), "verdict"] == alone.loc[("no_layer_costs", "chemistry"), "verdict"]
    assert card.loc[("element_matters", "chemistry"), "verdict"] == NOT_RUN
    assert set(card.loc[card.family == "efficiency", "verdict"]) == {NOT_RUN}
    with pytest.raises(
        ConfigError, match=r"eval\.compare\.decides.*'alr_vs_lorra' is no claim.*did you mean 'alr_vs_lora'"
    ):
        protocol.check_decides(["alr_vs_lorra"])
