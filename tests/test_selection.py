"""Strength selection on the validation split, the Pareto front and hypervolume, the claims' verdicts."""

import numpy as np
import pandas as pd
import pytest

from alr.io import write_json, write_jsonl
from alr.report.claims import (
    CLAIMS,
    CONTRADICTED,
    GAIN_NOT_REACHED,
    NO_GAIN,
    NOT_RUN,
    SUPPORTED,
    UNDECIDED,
    overall,
    verdict,
)
from alr.report.selection import hypervolume, pareto_mask, select, validation_points


def _points(rows):
    return pd.DataFrame(rows, columns=["domain", "run", "method", "strength", "seed", "forgetting", "gain", "acc"])


def test_rule_takes_least_forgetting_among_strengths_that_keep_enough_gain():
    pts = _points(
        [
            ("science", "lora", "lora", None, 0, 0.020, 1.00, 0.5),
            ("science", "alr-lambda0.5", "alr", 0.5, 0, 0.015, 0.95, 0.5),
            ("science", "alr-lambda2", "alr", 2.0, 0, 0.010, 0.91, 0.5),  # kept (0.91 >= 0.9), least forgetting
            ("science", "alr-lambda8", "alr", 8.0, 0, 0.002, 0.50, 0.4),  # forgets least but keeps half the gain
        ]
    )
    table = select(pts, "lora", 0.9)
    chosen = table[table.selected]
    assert list(chosen.run) == ["alr-lambda2"] and table.kept.tolist() == [True, True, False]
    assert table.floor.tolist() == pytest.approx([0.9] * 3)  # 0.9 x lora's gain, shown in selection.md
    wide = pd.concat([pts, _points([("science", "alr-lambda32", "alr", 32.0, 0, 0.001, 0.2, 0.3)])])
    assert select(wide, "lora", 0.9).strength.tolist() == [0.5, 2.0, 8.0, 32.0]  # by strength, not by name
    # none keeps 99% of lora's gain: the largest gain wins, and the rule says so
    strict = select(pts, "lora", 0.99)
    assert list(strict[strict.selected].run) == ["alr-lambda0.5"] and "no strength kept" in strict.reason.iloc[0]
    # seeds are averaged before the rule
    two = pd.concat([pts, _points([("science", "alr-lambda2", "alr", 2.0, 1, 0.010, 0.50, 0.5)])])
    assert list(select(two, "lora", 0.9).query("selected").run) == ["alr-lambda0.5"]
    with pytest.raises(ValueError, match="reference 'lora'"):
        select(pts[pts.run != "lora"], "lora", 0.9)


def _valid_record(folder, split, run=None, nll=3.0, gold=1.0):
    folder.mkdir(parents=True, exist_ok=True)
    items = [{"task": "text:news", "id": f"t{i}", "nll": nll + 0.01 * i, "tokens": 10} for i in range(4)]
    items += [
        {"task": "science", "id": f"p{i}", "acc": 1.0, "gold": "x", "gold_nll": 9.0, "choice_nll": gold + i}
        for i in range(3)
    ]
    write_jsonl(folder / f"{split}_items.jsonl.gz", items, compress=True)
    name = "valid" if split == "valid" else "eval"
    write_json(folder / f"{name}.json", {"split": split, "run": run, "domains": {"science": {"score": 1.0}}})
    return folder / f"{name}.json"


def test_selection_reads_validation_records_only(tmp_path):
    base = _valid_record(tmp_path / "base", "valid")
    run = {"domain": "science", "run": "alr-lambda2", "seed": 0}
    tuned = _valid_record(tmp_path / "alr", "valid", run, nll=3.5, gold=0.25)
    points = validation_points(base, [tuned])
    assert points.forgetting.iloc[0] == pytest.approx(0.5) and points.gain.iloc[0] == pytest.approx(0.75)
    test_record = _valid_record(tmp_path / "alr_test", "test", run)
    with pytest.raises(ValueError, match="selection reads valid.json files only"):
        validation_points(base, [test_record])


def test_pareto_mask_and_hypervolume_against_a_grid():
    rng = np.random.default_rng(0)
    f, g = rng.uniform(0, 1, 12), rng.uniform(0, 1, 12)
    mask = pareto_mask(f, g)
    for i in range(12):  # a point is on the front iff nothing dominates it
        dominated = any(f[j] <= f[i] and g[j] >= g[i] and (f[j] < f[i] or g[j] > g[i]) for j in range(12))
        assert mask[i] == (not dominated)
    ref_f, ref_g = 1.0, 0.0
    xs, ys = np.meshgrid(np.linspace(0, 1, 801)[:-1] + 1 / 1600, np.linspace(0, 1, 801)[:-1] + 1 / 1600)
    covered = np.zeros_like(xs, dtype=bool)
    for fi, gi in zip(f, g):  # the area a point dominates: less forgetting is left, more gain is up
        covered |= (xs >= fi) & (xs <= ref_f) & (ys <= gi) & (ys >= ref_g)
    assert hypervolume(f, g, ref_f, ref_g) == pytest.approx(covered.mean(), abs=5e-3)
    assert hypervolume(f[mask], g[mask], ref_f, ref_g) == pytest.approx(hypervolume(f, g, ref_f, ref_g))
    assert hypervolume([2.0], [0.5], ref_f, ref_g) == 0.0  # outside the box


COMPARE = {"reference": "lora", "level": 0.95, "margin": 0.2, "min_effect": 0.1}


def _row(d, gain, gain_b=0.2, forgetting_reference=0.05, gain_reached=True):
    """A comparison row: d = (lo, hi) of the NLL-rise difference, gain = (lo, hi) of the gain difference."""
    return {
        "lo": d[0],
        "hi": d[1],
        "d": sum(d) / 2,
        "gain_lo": gain[0],
        "gain_hi": gain[1],
        "gain_b": gain_b,
        "forgetting_reference": forgetting_reference,
        "gain_reached": gain_reached,
        "run_b": "lora",
    }


@pytest.mark.parametrize(
    "d, gain, expected",
    [
        ((-0.02, -0.01), (-0.03, 0.03), SUPPORTED),  # forgets less, gain loss within the margin (0.2 x 0.2 = 0.04)
        ((-0.02, -0.01), (-0.05, 0.03), UNDECIDED),  # forgets less, but may gain 0.05 less: beyond the margin
        # the accuracy CI's upper end exactly 0 is no evidence of similar gain
        ((-0.02, -0.01), (-0.067, 0.0), UNDECIDED),
        ((0.01, 0.02), (-0.03, 0.03), CONTRADICTED),  # forgets more at a similar gain
        ((0.01, 0.02), (0.01, 0.08), UNDECIDED),  # forgets more but may gain more: a trade-off
        ((-0.01, 0.02), (-0.03, 0.03), UNDECIDED),  # CI spans 0
    ],
)
def test_forgets_less_verdicts_need_a_non_inferior_gain(d, gain, expected):
    claim = next(c for c in CLAIMS if c.key == "alr_vs_lora")
    assert verdict(claim, _row(d, gain), COMPARE) == expected


def test_a_method_that_never_reached_the_gain_or_no_gain_is_undecided():
    claim = next(c for c in CLAIMS if c.key == "alr_vs_lora")
    assert verdict(claim, _row((-0.02, -0.01), (-0.01, 0.01), gain_reached=False), COMPARE) == GAIN_NOT_REACHED
    assert verdict(claim, _row((-0.02, -0.01), (-0.01, 0.01), gain_b=0.0), COMPARE) == NO_GAIN
    assert verdict(claim, None, COMPARE) == NOT_RUN


def test_costs_verdicts_need_a_practical_effect_and_overall():
    """min_effect 0.1 x the reference's forgetting 0.05 = 0.005."""
    claim = next(c for c in CLAIMS if c.key == "no_layer_costs")
    assert verdict(claim, _row((0.01, 0.02), (-0.01, 0.01)), COMPARE) == SUPPORTED
    assert verdict(claim, _row((0.001, 0.006), (-0.01, 0.01)), COMPARE) == UNDECIDED  # d = 0.0035 < 0.005
    assert verdict(claim, _row((0.01, 0.02), (0.0, 0.06)), COMPARE) == UNDECIDED  # the ablation may gain more
    assert verdict(claim, _row((-0.02, 0.004), (-0.01, 0.01)), COMPARE) == CONTRADICTED  # no cost of 0.005
    assert verdict(claim, _row((-0.02, -0.01), (-0.06, 0.0)), COMPARE) == UNDECIDED  # less forgetting, less gain
    card = pd.DataFrame(
        {"claim": ["a", "a", "b", "b"], "text": ["x"] * 4, "verdict": [SUPPORTED, SUPPORTED, SUPPORTED, CONTRADICTED]}
    )
    assert overall(card).set_index("claim").verdict.to_dict() == {"a": SUPPORTED, "b": "mixed"}


def test_scorecard_adjusts_p_over_claims_and_domains_and_reports_the_mde():
    """Two domains, each CI below 0 on its own (p 0.03 and 0.2 unadjusted): Holm over the family makes
    the first 0.06, so no verdict is supported; the MDE is 2.80 x the difference's standard error."""
    from alr.report.claims import scorecard

    rows = [
        dict(
            _row((-0.02, -0.001), (-0.01, 0.01)),
            domain=dom,
            a="alr",
            b="lora",
            run_a="alr",
            run_b="lora",
            d=-0.01,
            se=0.004,
            p=p,
            gain_d=0.0,
        )
        for dom, p in (("x", 0.03), ("y", 0.2))
    ]
    card = scorecard(pd.DataFrame(rows), None, COMPARE).set_index(["claim", "domain"])
    row = card.loc[("alr_vs_lora", "x")]
    assert row.p_holm == pytest.approx(0.06) and row.verdict == UNDECIDED
    assert row.mde == pytest.approx(2.801585 * 0.004, rel=1e-5)
    alone = scorecard(pd.DataFrame(rows[:1]), None, COMPARE).set_index(["claim", "domain"])
    assert alone.loc[("alr_vs_lora", "x")].verdict == SUPPORTED  # the same row alone in its family


def test_a_verdict_against_the_reference_must_hold_at_matched_gain_too():
    """alr's selected point forgets less than lora; read at lora's gain along alr's sweep it must too:
    a matched interval below 0 keeps "supported", an interval across 0 or a sweep that never reached
    lora's gain makes it undecided, naming the reading; claims against other methods are not read."""
    from alr.report.claims import scorecard
    from alr.report.matched import FORGETS_LESS, GAIN_NOT_REACHED

    row = dict(_row((-0.02, -0.01), (-0.01, 0.01)), domain="x", a="alr", b="lora", run_a="alr", run_b="lora")
    comparisons = pd.DataFrame([dict(row, p=0.001, gain_d=0.0, se=0.003)])
    ewc = dict(row, b="ewc_lora", run_b="ewc_lora", p=0.001, gain_d=0.0, se=0.003)

    def card(diff, lo, hi, reading):
        matched = pd.DataFrame(
            [{"domain": "x", "method": "alr", "seed": 0, "diff": diff, "lo": lo, "hi": hi, "verdict": reading}]
        )
        out = scorecard(pd.concat([comparisons, pd.DataFrame([ewc])]), None, COMPARE, matched)
        return out.set_index(["claim", "domain"])

    assert card(-0.01, -0.02, -0.005, FORGETS_LESS).loc[("alr_vs_lora", "x")].verdict == SUPPORTED
    wide = card(-0.01, -0.03, 0.01, UNDECIDED).loc[("alr_vs_lora", "x")]
    assert wide.verdict == f"undecided (at matched gain: {UNDECIDED})"
    assert "at lora's gain along alr's sweep (seed 0): d = -0.0100 [-0.0300, +0.0100]" in wide.measured
    lost = card(float("nan"), float("nan"), float("nan"), GAIN_NOT_REACHED)
    assert lost.loc[("alr_vs_lora", "x")].verdict == f"undecided (at matched gain: {GAIN_NOT_REACHED})"
    assert lost.loc[("alr_vs_ewc", "x")].verdict == SUPPORTED  # not against the reference: not read
