"""What every report table shares: the model-free row names, the power constant, the reader of the
main table, and the writer of a table's three formats."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..core.examples import DataError
from ..core.io import atomic_path

BASELINES = ("lexical", "majority")  # model-free rows of each domain
Z_POWER = 1.959964 + 0.841621  # two-sided alpha 0.05, power 0.8: MDE = 2.80 x the standard error
RUN_COLUMNS = ("method", "base_method", "strength")  # a row's run, its registry method and its strength


def read_main_table(path: str | Path) -> pd.DataFrame:
    """The numeric main table (main.csv), checked for the run columns the figures and ablation read."""
    table = pd.read_csv(path)
    missing = [c for c in RUN_COLUMNS if c not in table.columns]
    if missing:
        raise DataError(
            f"{path} has no column {', '.join(missing)} (written by an older alr); "
            "regenerate it: snakemake --forcerun tables"
        )
    return table


def _latex_escape(latex: str) -> str:
    for raw, tex in (
        ("%", "\\%"),
        ("_", "\\_"),
        ("±", "$\\pm$"),
        ("Δ", "$\\Delta$"),
        ("−", "-"),
        ("×", "$\\times$"),
        ("α", "$\\alpha$"),
    ):
        latex = latex.replace(raw, tex)
    return latex


def write_table(numeric: pd.DataFrame, view: pd.DataFrame, note: str, out_prefix: str | Path) -> None:
    """`<prefix>.csv` (numbers), `.md` and `.tex` (booktabs, formatted), each written atomically."""
    out_prefix = Path(out_prefix)
    with atomic_path(out_prefix.with_suffix(".csv")) as tmp:
        numeric.to_csv(tmp, index=False, float_format="%.6g")
    align = ("left", "left") + ("right",) * (view.shape[1] - 2)
    with atomic_path(out_prefix.with_suffix(".md")) as tmp:
        tmp.write_text(
            view.to_markdown(index=False, disable_numparse=True, colalign=align) + "\n\n" + note + "\n",
            encoding="utf-8",
        )
    latex = view.style.hide(axis="index").to_latex(hrules=True, column_format="ll" + "r" * (view.shape[1] - 2))
    with atomic_path(out_prefix.with_suffix(".tex")) as tmp:
        tmp.write_text(f"% {note}\n" + _latex_escape(latex), encoding="utf-8")
