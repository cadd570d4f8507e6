"""Strength selection on the validation split, its grid-edge flag, the Pareto front and hypervolume."""

import numpy as np
import pandas as pd
import pytest

from alr.core.io import read_json, write_json, write_jsonl
from alr.report.selection import hypervolume, pareto_mask, select, validation_points, write_selection


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


def test_a_strength_selected_at_either_end_of_its_grid_is_flagged(tmp_path):
    """selection.json names the methods whose chosen strength is the smallest or largest of the grid
    (the claims give them no verdict); an interior choice is not flagged."""
    rows = [
        ("science", "lora", "lora", None, 0, 0.02, 1.0, 0.5),
        ("chemistry", "lora", "lora", None, 0, 0.02, 1.0, 0.5),
    ]
    for domain, gains in (("science", (1.0, 0.95, 0.5)), ("chemistry", (1.0, 0.99, 0.98))):
        for lam, forgetting, gain in zip((0.5, 4.0, 32.0), (0.015, 0.010, 0.002), gains):
            rows.append((domain, f"alr-lambda{lam:g}", "alr", lam, 0, forgetting, gain, 0.5))
    record = write_selection(select(_points(rows), "lora", 0.9), tmp_path / "selection", "lora", 0.9)
    assert record["selected"] == {"science": {"alr": "alr-lambda4"}, "chemistry": {"alr": "alr-lambda32"}}
    assert record["at_edge"] == {"chemistry": ["alr"]}
    assert read_json(tmp_path / "selection.json")["at_edge"] == {"chemistry": ["alr"]}
