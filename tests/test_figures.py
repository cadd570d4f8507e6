"""Figures on small synthetic result files (the real files come from the snakemake end-to-end test
in test_pipeline.py)."""

import numpy as np
import pandas as pd
import pytest

from alr.report import figures
from tests.tiny import TABLE_DOMAINS, main_table


def _check_written(paths):
    assert [p.suffix for p in paths] == [".png", ".pdf"]
    png, pdf = (p.read_bytes() for p in paths)
    assert png.startswith(b"\x89PNG") and pdf.startswith(b"%PDF") and len(png) > 5000
    assert not list(paths[0].parent.glob(".*.tmp"))


def test_tradeoff_and_sweep_figures(tmp_path):
    sweep = [
        "lora",
        "alr-lambda0.5",
        "alr-lambda2",
        "alr-lambda8",
        "alr_no_layer-lambda0.5",
        "alr_no_layer-lambda2",
        "alr_no_layer-lambda8",
    ]
    main = tmp_path / "main.csv"
    main_table(sweep).to_csv(main, index=False)
    fig = figures.tradeoff(pd.read_csv(main))
    assert len(fig.axes) == len(TABLE_DOMAINS)
    assert fig.get_size_inches()[0] == pytest.approx(figures.PAGE_IN)
    _check_written(figures.save_figure(fig, tmp_path / "tradeoff"))
    fig = figures.lambda_sweep(pd.read_csv(main))
    lines = [ln for ln in fig.axes[0].get_lines() if ln.get_label().split(" (HV")[0] in ("alr", "alr_no_layer")]
    assert [len(ln.get_xdata()) for ln in lines] == [3, 3]  # one point per lambda, joined in lambda order
    _check_written(figures.save_figure(fig, tmp_path / "sweep"))
    with pytest.raises(ValueError, match="no lambda sweep"):
        figures.lambda_sweep(main_table(["lora", "alr"]))


def test_pareto_front_and_hypervolume_per_method():
    """alr's two points are both on its front (dashed staircase); lora's single point, forgetting the
    most, dominates nothing inside the box (hypervolume 0; the star, no number). alr: (0.01 x 2 + 0.04 x 12 points)
    over the box 0.05 x 12 points = 0.83."""
    main = main_table(["lora", "alr-lambda1", "alr-lambda2"])
    main.loc[main.method == "lora", ["forgetting", "domain_gain"]] = [0.05, 0.10]
    main.loc[main.method == "alr-lambda1", ["forgetting", "domain_gain"]] = [0.01, 0.12]
    main.loc[main.method == "alr-lambda2", ["forgetting", "domain_gain"]] = [0.00, 0.02]
    fig = figures.lambda_sweep(main)
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]  # one legend per domain panel
    assert legend == ["alr (HV 0.83)", "lora"]
    front = [ln for ln in fig.axes[0].get_lines() if ln.get_linestyle() == "--"]
    assert len(front) == 1 and list(front[0].get_xdata()) == [0.0, 0.01] and list(front[0].get_ydata()) == [2.0, 12.0]


def test_heatmap_values_are_base_minus_run(tmp_path):
    base = {"general": {"tasks": ["t1", "t2"]}, "tasks": {"t1": {"score": 0.5}, "t2": {"score": 0.4}}}
    runs = [
        {
            "domain": "science",
            "method": "lora",
            "seed": s,
            "eval": {
                "general": {"tasks": ["t1", "t2"]},
                "tasks": {"t1": {"score": 0.4 + 0.1 * s}, "t2": {"score": 0.4}},
            },
        }
        for s in (0, 1)
    ]
    # a sweep point selection did not choose: no general tasks scored, so no row
    runs.append(
        {"domain": "science", "method": "alr-lambda2", "seed": 0, "eval": {"general": {"tasks": []}, "tasks": {}}}
    )
    fig = figures.forgetting_heatmap(base, runs)
    grid = fig.axes[0].get_images()[0].get_array()
    assert np.allclose(grid, [[5.0, 0.0]])  # (0.1 + 0.0) / 2 points for t1, none for t2
    _check_written(figures.save_figure(fig, tmp_path / "heat"))


def test_layer_coefficients_and_importance(tmp_path):
    names = [f"model.layers.{i}.self_attn.{t}" for i in range(3) for t in ("q_proj", "v_proj")]
    coef = dict(zip(names, np.linspace(1, 2, len(names)) / np.linspace(1, 2, len(names)).sum()))
    fig = figures.layer_coefficients([{"method": "alr", "layer_coefficients": coef}, {"method": "lora"}])
    (q_line,) = [ln for ln in fig.axes[0].get_lines() if ln.get_label() == "alr: q_proj"]
    assert list(q_line.get_xdata()) == [0, 1, 2] and q_line.get_ydata()[0] == pytest.approx(coef[names[0]])
    _check_written(figures.save_figure(fig, tmp_path / "coef"))

    rng = np.random.default_rng(0)
    tensors = {n: np.where(rng.random((8, 8)) < 0.25, 0.0, rng.lognormal(i, 1, (8, 8))) for i, n in enumerate(names)}
    q = figures.importance_quantiles(tensors)
    first = tensors[names[0]]
    assert q.q50[0] == pytest.approx(np.median(first[first > 0]))
    assert q.zero_share[0] == pytest.approx((first == 0).mean())
    assert list(q.type[:2]) == ["q_proj", "v_proj"] and list(q.layer) == [0, 0, 1, 1, 2, 2]
    _check_written(figures.save_figure(figures.importance(tensors), tmp_path / "imp"))


def test_efficiency_figure_ratios(tmp_path):
    eff = pd.DataFrame(
        [
            {"kind": "importance", "name": "si", "wall_time_s": 10.0, "bytes": 2e6},
            {"kind": "importance", "name": "fisher", "wall_time_s": 100.0, "bytes": 8e6},
            {"kind": "training", "name": "lora", "step_time_s": 1.0},
            {"kind": "training", "name": "ewc_lora", "step_time_s": 2.0},
        ]
    )
    fig = figures.efficiency(eff)
    assert len(fig.axes) == 3 and all(ax.get_xscale() == "log" for ax in fig.axes)
    assert "×0.1" in [t.get_text().strip() for t in fig.axes[0].texts]
    assert "×0.5" in [t.get_text().strip() for t in fig.axes[2].texts]  # lora against ewc_lora
    _check_written(figures.save_figure(fig, tmp_path / "eff"))
