"""The ablation table: which half of the penalty matters (results/tables/ablation.{csv,md,tex}).

Rows come from the main table (`main.csv`, so the scores, seeds and paired CIs are the
same numbers): per domain, `lora` (no penalty), `alr_no_element` (layer-wise coefficients on each
layer's mean importance), `alr_no_layer` (element-wise importance, uniform coefficients) and `alr`
(both), including every lambda of a sweep (`alr-lambda0.5`, ...).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..core.examples import DataError
from ..methods.registry import METHODS
from .render import BASELINES, read_main_table, write_table
from .tables import main_view


def components() -> dict[str, tuple[bool, bool]]:
    """method -> (layer-wise coefficients, element-wise importance), from the registry's `ablation`,
    in the order of the table: no part, one part, both."""
    parts = {name: m.ablation for name, m in METHODS.items() if m.ablation is not None}
    return dict(sorted(parts.items(), key=lambda kv: (sum(kv[1]), [not p for p in kv[1]])))


def ablation_rows(main: pd.DataFrame) -> pd.DataFrame:
    """The ablation methods' rows of the numeric main table, in COMPONENTS order, with their parts."""
    parts = components()
    main = main[~main.method.isin(BASELINES)].reset_index(drop=True)  # the model-free rows name no method
    method = main.base_method
    keep = method.isin(list(parts))
    if not keep.any():
        raise DataError(f"the main table has no rows for any of {list(parts)}; add them to `methods`")
    table = main[keep].copy()
    table.insert(2, "layer_wise", method[keep].map(lambda m: parts[m][0]))
    table.insert(3, "element_wise", method[keep].map(lambda m: parts[m][1]))
    order = method[keep].map(list(parts).index)
    return (
        table.assign(_order=order)
        .sort_values(["domain", "_order", "strength"], na_position="first")
        .drop(columns="_order")
        .reset_index(drop=True)
    )


def write_ablation_table(main_csv: str | Path, out_prefix: str | Path) -> pd.DataFrame:
    table = ablation_rows(read_main_table(main_csv))
    view, note = main_view(table)
    yes_no = {True: "yes", False: "no"}
    view.insert(2, "layer-wise", table.layer_wise.map(yes_no))
    view.insert(3, "element-wise", table.element_wise.map(yes_no))
    note = (
        "layer-wise: per-layer coefficients alpha_l; element-wise: per-weight importance Omega "
        "(alr_no_element uses each layer's mean). " + note
    )
    write_table(table, view, note, out_prefix)
    return table
