"""Where a pipeline run's time goes, per job kind: `python benchmarks/time_breakdown.py [WORKDIR]`.

Reads Snakemake's per-job `benchmark:` records (`logs/benchmarks/<rule>/...tsv`: the job's wall time,
process start to exit) and each job's own timer in the file it wrote (`eval.json` / `valid.json`,
`train.json`, the importance sidecar: `wall_time_s`, the compute alone: lm-eval and the NLL pass,
the training loop, phase 1). The difference is the job's overhead: interpreter and library imports,
loading the model and data, writing the outputs. Prints one Markdown table.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
from pathlib import Path

from alr.methods.runs import run_method


def own_record(work: Path, rule: str, rel: Path) -> Path:
    """The JSON a benchmarked job wrote, from its benchmark file's path under logs/benchmarks/<rule>/."""
    parts = rel.with_suffix("").parts  # <model>/<domain>/<run>/seed0(.eval|.valid) or <model>/base.eval ...
    stem, kind = (parts[-1].split(".", 1) + [""])[:2]
    if rule == "importance":  # <model>/<estimator> or, one phase 1 per seed, <model>/seed<k>/<estimator>
        return work / "results" / parts[0] / "importance" / Path(*parts[1:-1]) / f"{stem}.json"
    return work / "results" / Path(*parts[:-1]) / stem / f"{kind or 'train'}.json"


# what a test pass scores (eval.json's `general_tasks`), as the table's rows name it
PASS = {"score": "test", "skip": "test without general tasks", "only": "general tasks alone"}


def job_kind(rule: str, tsv: Path, own: dict) -> str:
    """The table's row: the rule; fine-tunes by domain and method (a domain's size sets the steps, and
    `kl_lora` runs three passes a step), evaluations by what they score and domain (the validation split
    is a fraction of the test split's work, the general tasks about half of it)."""
    if rule == "finetune":  # <model>/<domain>/<run>/seed<k>.tsv
        return f"finetune ({tsv.parent.parent.name}, {run_method(tsv.parent.name)})"
    if rule == "evaluate":  # <model>/<domain>/<run>/seed<k>.<record>.tsv or <model>/base.<record>.tsv
        scored = "valid" if tsv.name.endswith(".valid.tsv") else PASS[own.get("general_tasks", "score")]
        domain = "base" if tsv.name.startswith("base.") else tsv.parent.parent.name
        return f"evaluate ({scored}, {domain})"
    return rule


def rows(work: Path) -> list[dict]:
    out = []
    for tsv in sorted((work / "logs" / "benchmarks").rglob("*.tsv")):
        rule = tsv.relative_to(work / "logs" / "benchmarks").parts[0]
        with open(tsv, newline="") as fh:
            record = list(csv.DictReader(fh, delimiter="\t"))[-1]
        path = own_record(work, rule, tsv.relative_to(work / "logs" / "benchmarks" / rule))
        own = json.loads(path.read_text()) if path.is_file() else {}
        compute = own.get("wall_time_s", float("nan"))
        out.append({"kind": job_kind(rule, tsv, own), "job_s": float(record["s"]), "compute_s": compute})
    return out


def table(records: list[dict]) -> str:
    lines = [
        "| job kind | jobs | job time, total (s) | median job (s) | own timer, median (s) "
        "| overhead per job, median (s) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    kinds = sorted({r["kind"] for r in records})
    for kind in kinds:
        mine = [r for r in records if r["kind"] == kind]
        job = [r["job_s"] for r in mine]
        compute = [r["compute_s"] for r in mine]
        overhead = [j - c for j, c in zip(job, compute)]
        lines.append(
            f"| {kind} | {len(mine)} | {sum(job):.0f} | {statistics.median(job):.1f} | "
            f"{statistics.median(compute):.1f} | {statistics.median(overhead):.1f} |"
        )
    lines.append(f"| all benchmarked jobs | {len(records)} | {sum(r['job_s'] for r in records):.0f} | | | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("work", nargs="?", default=".", help="the run's working directory (default: here)")
    args = parser.parse_args(argv)
    records = rows(Path(args.work))
    if not records:
        print(f"no benchmark records under {args.work}/logs/benchmarks: run the pipeline first", file=sys.stderr)
        return 2
    print(table(records))
    return 0


if __name__ == "__main__":
    sys.exit(main())
