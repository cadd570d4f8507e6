import pandas as pd

from alr.report.tables import write_table


def test_write_table_formats_and_escapes(tmp_path):
    numeric = pd.DataFrame({"method": ["lora", "alr_no_layer"], "score": [0.5, 0.25]})
    view = pd.DataFrame({"domain": ["physics", "physics"], "method": ["lora", "alr_no_layer"],
                         "Δ vs lora [95% CI]": ["", "+0.010 [-0.020, +0.040]"], "score": ["0.500 ± 0.050", "0.250"]})
    write_table(numeric, view, "a note", tmp_path / "t")
    assert pd.read_csv(tmp_path / "t.csv").equals(numeric)
    md = (tmp_path / "t.md").read_text()
    assert "| alr_no_layer" in md and "0.500 ± 0.050" in md and md.rstrip().endswith("a note")
    tex = (tmp_path / "t.tex").read_text()
    assert "\\toprule" in tex and "\\bottomrule" in tex
    assert "95\\% CI" in tex and "alr\\_no\\_layer" in tex and "$\\pm$" in tex and "$\\Delta$" in tex
    assert not list(tmp_path.glob(".*.tmp"))
