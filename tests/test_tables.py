"""Result tables (main-table formatting, ablation, efficiency) on small synthetic inputs (the real
ones come from the snakemake end-to-end test in test_pipeline.py)."""

import statistics

import pandas as pd
import pytest

from alr.core.io import write_json
from alr.report.ablation import ablation_rows, write_ablation_table
from alr.report.efficiency import estimator_rows, write_efficiency_table
from alr.report.render import write_table
from tests.tiny import main_table


def test_write_table_formats_and_escapes(tmp_path):
    numeric = pd.DataFrame({"method": ["lora", "alr_no_layer"], "score": [0.5, 0.25]})
    view = pd.DataFrame(
        {
            "domain": ["science", "science"],
            "method": ["lora", "alr_no_layer"],
            "Δ vs lora [95% CI]": ["", "+0.010 [-0.020, +0.040]"],
            "score": ["0.500 ± 0.050", "0.250"],
        }
    )
    write_table(numeric, view, "a note", tmp_path / "t")
    assert pd.read_csv(tmp_path / "t.csv").equals(numeric)
    md = (tmp_path / "t.md").read_text()
    assert "| alr_no_layer" in md and "0.500 ± 0.050" in md and md.rstrip().endswith("a note")
    tex = (tmp_path / "t.tex").read_text()
    assert "\\toprule" in tex and "\\bottomrule" in tex
    assert "95\\% CI" in tex and "alr\\_no\\_layer" in tex and "$\\pm$" in tex and "$\\Delta$" in tex
    assert not list(tmp_path.glob(".*.tmp"))


def test_ablation_table(tmp_path):
    main = tmp_path / "main.csv"
    main_table(["lora", "alr", "alr_no_layer", "alr_no_element", "ewc_lora"]).to_csv(main, index=False)
    table = write_ablation_table(main, tmp_path / "ablation")
    assert list(table.method[table.domain == "science"]) == ["lora", "alr_no_element", "alr_no_layer", "alr"]
    assert list(table.layer_wise[:4]) == [False, True, False, True]
    assert list(table.element_wise[:4]) == [False, False, True, True]
    md = (tmp_path / "ablation.md").read_text()
    assert "| layer-wise" in md.replace("|  ", "| ") or "layer-wise" in md
    assert "ewc_lora" not in md and "| base " not in md.split("\n\n")[0]
    assert "\\toprule" in (tmp_path / "ablation.tex").read_text()
    with pytest.raises(ValueError, match="no rows"):
        ablation_rows(main_table(["lora"]).query("method != 'lora'"))


def _sidecar(folder, estimator, wall_time_s, n_bytes, stem=None):
    """An importance sidecar beside a stand-in tensor file of n_bytes (the table reads the size on disk)."""
    stem = stem or estimator
    write_json(
        folder / f"{stem}.json",
        {
            "estimator": estimator,
            "n_samples": 8,
            "n_tokens": 400,
            "wall_time_s": wall_time_s,
            "peak_mem_mb": 100.0,
            "dtype": "float32",
        },
    )
    (folder / f"{stem}.safetensors").write_bytes(b"\0" * n_bytes)
    return folder / f"{stem}.json"


def test_a_repeated_estimator_is_one_row_of_medians(tmp_path):
    """SI recorded once per seed (three phase 1s): one row, the median time, the per-token extremes."""
    sidecars = [_sidecar(tmp_path, "si", t, 300, stem=f"si-seed{i}") for i, t in enumerate((12.0, 8.0, 20.0))]
    sidecars.append(_sidecar(tmp_path, "fisher", 120.0, 1200))
    est = estimator_rows(sidecars).set_index("name")
    assert list(est.index) == ["si", "fisher"] and list(est.repeats) == [3, 1]
    assert est.loc["si", "wall_time_s"] == 12.0 and est.loc["si", "time_vs_fisher"] == pytest.approx(0.1)
    assert (est.loc["si", "s_per_token_min"], est.loc["si", "s_per_token_max"]) == (8.0 / 400, 20.0 / 400)


def test_efficiency_table_ratios(tmp_path):
    """Estimators against the Fisher; methods against lora on the same domain and seed: ewc_lora runs on
    science only, where lora is faster than on medical, so an unpaired ratio would be 1.0 / 0.65."""
    sidecars = [_sidecar(tmp_path, "si", 12.0, 300), _sidecar(tmp_path, "fisher", 120.0, 1200)]
    records = []
    for method, domain, step_time_s, peak_mem_mb in [
        ("lora", "science", 0.5, 100.0),
        ("lora", "medical", 0.8, 200.0),
        ("alr", "science", 0.6, 110.0),
        ("alr", "medical", 1.2, 260.0),
        ("ewc_lora", "science", 1.0, 150.0),
    ]:
        path = tmp_path / domain / method / "seed0" / "train.json"
        write_json(
            path,
            {
                "method": method,
                "domain": domain,
                "seed": 0,
                "step_time_s": step_time_s,
                "peak_mem_mb": peak_mem_mb,
                "tokens": 1000,
                "wall_time_s": 10.0,
            },
        )
        records.append(path)
    table = write_efficiency_table(sidecars, records, tmp_path / "tables" / "efficiency")

    est = table[table.kind == "importance"].set_index("name")
    assert est.loc["fisher", "time_vs_fisher"] == 1.0 and est.loc["fisher", "bytes_vs_fisher"] == 1.0
    assert est.loc["si", "bytes"] == 300
    assert est.loc["si", "time_vs_fisher"] == pytest.approx(0.1) and est.loc["si", "bytes_vs_fisher"] == 0.25
    train = table[table.kind == "training"].set_index("name")
    assert train.loc["lora", "step_time_vs_lora"] == 1.0 and train.loc["lora", "peak_mem_vs_lora"] == 1.0
    assert train.loc["alr", "step_time_s"] == pytest.approx(0.9)  # median over domains
    assert train.loc["alr", "step_time_vs_lora"] == pytest.approx(statistics.median([0.6 / 0.5, 1.2 / 0.8]))
    assert train.loc["alr", "peak_mem_vs_lora"] == pytest.approx(statistics.median([110 / 100, 260 / 200]))
    assert train.loc["ewc_lora", "step_time_vs_lora"] == pytest.approx(2.0)
    assert list(train.runs) == [2, 2, 1] and (train.tokens_per_s == 100.0).all()
    for ext in ("csv", "md", "tex"):
        assert (tmp_path / "tables" / f"efficiency.{ext}").stat().st_size > 0
    assert "1.350" in (tmp_path / "tables" / "efficiency.md").read_text()
    assert "\\toprule" in (tmp_path / "tables" / "efficiency.tex").read_text()
