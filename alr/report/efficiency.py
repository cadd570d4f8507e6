"""The efficiency table: what each importance estimator and each training method costs.

Estimator rows (from the importance sidecars; bytes are read from the files on disk): wall time,
samples, tokens, peak memory, bytes, and their ratios to the EWC-LoRA Fisher. Training rows (from
train.json, median over domains and seeds): time per optimizer step and peak memory, and their
ratios to plain LoRA on the same domain and seed.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..core.io import read_json
from ..importance.estimators import FISHER
from ..methods.registry import PLAIN
from .render import write_table


def estimator_rows(sidecars: list[str | Path]) -> pd.DataFrame:
    """One row per estimator. An estimator recorded more than once (SI with one phase 1 per seed) is a
    repeated measurement: wall time and time per token are medians, with the per-token extremes and the
    number of repeats beside them."""
    rows = []
    for path in sidecars:
        side = read_json(path)
        tensors = Path(path).with_suffix(".safetensors")
        rows.append(
            {
                "kind": "importance",
                "name": side["estimator"],
                "samples": side["n_samples"],
                "tokens": side["n_tokens"],
                "wall_time_s": side["wall_time_s"],
                "peak_mem_mb": side["peak_mem_mb"],
                "bytes": tensors.stat().st_size,
                "dtype": side["dtype"],
                "model": side.get("model", ""),
                "device": side.get("provenance", {}).get("device", ""),
            }
        )
    df = _repeats(pd.DataFrame(rows))
    fisher = df[df.name == FISHER]
    if not fisher.empty:
        df["time_vs_fisher"] = df.wall_time_s / fisher.wall_time_s.iloc[0]
        df["bytes_vs_fisher"] = df.bytes / fisher.bytes.iloc[0]
    return df


def _repeats(df: pd.DataFrame) -> pd.DataFrame:
    if df.empty:
        return df
    df = df.assign(s_per_token=df.wall_time_s / df.tokens)
    per_token = df.groupby("name", sort=False).s_per_token
    first = df.groupby("name", sort=False).first()
    medians = df.groupby("name", sort=False)[["wall_time_s", "peak_mem_mb", "bytes", "tokens"]].median()
    out = first.assign(
        **medians,
        s_per_token=per_token.median(),
        s_per_token_min=per_token.min(),
        s_per_token_max=per_token.max(),
        repeats=per_token.size(),
    )
    return out.reset_index()


def training_rows(train_records: list[str | Path]) -> pd.DataFrame:
    """Median per method; the ratios to `lora` are paired (same domain and seed) before the median,
    because step time and memory depend on the domain's sequence lengths and a method may run on
    fewer domains than lora (`method_domains`)."""
    recs = [read_json(p) for p in train_records]
    if not recs:
        return pd.DataFrame(columns=["kind", "name", "step_time_s", "peak_mem_mb", "tokens_per_s", "runs"])
    df = pd.DataFrame(
        [
            {
                "name": r["method"],
                "domain": r.get("domain"),
                "seed": r.get("seed"),
                "step_time_s": r["step_time_s"],
                "peak_mem_mb": r["peak_mem_mb"],
                "tokens_per_s": r["tokens"] / r["wall_time_s"],
            }
            for r in recs
        ]
    )
    lora = df[df.name == PLAIN].groupby(["domain", "seed"])[["step_time_s", "peak_mem_mb"]].median()
    if not lora.empty:
        key = list(zip(df.domain, df.seed))
        df["step_time_vs_lora"] = df.step_time_s / lora.step_time_s.reindex(key).to_numpy()
        df["peak_mem_vs_lora"] = df.peak_mem_mb / lora.peak_mem_mb.reindex(key).to_numpy()
    agg = df.drop(columns=["domain", "seed"]).groupby("name", sort=False).median().reset_index()
    agg.insert(0, "kind", "training")
    agg["runs"] = df.groupby("name", sort=False).size().values
    return agg


def _num(v, fmt):
    return "" if pd.isna(v) else format(v, fmt)


def write_efficiency_table(sidecars, train_records, out_prefix) -> pd.DataFrame:
    est, tr = estimator_rows(sidecars), training_rows(train_records)
    table = pd.concat([est, tr], ignore_index=True)
    view = pd.DataFrame(
        {
            "kind": table.kind,
            "name": table.name,
            "samples / runs": [
                _num(s if k == "importance" else r, ".0f")
                for k, s, r in zip(table.kind, table.get("samples"), table.get("runs"))
            ],
            "wall time (s)": table.get("wall_time_s").map(lambda v: _num(v, ".1f")),
            "step time (s)": table.get("step_time_s").map(lambda v: _num(v, ".2f")),
            "peak memory (MiB)": table.peak_mem_mb.map(lambda v: _num(v, ".0f")),
            "bytes": table.get("bytes").map(lambda v: _num(v, ",.0f")),
            "time ratio": [
                _num(a, ".3f") if k == "importance" else _num(b, ".3f")
                for k, a, b in zip(
                    table.kind,
                    table.get("time_vs_fisher", pd.Series(dtype=float)).reindex(table.index),
                    table.get("step_time_vs_lora", pd.Series(dtype=float)).reindex(table.index),
                )
            ],
            "size / memory ratio": [
                _num(a, ".3f") if k == "importance" else _num(b, ".3f")
                for k, a, b in zip(
                    table.kind,
                    table.get("bytes_vs_fisher", pd.Series(dtype=float)).reindex(table.index),
                    table.get("peak_mem_vs_lora", pd.Series(dtype=float)).reindex(table.index),
                )
            ],
        }
    )
    note = (
        "Importance rows: ratios to the EWC-LoRA Fisher (time, bytes on disk); time from tokenized texts to the "
        "importance in memory, the median where an estimator ran more than once (SI: one phase 1 per seed). "
        "Training rows: median over runs; "
        "ratios to plain LoRA on the same domain and seed (time per optimizer step, peak memory: accelerator "
        "memory if used, else process RSS)."
    )
    write_table(table, view, note, out_prefix)
    return table
