"""How much each of the authors' phase-1 choices changes the SI importance, and how reproducible the
importance is across phase-1 seeds, on the real model and data of a config.

    python benchmarks/studies/importance_agreement.py --model-dir resources/models/smollm2-135m-instruct \
        --data-dir resources/data --out-dir results/importance_agreement

Records phase 1 (the `si` estimator's recorder) once per variant: our default; each of
the authors' switches alone (`importance.gradient: lora_sgd`, `clamp: running`, `xi: 1e-9`,
`accumulate: per_epoch` against `run` at the same two epochs); the whole `official` section (= the
si_official file); and phase-1 seeds 1 and 2 of the default. Files already there are reused. Then
per module (each adapted q_proj / v_proj): the Spearman rank correlation of Omega between two files
and the overlap of their top-10% elements (0.10 by chance), summarised as the mean (min) over
modules; the Spearman correlation over modules of the modules' L2 norms (what the layer-wise
coefficients are made of); and the layer coefficients the default importance gives under
`layer_norm: l2` and `rms`. Writes
`<out-dir>/agreement.{csv,md}` and prints the table.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import sys
from pathlib import Path

import torch
from scipy.stats import spearmanr

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from alr.config import check_config_files  # noqa: E402
from alr.core.sections import with_overrides  # noqa: E402
from alr.importance.estimators import get_estimator  # noqa: E402
from alr.importance.store import load_importance  # noqa: E402
from alr.methods.penalty import group_by_layer, layer_coefficients, normalise_mean  # noqa: E402
from alr.plugins import load_plugins  # noqa: E402

TOP = 0.10


def variants(cfg: dict) -> dict[str, dict]:
    """name -> the config its phase 1 runs with."""

    def importance(**changes):
        c = copy.deepcopy(cfg)
        c["importance"].update(changes)
        return c

    return {
        "default": cfg,
        "gradient=lora_sgd": importance(gradient="lora_sgd"),
        "clamp=running": importance(clamp="running"),
        "xi=1e-9": importance(xi=1e-9),
        "2 epochs, accumulate=run": importance(epochs=2),
        "2 epochs, accumulate=per_epoch": importance(epochs=2, accumulate="per_epoch"),
        "official (si_official)": with_overrides(cfg, "official"),
        "seed 1": importance(seed=1),
        "seed 2": importance(seed=2),
    }


# (file a, file b, what the row measures)
PAIRS = [
    ("default", "gradient=lora_sgd", "the authors' u instead of dL/dW"),
    ("default", "clamp=running", "running clamp instead of one final clamp"),
    ("default", "xi=1e-9", "xi 1e-9 instead of 1e-6"),
    ("2 epochs, accumulate=run", "2 epochs, accumulate=per_epoch", "per-epoch sums instead of one path integral"),
    ("default", "official (si_official)", "all of the authors' phase-1 settings"),
    ("default", "seed 1", "phase-1 seed 0 vs 1"),
    ("default", "seed 2", "phase-1 seed 0 vs 2"),
    ("seed 1", "seed 2", "phase-1 seed 1 vs 2"),
]


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman's rho with average ranks for ties (the clamp leaves many exact zeros in Omega)."""
    return float(spearmanr(a.flatten().double().numpy(), b.flatten().double().numpy()).statistic)


def top_overlap(a: torch.Tensor, b: torch.Tensor, fraction: float = TOP) -> float:
    k = max(1, int(fraction * a.numel()))
    ta = set(a.flatten().topk(k).indices.tolist())
    tb = set(b.flatten().topk(k).indices.tolist())
    return len(ta & tb) / k


def compare(a: dict, b: dict) -> dict:
    rho = [spearman(a[n], b[n]) for n in a]
    over = [top_overlap(a[n], b[n]) for n in a]
    norms = [torch.stack([t.double().norm() for t in imp.values()]) for imp in (a, b)]
    return {
        "spearman_mean": sum(rho) / len(rho),
        "spearman_min": min(rho),
        "top10_overlap_mean": sum(over) / len(over),
        "top10_overlap_min": min(over),
        "module_norm_spearman": spearman(*norms),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", nargs="*", default=[], help="config files merged over config/config.yaml")
    p.add_argument("--model-dir", required=True)
    p.add_argument("--data-dir", required=True)
    p.add_argument("--out-dir", default="results/importance_agreement")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    import pandas as pd

    load_plugins()
    cfg = check_config_files(args.config)
    out = Path(args.out_dir)
    files = {}
    for name, c in variants(cfg).items():
        path = out / name.replace(" ", "_").replace(",", "").replace("(", "").replace(")", "") / "si.safetensors"
        if not path.exists():
            print(f"recording {name} -> {path}", flush=True)
            get_estimator("si").record(c, args.model_dir, args.data_dir, path, None)
        files[name] = load_importance(path)[0]
    rows = [{"a": a, "b": b, "what": what, **compare(files[a], files[b])} for a, b, what in PAIRS]
    seeds = ["default", "seed 1", "seed 2"]
    pairs = [compare(files[a], files[b]) for a, b in itertools.combinations(seeds, 2)]
    rows.append(
        {
            "a": "seeds 0, 1, 2",
            "b": "(3 pairs)",
            "what": "phase-1 reproducibility, mean of the pairs",
            **{k: sum(r[k] for r in pairs) / len(pairs) for k in pairs[0]},
        }
    )
    table = pd.DataFrame(rows)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "agreement.csv", index=False)
    (out / "agreement.md").write_text(table.to_markdown(index=False, floatfmt=".3f") + "\n")
    print(table.to_markdown(index=False, floatfmt=".3f"))

    imp = normalise_mean(files["default"])
    groups = group_by_layer(imp, "module")
    for norm in ("l2", "rms"):
        coef = layer_coefficients(imp, groups, "softmax_norm", norm=norm)
        q = [v for k, v in coef.items() if k.endswith("q_proj")]
        v = [v for k, v in coef.items() if k.endswith("v_proj")]
        print(
            f"layer_norm {norm}: alpha max/min {max(coef.values()) / min(coef.values()):.2f}, "
            f"mean q_proj / mean v_proj {sum(q) / len(q) / (sum(v) / len(v)):.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
