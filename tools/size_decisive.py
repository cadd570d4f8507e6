"""Size the decisive run from a valid-split pilot (config/pilots/sizing.yaml; docs/protocol.md, "Power by design").

    python tools/size_decisive.py --targets config/pilots/sizing.yaml   # the pilot's valid.json files
    python tools/size_decisive.py FOLDER [--config config/pilots/sizing.yaml]   # its sizing table (Markdown)

For the headline comparison (alr − lora, seeds paired by id) on each pilot domain, the valid records give the
variance components of the protocol's measured quantities: d on the primary forgetting texts (the held-out
genre) and g in balanced accuracy and in the gold answer's NLL fall among the choices. With D[seed, item] =
delta + s_seed + t_item + e, the seed, item and residual variances follow from the row means, the column means
and the two-way residual; a design with K seeds and N items then has se^2 = s^2/K + t^2/N + e^2/(K N) and,
at the protocol's first Holm step of the `paper` family, the MDE (t(1 - alpha/n) + t(0.8)) x se. The table
says whether each design's MDE is below the protocol's e (d) and m (g, in the protocol's gain measure; the
other gain measure is printed for scale, against lora's own valid gain).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

from alr.config import check_config_files
from alr.core.io import read_json
from alr.core.layout import base_file
from alr.evaluate.records import items_path, read_items
from alr.plugins import load_plugins
from alr.report.claims import mde as claim_mde
from alr.report.comparisons import _weights as balanced_weights
from alr.report.protocol import load_protocol, protocol_path
from alr.report.stats import _within_item_noise

FAMILY = "paper"  # the family of the compared claim (alr vs lora): the first Holm step is alpha / its size
SEEDS = (3, 5)
TEXTS = (90, 180)
ITEMS = (50, 80, 150, 300)
GAIN_MEASURES = {"g: balanced accuracy": "balanced_gain", "g: gold NLL fall among choices (nats)": "choice_nll_gain"}


def _run_file(cfg: dict, domain: str, run: str, seed: int) -> str:
    return f"results/{cfg['model']['name']}/{domain}/{run}/seed{seed}/valid.json"


def targets(cfg: dict) -> list[str]:
    files = [base_file(cfg["model"]["name"], "valid.json")]
    files += [_run_file(cfg, d, m, s) for d in cfg["domains"] for m in ("lora", "alr") for s in cfg["seeds"]]
    return files


def _matrix(runs: list[dict], base: dict, keys: list, value) -> np.ndarray:
    """[seeds x items] of value(run record, base record)."""
    return np.array([[value(run[k], base[k]) for k in keys] for run in runs])


def components(d: np.ndarray) -> tuple[float, float, float]:
    """(seed, item, residual) variances of a [seeds x items] matrix of paired differences."""
    k, n = d.shape
    noise = _within_item_noise(d)
    seed = max(float(d.mean(axis=1).var(ddof=1)) - noise / n, 0.0)
    item = max(float(d.mean(axis=0).var(ddof=1)) - noise / k, 0.0)
    return seed, item, noise


def mde(parts: tuple[float, float, float], seeds: int, items: int, alpha: float) -> float:
    seed, item, noise = parts
    a, b = seed / seeds, item / items + noise / (seeds * items)
    df = (a + b) ** 2 / ((a**2 / (seeds - 1) if a else 0) + (b**2 / (items - 1) if b else 0) or math.inf)
    return claim_mde(math.sqrt(a + b), df, alpha)


def measures(folder: Path, cfg: dict, domain: str, held_out: set[str]) -> dict[str, tuple[np.ndarray, float]]:
    """{measure: ([seeds x items] alr − lora differences, lora's own mean gain or rise)} on the valid split."""
    base = read_items(items_path(folder / base_file(cfg["model"]["name"], "valid.json")))
    runs = {
        m: [read_items(items_path(folder / _run_file(cfg, domain, m, s))) for s in cfg["seeds"]]
        for m in ("lora", "alr")
    }
    texts = sorted(k for k in base if k[0].removeprefix("text:") in held_out)
    items = sorted(k for k in base if k[0] == domain)
    weights = balanced_weights(base, domain)  # makes a mean of correctness the balanced accuracy
    out = {}
    for name, keys, value in (
        ("d: held-out NLL rise (nats)", texts, lambda r, b: r["nll"] - b["nll"]),
        ("g: balanced accuracy", items, lambda r, b: weights[b["id"]] * (r["acc"] - b["acc"])),
        ("g: gold NLL fall among choices (nats)", items, lambda r, b: b["choice_nll"] - r["choice_nll"]),
    ):
        mats = {m: _matrix(runs[m], base, keys, value) for m in runs}
        out[name] = (mats["alr"] - mats["lora"], float(mats["lora"].mean()))
    return out


def table(folder: Path, cfg: dict) -> str:
    protocol = load_protocol(protocol_path(cfg["eval"]))
    alpha = protocol.alpha / sum(len(c.domains) for c in protocol.family(FAMILY))
    manifest = read_json(folder / "resources" / "data" / "manifest.json")
    counts = manifest["datasets"]["general_text"]["splits"]["train"]["sources"]
    held_out = {s for s, n in counts.items() if n == 0}
    lines = [
        f"Valid-split pilot ({', '.join(cfg['domains'])}; {len(cfg['seeds'])} seeds; alr − lora). "
        f"Protocol v{protocol.version}: e = {protocol.min_effect:g} nats, m = {protocol.margin:g}; "
        f"MDE at one-sided alpha {alpha:.5f} (the paper family's first Holm step), 80% power.",
        "",
        "| domain | measure | pilot mean (alr − lora) | lora's own | seed var | item var | residual var "
        "| design (seeds × n) → MDE |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for domain in cfg["domains"]:
        for name, (d, own) in measures(folder, cfg, domain, held_out).items():
            parts = components(d)
            sizes = TEXTS if name.startswith("d") else ITEMS
            gain_bound = protocol.margin if GAIN_MEASURES.get(name) == protocol.gain_measure else None
            bound = protocol.min_effect if name.startswith("d") else gain_bound
            designs = []
            for k in SEEDS:
                for n in sizes:
                    size = mde(parts, k, n, alpha)
                    mark = "" if bound is None else (" ✓" if size < bound else " ✗")
                    designs.append(f"{k}×{n}: {size:.4f}{mark}")
            lines.append(
                f"| {domain} | {name} | {d.mean():+.4f} | {own:+.4f} | "
                f"{parts[0]:.2e} | {parts[1]:.2e} | {parts[2]:.2e} | {'; '.join(designs)} |"
            )
    lines += ["", f"✓: MDE below the protocol's bound (e for d, m for {protocol.gain_measure}); ✗: not."]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    load_plugins()  # the config's schema lists the registered methods
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", type=Path, help="the pilot's working folder (snakemake --directory)")
    parser.add_argument("--config", default="config/pilots/sizing.yaml")
    parser.add_argument("--targets", metavar="CONFIG", help="print the pilot's snakemake targets for CONFIG")
    args = parser.parse_args(argv)
    if args.targets:
        print(" ".join(targets(check_config_files([args.targets]))))
        return 0
    if args.folder is None:
        parser.error("give the pilot's folder, or --targets CONFIG")
    sys.stdout.write(table(args.folder, check_config_files([args.config])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
