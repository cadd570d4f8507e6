"""Figures and the ablation table on small synthetic result files (the real files come from the
snakemake end-to-end test in test_pipeline.py)."""
import numpy as np
import pandas as pd
import pytest

from alr.report import figures
from alr.report.ablation import ablation_rows, write_ablation_table
from alr.report.tables import COLUMNS
from alr.runs import all_runs, parse_run, run_config

DOMAINS = ("physics", "medical")


def _main(methods):
    rng = np.random.default_rng(0)
    rows = []
    for d in DOMAINS:
        for m in ["base"] + methods:
            row = dict.fromkeys(COLUMNS, np.nan)
            row.update(domain=d, method=m, n_seeds=1 if m == "base" else 2, domain_score=rng.uniform(0.3, 0.6),
                       domain_stderr=0.04, domain_score_sd=0.02, general_score=rng.uniform(0.3, 0.4),
                       general_stderr=0.02, general_score_sd=0.01, general_nll=3.0,
                       forgetting=0.0 if m == "base" else rng.uniform(-0.02, 0.05),
                       domain_gain=0.0 if m == "base" else rng.uniform(0.0, 0.2))
            if m not in ("base", "lora"):
                row.update(reference="lora", d_general=0.01, d_general_lo=-0.01, d_general_hi=0.03,
                           d_domain=0.02, d_domain_lo=-0.02, d_domain_hi=0.05)
            rows.append(row)
    return pd.DataFrame(rows, columns=COLUMNS)


def _check_written(paths):
    assert [p.suffix for p in paths] == [".png", ".pdf"]
    png, pdf = (p.read_bytes() for p in paths)
    assert png.startswith(b"\x89PNG") and pdf.startswith(b"%PDF") and len(png) > 5000
    assert not list(paths[0].parent.glob(".*.tmp"))


def test_tradeoff_and_sweep_figures(tmp_path):
    sweep = ["lora", "alr-lambda0.5", "alr-lambda2", "alr-lambda8", "alr_no_layer-lambda0.5", "alr_no_layer-lambda2",
             "alr_no_layer-lambda8"]
    main = tmp_path / "main.csv"
    _main(sweep).to_csv(main, index=False)
    fig = figures.tradeoff(pd.read_csv(main))
    assert len(fig.axes) == len(DOMAINS)
    assert fig.get_size_inches()[0] == pytest.approx(figures.PAGE_IN)
    _check_written(figures.save_figure(fig, tmp_path / "tradeoff"))
    fig = figures.lambda_sweep(pd.read_csv(main))
    lines = [ln for ln in fig.axes[0].get_lines() if ln.get_label() in ("alr", "alr_no_layer")]
    assert [len(ln.get_xdata()) for ln in lines] == [3, 3]  # one point per lambda, joined in lambda order
    _check_written(figures.save_figure(fig, tmp_path / "sweep"))
    with pytest.raises(ValueError, match="no lambda sweep"):
        figures.lambda_sweep(_main(["lora", "alr"]))


def test_pareto_marks_only_non_dominated_runs():
    main = _main(["lora", "alr-lambda1", "alr-lambda2"])
    main.loc[main.method == "lora", ["forgetting", "domain_gain"]] = [0.05, 0.10]
    main.loc[main.method == "alr-lambda1", ["forgetting", "domain_gain"]] = [0.01, 0.12]  # dominates lora
    main.loc[main.method == "alr-lambda2", ["forgetting", "domain_gain"]] = [0.00, 0.02]
    fig = figures.lambda_sweep(main)
    ringed = fig.axes[0].collections[0].get_offsets()
    assert sorted(map(tuple, np.round(np.asarray(ringed), 6))) == [(0.0, 2.0), (1.0, 12.0)]


def test_heatmap_values_are_base_minus_run(tmp_path):
    base = {"general": {"tasks": ["t1", "t2"]}, "tasks": {"t1": {"score": 0.5}, "t2": {"score": 0.4}}}
    runs = [{"domain": "physics", "method": "lora", "seed": s,
             "eval": {"tasks": {"t1": {"score": 0.4 + 0.1 * s}, "t2": {"score": 0.4}}}} for s in (0, 1)]
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
    eff = pd.DataFrame([
        {"kind": "importance", "name": "si", "wall_time_s": 10.0, "bytes": 2e6},
        {"kind": "importance", "name": "fisher", "wall_time_s": 100.0, "bytes": 8e6},
        {"kind": "training", "name": "lora", "step_time_s": 1.0},
        {"kind": "training", "name": "ewc_lora", "step_time_s": 2.0}])
    fig = figures.efficiency(eff)
    assert len(fig.axes) == 3 and all(ax.get_xscale() == "log" for ax in fig.axes)
    assert "×0.1" in [t.get_text().strip() for t in fig.axes[0].texts]
    assert "×0.5" in [t.get_text().strip() for t in fig.axes[2].texts]  # lora against ewc_lora
    _check_written(figures.save_figure(fig, tmp_path / "eff"))


def test_ablation_table(tmp_path):
    main = tmp_path / "main.csv"
    _main(["lora", "alr", "alr_no_layer", "alr_no_element", "ewc_lora"]).to_csv(main, index=False)
    table = write_ablation_table(main, tmp_path / "ablation")
    assert list(table.method[table.domain == "physics"]) == ["lora", "alr_no_element", "alr_no_layer", "alr"]
    assert list(table.layer_wise[:4]) == [False, True, False, True]
    assert list(table.element_wise[:4]) == [False, False, True, True]
    md = (tmp_path / "ablation.md").read_text()
    assert "| layer-wise" in md.replace("|  ", "| ") or "layer-wise" in md
    assert "ewc_lora" not in md and "base" not in md.split("\n\n")[0]
    assert "\\toprule" in (tmp_path / "ablation.tex").read_text()
    with pytest.raises(ValueError, match="no rows"):
        ablation_rows(_main(["lora"]).query("method != 'lora'"))


def test_run_names_for_sweeps():
    cfg = {"methods": ["lora", "alr", "ewc_lora"], "regularize": {"lambda": 2.0}}
    assert all_runs(cfg) == ["lora", "alr", "ewc_lora"]  # one lambda: today's paths
    cfg["regularize"]["lambda"] = [0.5, 2, 1e-5]
    assert all_runs(cfg) == ["lora", "alr-lambda0.5", "alr-lambda2", "alr-lambda1e-05", "ewc_lora"]
    assert parse_run("alr_no_layer-lambda1e-05") == ("alr_no_layer", 1e-5)
    assert run_config(cfg, "alr-lambda0.5")["regularize"]["lambda"] == 0.5
    assert cfg["regularize"]["lambda"] == [0.5, 2, 1e-5]  # not modified in place
    with pytest.raises(ValueError, match="name the run"):
        run_config(cfg, "alr")
    with pytest.raises(ValueError, match="unknown method"):
        parse_run("magic-lambda1")

