"""Paper figures from the result files only (results/figures/<name>.{png,pdf}).

    alr figures --figure tradeoff --main-table results/tables/main.csv --out-prefix results/figures/tradeoff

| name | shows | reads |
|---|---|---|
| `tradeoff` | domain accuracy gain against forgetting (general NLL rise), per method, one panel per domain | main.csv |
| `forgetting_heatmap` | per general MC task, base minus method score (points), methods x tasks | eval.json files |
| `efficiency` | importance time and storage (log scale) vs the EWC-LoRA Fisher; step time per method | efficiency.csv |
| `layer_coefficients` | the layer coefficients alpha_l per layer and module type | train.json files |
| `importance` | the distribution of SI importance per layer and module type (log scale) | si.safetensors |
| `lambda_sweep` | domain gain vs forgetting per sweep point, each method's Pareto front and hypervolume | main.csv |

Sizes: one paper column is 3.3 in wide, a two-column figure 6.9 in; text is 7 pt. Scores are in
points (accuracy x 100), NLLs in nats. Error bars: the 95% CIs of the main table (t intervals over
seeds and items, paired against the base).
"""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ..core.errors import ConfigError
from ..core.examples import DataError
from ..core.io import atomic_path, read_json
from ..evaluate.records import read_eval, scores_general_tasks
from ..importance.estimators import FISHER, SI
from ..methods.registry import BASE, EWC, PLAIN, estimator_users, get_method
from ..methods.runs import format_strength
from .render import BASELINES, read_main_table
from .selection import hypervolumes, pareto_mask

COLUMN_IN, PAGE_IN = 3.3, 6.9
STYLE = {
    "font.size": 7,
    "axes.titlesize": 7,
    "axes.labelsize": 7,
    "legend.fontsize": 6,
    "xtick.labelsize": 6,
    "ytick.labelsize": 6,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "lines.markersize": 4,
    "pdf.fonttype": 42,
}
MARKERS = "osD^vP*XhHp<>"
FIGURES = ("tradeoff", "forgetting_heatmap", "efficiency", "layer_coefficients", "importance", "lambda_sweep")


def _colours(names: list[str]) -> dict[str, tuple]:
    cmap = plt.get_cmap("tab10")
    return {n: cmap(i % 10) for i, n in enumerate(names)}


def _panels(n: int, height: float = 2.2, sharey: bool = True):
    width = COLUMN_IN if n == 1 else PAGE_IN
    fig, axes = plt.subplots(1, n, figsize=(width, height), sharey=sharey, squeeze=False, layout="constrained")
    return fig, list(axes[0])


def save_figure(fig, out_prefix: str | Path) -> list[Path]:
    """`<prefix>.png` (300 dpi) and `<prefix>.pdf`, each written atomically; closes the figure."""
    out_prefix = Path(out_prefix)
    paths = []
    for ext in ("png", "pdf"):
        path = out_prefix.with_name(out_prefix.name + "." + ext)
        meta = {"CreationDate": None} if ext == "pdf" else {}  # no timestamp: same inputs, same bytes
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=ext, dpi=300, metadata=meta)
        paths.append(path)
    plt.close(fig)
    return paths


def _model_rows(main: pd.DataFrame) -> pd.DataFrame:
    """The tuned runs' rows (no base, no model-free baseline rows)."""
    return main[~main.method.isin([BASE, *BASELINES])].copy()


def _ci_err(rows: pd.DataFrame, measure: str, scale: float = 1.0) -> np.ndarray:
    """Asymmetric error bars [[below], [above]] from a measure's CI columns."""
    return scale * np.vstack(
        [(rows[measure] - rows[f"{measure}_lo"]).clip(lower=0), (rows[f"{measure}_hi"] - rows[measure]).clip(lower=0)]
    )


def tradeoff(main: pd.DataFrame):
    """(a) x: forgetting (general NLL rise against base), y: domain accuracy gain, each with its 95%
    CI; up and left is better."""
    runs = _model_rows(main)
    if runs.empty:
        raise DataError("the main table has no tuned runs to plot")
    methods = list(dict.fromkeys(runs.base_method))
    colours = _colours(methods)
    domains = list(dict.fromkeys(runs.domain))
    with plt.rc_context(STYLE):
        fig, axes = _panels(len(domains))
        for ax, domain in zip(axes, domains):
            ax.axhline(0, color="0.6", lw=0.6)
            ax.axvline(0, color="0.6", lw=0.6)
            rows = runs[runs.domain == domain]
            xerr, yerr = _ci_err(rows, "forgetting"), _ci_err(rows, "domain_gain", 100)
            for k, (_, r) in enumerate(rows.iterrows()):
                i = methods.index(r.base_method)
                ax.errorbar(
                    r.forgetting,
                    100 * r.domain_gain,
                    xerr=xerr[:, [k]],
                    yerr=yerr[:, [k]],
                    fmt=MARKERS[i % len(MARKERS)],
                    color=colours[r.base_method],
                    elinewidth=0.6,
                    capsize=1.5,
                    label=r.base_method,
                )
                if pd.notna(r.strength):
                    ax.annotate(
                        f"{get_method(r.base_method).strength_tag}={format_strength(r.strength)}",
                        (r.forgetting, 100 * r.domain_gain),
                        fontsize=5,
                        xytext=(2, 2),
                        textcoords="offset points",
                    )
            ax.set_title(domain)
            ax.set_xlabel("forgetting: general NLL rise (nats)")
        axes[0].set_ylabel("domain accuracy gain (points)")
        _legend_below(fig, axes)
    return fig


def _legend_below(fig, axes):
    handles, labels = {}, []
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in handles:
                handles[lab] = h
                labels.append(lab)
    fig.legend(
        [handles[lab] for lab in labels], labels, loc="outside lower center", ncol=min(len(labels), 6), frameon=False
    )


def forgetting_heatmap(base_eval: dict, runs: list[dict]):
    """(e) base score minus run score per general task, averaged over seeds; rows: runs, one panel per domain.

    `runs`: [{"domain", "method", "seed", "eval": eval.json dict}]; those without general tasks (sweep
    points selection did not choose) are left out.
    """
    tasks = base_eval["general"]["tasks"]
    runs = [r for r in runs if scores_general_tasks(r["eval"])]
    rows = [
        {
            "domain": r["domain"],
            "method": r["method"],
            "task": t,
            "forgetting": 100 * (base_eval["tasks"][t]["score"] - r["eval"]["tasks"][t]["score"]),
        }
        for r in runs
        for t in tasks
    ]
    if not rows:
        raise DataError("no evaluated runs to plot")
    df = pd.DataFrame(rows).groupby(["domain", "method", "task"], sort=False).forgetting.mean().reset_index()
    domains = list(dict.fromkeys(df.domain))
    limit = max(df.forgetting.abs().max(), 1e-9)
    n_methods = df.method.nunique()
    with plt.rc_context(STYLE):
        fig, axes = _panels(len(domains), height=0.9 + 0.22 * n_methods + 0.06 * max(map(len, tasks)))
        for ax, domain in zip(axes, domains):
            grid = df[df.domain == domain].pivot(index="method", columns="task", values="forgetting")
            grid = grid.reindex(index=list(dict.fromkeys(df[df.domain == domain].method)), columns=tasks)
            im = ax.imshow(grid.values, cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto")
            ax.set_xticks(range(len(tasks)), tasks, rotation=45, ha="right")
            ax.set_yticks(range(len(grid.index)), grid.index)
            if grid.size <= 80:
                for (i, j), v in np.ndenumerate(grid.values):
                    ax.text(
                        j,
                        i,
                        f"{round(v) + 0:+d}",
                        ha="center",
                        va="center",
                        fontsize=5,
                        color="white" if abs(v) > 0.6 * limit else "black",
                    )
            ax.set_title(domain)
            ax.spines[:].set_visible(False)
        fig.colorbar(im, ax=axes, label="forgetting (points; > 0 = lost)", shrink=0.9)
    return fig


def _estimator_label(name: str) -> str:
    """`fisher (ewc_lora)`: an estimator and the first method that reads its file."""
    users = estimator_users(name)
    return f"{name} ({users[0]})" if users else name


def efficiency(eff: pd.DataFrame):
    """(d) importance wall time and bytes (log scale), ratios to the EWC-LoRA Fisher; training time per step
    per method, ratios to ewc_lora (or to lora when ewc_lora was not run)."""
    est = eff[eff.kind == "importance"]
    train = eff[eff.kind == "training"]
    if est.empty:
        raise DataError("the efficiency table has no importance rows")
    labels = [_estimator_label(n) for n in est.name]
    fisher = est[est.name == FISHER]
    panels = [
        (
            "importance time (s), × vs fisher",
            est.wall_time_s.to_numpy(float),
            labels,
            None if fisher.empty else float(fisher.wall_time_s.iloc[0]),
        ),
        (
            "importance storage (MB), × vs fisher",
            est.bytes.to_numpy(float) / 1e6,
            labels,
            None if fisher.empty else float(fisher.bytes.iloc[0]) / 1e6,
        ),
    ]
    if not train.empty:
        ref = next((train[train.name == n] for n in (EWC, PLAIN) if (train.name == n).any()), None)
        panels.append(
            (
                f"training time per step (s){'' if ref is None else ', × vs ' + ref.name.iloc[0]}",
                train.step_time_s.to_numpy(float),
                list(train.name),
                None if ref is None else float(ref.step_time_s.iloc[0]),
            )
        )
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(
            1, len(panels), figsize=(PAGE_IN, 0.8 + 0.22 * max(len(p[2]) for p in panels)), layout="constrained"
        )
        for ax, (title, values, names, ref) in zip(np.atleast_1d(axes), panels):
            ax.barh(range(len(values)), values, color=[_colours(names)[n] for n in names])
            ax.set_yticks(range(len(values)), names)
            ax.invert_yaxis()
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
            ax.set_xlabel(title)
            if ref:
                for i, v in enumerate(values):
                    ax.text(v, i, f" ×{v / ref:.2g}", va="center", fontsize=5)
            # log bars start at the left edge: put it below the smallest value so every bar shows
            ax.set_xlim(values.min() / 4, values.max() * (8 if ref else 2))
    return fig


def _layer_index(name: str) -> int:
    m = re.search(r"\.(\d+)(?:\.|$)", name)
    if not m:
        raise ValueError(f"cannot find a layer index in module name {name!r}")
    return int(m.group(1))


def _module_type(name: str) -> str:
    tail = re.split(r"\.\d+(?:\.|$)", name, maxsplit=1)[-1]
    return tail.rsplit(".", 1)[-1] if tail else "block"


def layer_coefficients(records: list[dict]):
    """(b) alpha_l against the layer index, one line per method and module type (mean over domains and
    seeds, with the min-max range shaded when they differ); dashed: the uniform 1/L."""
    rows = [
        {"method": r["method"], "layer": _layer_index(k), "module": _module_type(k), "alpha": v}
        for r in records
        if r.get("layer_coefficients")
        for k, v in r["layer_coefficients"].items()
    ]
    if not rows:
        raise DataError("no train.json record holds layer coefficients")
    df = pd.DataFrame(rows)
    n_layers = max(len(r["layer_coefficients"]) for r in records if r.get("layer_coefficients"))
    series = df.groupby(["method", "module", "layer"]).alpha.agg(["mean", "min", "max"]).reset_index()
    keys = list(dict.fromkeys(zip(series.method, series.module)))
    colours = _colours([f"{m} {t}" for m, t in keys])
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(COLUMN_IN, 2.2), layout="constrained")
        for i, (method, module) in enumerate(keys):
            s = series[(series.method == method) & (series.module == module)]
            c = colours[f"{method} {module}"]
            ax.plot(
                s.layer,
                s["mean"],
                marker=MARKERS[i % len(MARKERS)],
                ms=2.5,
                lw=0.8,
                color=c,
                label=f"{method}: {module}",
            )
            if (s["max"] > s["min"]).any():
                ax.fill_between(s.layer, s["min"], s["max"], color=c, alpha=0.2, lw=0)
        ax.axhline(1 / n_layers, color="0.4", ls="--", lw=0.6, label="uniform 1/L")
        ax.set_xlabel("transformer block")
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.set_ylabel("layer coefficient α")
        ax.legend(frameon=False, ncol=2)
    return fig


def importance_quantiles(tensors: dict[str, np.ndarray]) -> pd.DataFrame:
    """Per module: layer, type, share of zeros, and the 5/25/50/75/95th percentiles of the positive values."""
    rows = []
    for name, t in tensors.items():
        flat = np.asarray(t, dtype=np.float32).ravel()
        pos = flat[flat > 0]
        q = np.percentile(pos, [5, 25, 50, 75, 95]) if pos.size else [np.nan] * 5
        rows.append(
            {
                "module": name,
                "layer": _layer_index(name),
                "type": _module_type(name),
                "zero_share": 1 - pos.size / flat.size,
                **dict(zip(("q05", "q25", "q50", "q75", "q95"), q)),
            }
        )
    return pd.DataFrame(rows).sort_values(["layer", "type"]).reset_index(drop=True)


def importance(tensors: dict[str, np.ndarray], estimator: str = SI):
    """(c) box per module (whiskers: 5th/95th percentile of the positive values, log scale), grouped by layer."""
    q = importance_quantiles(tensors)
    types = list(dict.fromkeys(q.type))
    colours = _colours(types)
    width = 0.8 / len(types)
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(PAGE_IN if q.layer.nunique() > 8 else COLUMN_IN, 2.2), layout="constrained")
        for j, typ in enumerate(types):
            sub = q[q.type == typ].dropna(subset=["q50"])
            stats = [
                {"whislo": r.q05, "q1": r.q25, "med": r.q50, "q3": r.q75, "whishi": r.q95, "fliers": []}
                for r in sub.itertuples()
            ]
            pos = sub.layer.to_numpy() + (j - (len(types) - 1) / 2) * width
            art = ax.bxp(
                stats,
                positions=pos,
                widths=width * 0.9,
                patch_artist=True,
                manage_ticks=False,
                medianprops={"color": "black", "lw": 0.6},
                whiskerprops={"lw": 0.5},
                capprops={"lw": 0.5},
                boxprops={"lw": 0.4},
            )
            for box in art["boxes"]:
                box.set_facecolor(colours[typ])
            ax.plot([], [], "s", color=colours[typ], label=typ)
        ax.set_yscale("log")
        ax.set_xlabel("transformer block")
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.set_ylabel(f"{estimator} importance Ω (> 0)")
        zeros = q.zero_share.mean()
        ax.set_title(f"5/25/50/75/95th percentiles per module; {100 * zeros:.1f}% of elements are 0", fontsize=6)
        ax.legend(frameon=False, ncol=len(types))
    return fig


def lambda_sweep(main: pd.DataFrame):
    """(f) The Pareto figure: forgetting (x, general NLL rise) against domain gain (y) for every point
    of every sweep, each method's points joined in strength order, its own Pareto front drawn as a
    dashed staircase, its hypervolume in that domain (normalised, alr.report.selection) in the panel's
    legend; star: lora (one point, the most forgetting: its hypervolume is 0 by construction of the box)."""
    df = _model_rows(main)
    swept = df[df.strength.notna()]
    if swept.base_method.nunique() == 0 or swept.groupby("base_method").strength.nunique().max() < 2:
        raise DataError(
            "the main table holds no lambda sweep (give a method's strength, e.g. regularize.lambda, "
            "as a list of values)"
        )
    hv = hypervolumes(main).set_index(["domain", "method"]).hypervolume_norm
    methods = [m for m in dict.fromkeys(df.base_method) if m != PLAIN]
    colours = _colours(methods)
    domains = list(dict.fromkeys(df.domain))
    with plt.rc_context(STYLE):
        fig, axes = _panels(len(domains))
        for ax, domain in zip(axes, domains):
            rows = df[df.domain == domain]
            for i, method in enumerate(methods):
                s = rows[rows.base_method == method].sort_values("strength", na_position="first")
                if s.empty:
                    continue
                label = f"{method} (HV {hv.get((domain, method), np.nan):.2f})"
                ax.plot(
                    s.forgetting,
                    100 * s.domain_gain,
                    marker=MARKERS[i % len(MARKERS)],
                    lw=0.6 if len(s) > 1 else 0,
                    color=colours[method],
                    label=label,
                )
                front = s[pareto_mask(s.forgetting.to_numpy(float), s.domain_gain.to_numpy(float))].sort_values(
                    "forgetting"
                )
                if len(front) > 1:
                    ax.step(
                        front.forgetting, 100 * front.domain_gain, where="post", ls="--", lw=0.6, color=colours[method]
                    )
                for r in s[s.strength.notna()].itertuples():
                    ax.annotate(
                        format_strength(r.strength),
                        (r.forgetting, 100 * r.domain_gain),
                        fontsize=5,
                        xytext=(2, 2),
                        textcoords="offset points",
                    )
            lora = rows[rows.method == PLAIN]
            if not lora.empty:
                ax.plot(lora.forgetting, 100 * lora.domain_gain, "*", color="black", ms=6, label=PLAIN)
            ax.set_title(domain)
            ax.set_xlabel("forgetting: general NLL rise (nats; lower is better)")
            ax.legend(fontsize=5, frameon=False, loc="best")  # per panel: a hypervolume is per domain
        axes[0].set_ylabel("domain accuracy gain (points)")
    return fig


def _read_tensors(path: str | Path) -> dict[str, np.ndarray]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        return {n: fh.get_tensor(n).float().numpy() for n in fh.keys()}


def build_figure(
    name: str,
    out_prefix: str | Path,
    main_table=None,
    efficiency_table=None,
    base_eval=None,
    runs: list[dict] | None = None,
    train_records=(),
    importance_file=None,
) -> list[Path]:
    """Draw figure `name` from the given result files and write `<out_prefix>.{png,pdf}`.

    `runs`: [{"domain", "method", "seed", "eval": path to eval.json}] (forgetting_heatmap)."""

    def need(value, flag):
        if not value:
            raise ConfigError(f"figure {name!r} needs {flag}")
        return value

    if name == "tradeoff":
        fig = tradeoff(read_main_table(need(main_table, "--main-table")))
    elif name == "lambda_sweep":
        fig = lambda_sweep(read_main_table(need(main_table, "--main-table")))
    elif name == "efficiency":
        fig = efficiency(pd.read_csv(need(efficiency_table, "--efficiency-table")))
    elif name == "forgetting_heatmap":
        base = read_json(need(base_eval, "--base-eval"))
        fig = forgetting_heatmap(base, [dict(r, eval=read_eval(r["eval"])) for r in need(runs, "--evals")])
    elif name == "layer_coefficients":
        fig = layer_coefficients([read_json(p) for p in need(train_records, "--train-records")])
    elif name == "importance":
        path = need(importance_file, "--importance")
        fig = importance(_read_tensors(path), read_json(Path(path).with_suffix(".json"))["estimator"])
    else:
        raise ConfigError(f"unknown figure {name!r}; known: {', '.join(FIGURES)}")
    return save_figure(fig, out_prefix)
