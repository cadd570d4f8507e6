"""`alr <subcommand>`: one command per pipeline step, so the package works without Snakemake.

Every command takes `--config` (a YAML/JSON path or an inline JSON object, as the Snakemake rules
pass their config sections) and validates it before doing any work.
"""
from __future__ import annotations

import argparse
import logging
import re
import sys
from pathlib import Path

from .config import ConfigError, load_config

log = logging.getLogger("alr")


def _threads(n: int | None) -> None:
    """Compute setup of every command that runs the model: CPU threads, and a GPU of ALR_GPUS if set."""
    from .gpu_slots import claim_gpu

    claim_gpu()
    if n:
        import torch

        torch.set_num_threads(n)


def cmd_prepare_model(args, cfg):
    from .assets import prepare_model

    m = prepare_model(cfg["model"], args.out, args.downloads)
    log.info("wrote %s: %s, %d parameters", args.out, m["architecture"], m["n_params"])


def cmd_prepare_data(args, cfg):
    from .build_data import build_all
    from .fetch import fetch_distribution
    from .io import sha256_file

    bb = cfg["data"]["bigbench"]
    specs = {**cfg["data"]["general"]["tasks"], **cfg["data"]["domains"]}
    if not any(s["source"] == "bigbench" for s in specs.values()):
        archive = None  # e.g. config/paper.yaml: every dataset comes from the hub
    elif bb.get("archive"):
        archive, actual = bb["archive"], sha256_file(bb["archive"])
        if actual != bb["sha256"]:
            raise ValueError(f"{archive} has sha256 {actual}, but data.bigbench.sha256 pins {bb['sha256']}")
    else:
        archive = fetch_distribution("bigbench", bb["version"], bb["filename"], bb["sha256"], args.downloads)
    manifest = build_all(cfg["data"], archive, args.out)
    for name, entry in manifest["datasets"].items():
        log.info("%-20s %s", name, {s: v["n"] for s, v in entry["splits"].items()})


def cmd_prefetch(args, cfg):
    from .hub import prefetch

    record = prefetch(cfg, args.out)
    log.info("prefetched model %s, datasets %s, lm-eval tasks %s", (record["model"] or {}).get("repo_id"),
             ", ".join(record["datasets"]) or "-", ", ".join(record["lm_eval_tasks"]) or "-")


def cmd_finetune(args, cfg):
    from .runs import parse_run, run_config
    from .train import finetune

    _threads(args.threads)
    finetune(run_config(cfg, args.method), args.model_dir, args.data_dir, args.domain, parse_run(args.method)[0],
             args.seed, args.out, args.importance, args.init_adapter)


def cmd_importance(args, cfg):
    from .importance.record import record_importance

    _threads(args.threads)
    record_importance(cfg, args.model_dir, args.data_dir, args.out, args.seed, args.full)


def cmd_evaluate(args, cfg):
    from .evaluate import evaluate

    _threads(args.threads)
    rec = evaluate(cfg, args.model_dir, args.data_dir, args.domains, args.out, args.weights, args.delta_scale)
    log.info("general score %.4f, NLL %.4f; domains %s", rec["general"]["score"], rec["general"]["nll"],
                 {d: round(v["score"], 4) for d, v in rec["domains"].items()})


def cmd_tasks(args, cfg):
    from .evaluate import write_task_yamls

    specs = {**cfg["data"]["general"]["tasks"], **cfg["data"]["domains"]}
    files = {n: Path(args.data_dir) / n / "test.jsonl" for n, s in specs.items() if s["source"] != "lm_eval"}
    builtin = {n: s for n, s in specs.items() if s["source"] == "lm_eval"}
    tasks = write_task_yamls(files, args.out, builtin)
    log.info("wrote lm-eval task YAMLs to %s: %s", args.out, ", ".join(tasks.values()))


def cmd_fisher(args, cfg):
    from .importance.record import record_fisher

    _threads(args.threads)
    record_fisher(cfg, args.model_dir, args.data_dir, args.out, args.scope)


def cmd_mas(args, cfg):
    from .importance.record import record_mas

    _threads(args.threads)
    record_mas(cfg, args.model_dir, args.data_dir, args.out)


_RUN_PATH = re.compile(r"(?P<domain>[^/]+)/(?P<method>[^/]+)/seed(?P<seed>\d+)/eval\.json$")


def _runs_from_paths(paths) -> list[dict]:
    runs = []
    for path in paths:
        m = _RUN_PATH.search(Path(path).as_posix())
        if not m:
            raise SystemExit(f"error: {path} does not look like results/<model>/<domain>/<method>/seed<N>/eval.json")
        runs.append({"domain": m["domain"], "method": m["method"], "seed": int(m["seed"]), "eval": path})
    return runs


def cmd_tables(args, cfg):
    from .report.tables import write_main_table
    from .runs import all_runs

    runs = _runs_from_paths(args.evals)
    order = all_runs(cfg) if "regularize" in cfg else cfg["methods"]
    table = write_main_table(args.base_eval, runs, order, cfg["eval"], args.out_prefix)
    log.info("wrote %s.{csv,md,tex} (%d rows)", args.out_prefix, len(table))


def cmd_ablation(args, cfg):
    from .report.ablation import write_ablation_table

    table = write_ablation_table(args.main_table, args.out_prefix)
    log.info("wrote %s.{csv,md,tex} (%d rows)", args.out_prefix, len(table))


def cmd_figures(args, cfg):
    from .report.figures import build_figure

    paths = build_figure(args.figure, args.out_prefix, args.main_table, args.efficiency_table, args.base_eval,
                         _runs_from_paths(args.evals), args.train_records, args.importance)
    log.info("wrote %s", ", ".join(map(str, paths)))


def cmd_efficiency(args, cfg):
    from .report.efficiency import write_efficiency_table

    table = write_efficiency_table(args.sidecars, args.train_records, args.out_prefix)
    log.info("wrote %s.{csv,md,tex} (%d rows)", args.out_prefix, len(table))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="alr", description=__doc__.splitlines()[0])
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="command", required=True)

    def add(name, func, help_):
        s = sub.add_parser(name, help=help_)
        s.add_argument("--config", required=True, help="config YAML/JSON path or inline JSON")
        s.set_defaults(func=func)
        return s

    s = add("prepare-model", cmd_prepare_model, "build resources/models/<name>/ from the configured source")
    s.add_argument("--out", required=True)
    s.add_argument("--downloads", default="resources/downloads")

    s = add("prepare-data", cmd_prepare_data, "build the canonical JSONL datasets")
    s.add_argument("--out", required=True)
    s.add_argument("--downloads", default="resources/downloads")

    s = add("prefetch", cmd_prefetch, "download the config's hub model and datasets into the HF cache (login node)")
    s.add_argument("--out", required=True, help="record of what was fetched, e.g. resources/hub/prefetch.json")

    s = add("finetune", cmd_finetune, "tune one method on one domain with one seed")
    for flag in ("--model-dir", "--data-dir", "--domain", "--out"):
        s.add_argument(flag, required=True)
    s.add_argument("--method", required=True, help="a method, or a sweep run <method>-lambda<value> (alr.runs)")
    s.add_argument("--seed", type=int, required=True)
    s.add_argument("--importance", help="importance file (.safetensors) for regularised methods")
    s.add_argument("--init-adapter", help="phase-1 adapter to continue from (regularize.phase2_init: phase1)")
    s.add_argument("--threads", type=int)

    s = add("importance", cmd_importance, "phase 1: SI importance from LoRA tuning on general text")
    for flag in ("--model-dir", "--data-dir", "--out"):
        s.add_argument(flag, required=True)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--full", action="store_true", help="full fine-tuning phase 1 (importance of every parameter)")
    s.add_argument("--threads", type=int)

    s = add("evaluate", cmd_evaluate, "lm-eval general + domain tasks and general NLL -> eval.json")
    for flag in ("--model-dir", "--data-dir", "--out"):
        s.add_argument(flag, required=True)
    s.add_argument("--domains", nargs="+", required=True)
    s.add_argument("--weights", help="tuned weights (PEFT adapter or checkpoint dir); omit for the base model")
    s.add_argument("--delta-scale", type=float, default=1.0, help="scale the adapter's update (WiSE-FT beta)")
    s.add_argument("--threads", type=int)

    s = add("fisher", cmd_fisher, "EWC-LoRA baseline: per-sample diagonal Fisher on general text")
    for flag in ("--model-dir", "--data-dir", "--out"):
        s.add_argument(flag, required=True)
    s.add_argument("--scope", choices=["full", "adapted"], default="full")
    s.add_argument("--threads", type=int)

    s = add("mas", cmd_mas, "MAS importance on the adapted modules from general text")
    for flag in ("--model-dir", "--data-dir", "--out"):
        s.add_argument(flag, required=True)
    s.add_argument("--threads", type=int)

    s = add("tasks", cmd_tasks, "write the lm-eval task YAMLs (use with `lm_eval --include_path`)")
    s.add_argument("--data-dir", required=True)
    s.add_argument("--out", required=True)

    s = add("tables", cmd_tables, "comparison tables from eval.json files")
    s.add_argument("--base-eval", required=True)
    s.add_argument("--evals", nargs="*", default=[])
    s.add_argument("--out-prefix", required=True, help="e.g. results/tables/main (writes .csv, .md and .tex)")

    s = add("ablation", cmd_ablation, "ablation table (lora, alr_no_element, alr_no_layer, alr) from main.csv")
    s.add_argument("--main-table", required=True, help="results/tables/main.csv")
    s.add_argument("--out-prefix", required=True)

    s = add("figures", cmd_figures, "one paper figure (PNG + PDF) from result files")
    s.add_argument("--figure", required=True, help="tradeoff, forgetting_heatmap, efficiency, layer_coefficients, "
                                                  "importance or lambda_sweep (alr.report.figures)")
    s.add_argument("--out-prefix", required=True, help="e.g. results/figures/tradeoff (writes .png and .pdf)")
    s.add_argument("--main-table")
    s.add_argument("--efficiency-table")
    s.add_argument("--base-eval")
    s.add_argument("--evals", nargs="*", default=[])
    s.add_argument("--train-records", nargs="*", default=[])
    s.add_argument("--importance", help="an importance .safetensors file (its .json sidecar beside it)")

    s = add("efficiency", cmd_efficiency, "efficiency table from importance sidecars and train.json files")
    s.add_argument("--sidecars", nargs="+", required=True)
    s.add_argument("--train-records", nargs="*", default=[])
    s.add_argument("--out-prefix", required=True)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        cfg = load_config(args.config, partial=True)
        args.func(args, cfg)
    except (ConfigError, FileNotFoundError, ValueError) as exc:  # bad input: refused before expensive work
        print(f"alr {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except FloatingPointError as exc:  # NaN/Inf during training (alr.train.NonFiniteLossError)
        print(f"alr {args.command}: error: {exc}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
