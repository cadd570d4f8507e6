"""`alr <subcommand>`: one command per pipeline step, so the package works without Snakemake.

Every command that reads the config takes `--config` (a YAML/JSON path or an inline JSON object, as
the Snakemake rules pass their config sections) and validates it before doing any work.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import logging
import os
import sys
import warnings
from pathlib import Path

from .assets.sources.fetch import FetchError
from .config import load_config
from .core.errors import ConfigError
from .importance.estimators import SI
from .plugins import load_plugins

log = logging.getLogger("alr")


def _threads(n: int | None) -> None:
    """Compute setup of every command that runs the model: CPU threads, and a GPU of ALR_GPUS if set."""
    from .core.gpu_slots import claim_gpu

    claim_gpu()
    if n:
        import torch

        torch.set_num_threads(n)


def cmd_prepare_model(args, cfg):
    from .assets.model import prepare_model

    m = prepare_model(cfg["model"], args.out, args.downloads)
    log.info("wrote %s: %s, %d parameters", args.out, m["architecture"], m["n_params"])


def cmd_prepare_data(args, cfg):
    from .assets.build import build_all
    from .assets.catalogue import data_in_use

    manifest = build_all(data_in_use(cfg), args.out, args.downloads)
    for name, entry in manifest["datasets"].items():
        log.info("%-20s %s", name, {s: v["n"] for s, v in entry["splits"].items()})


def cmd_assets(args, cfg):
    """One line per pinned artifact of the config; with --check, whether the index still serves it."""
    from .assets.sources.fetch import is_served, served_versions
    from .assets.sources.wheels import config_artifacts
    from .config import check_config_files

    artifacts = config_artifacts(check_config_files(args.files, args.replace_workflow_config))
    missing = []
    for key, spec in artifacts.items():
        what = f"{spec['package']}=={spec['version']} {spec['filename']} sha256 {spec['sha256'][:16]}..."
        if spec.get("archive"):
            state = f"local copy {spec['archive']}"
        elif not args.check:
            state = "pinned"
        elif is_served(spec["package"], spec["version"], spec["filename"]):
            state = "served"
        else:
            state = f"NOT SERVED (served versions: {', '.join(served_versions(spec['package'])) or 'none'})"
            missing.append(key)
        print(f"{key:<32} {what:<80} {state}")
    if missing:
        print(
            f"alr assets: {len(missing)} pinned artifact(s) not served: {', '.join(missing)}; pin a served version "
            "(or a local `archive`) under that key",
            file=sys.stderr,
        )
        return 1
    return 0


def cmd_prefetch(args, cfg):
    from .assets.sources.hub import prefetch

    record = prefetch(cfg, args.out)
    log.info(
        "prefetched model %s, datasets %s, lm-eval tasks %s",
        (record["model"] or {}).get("repo_id"),
        ", ".join(record["datasets"]) or "-",
        ", ".join(record["lm_eval_tasks"]) or "-",
    )


def _model_job(args, trains: bool) -> None:
    """What every model job does first: its CPU threads, its inputs re-hashed against their manifests, and
    its output folder probed for a write and for room (a training job's checkpoints and weights: up to the
    model's size; an evaluation's records: a few MiB)."""
    from .assets.verify import model_files, verify_inputs
    from .core.io import check_writable

    _threads(args.threads)
    verify_inputs(args.model_dir, args.data_dir)
    prepared = (Path(args.model_dir) / "manifest.json").is_file()  # else the command says how to build it
    weights = (
        sum(p.stat().st_size for p in model_files(args.model_dir) if p.suffix == ".safetensors") if prepared else 0
    )
    check_writable(args.out, weights if trains else 16 * 2**20)


def cmd_finetune(args, cfg):
    from .core.io import run_lock
    from .finetune.run import finetune
    from .methods.runs import resolve_run

    run = resolve_run(cfg, args.run_name)
    _model_job(args, trains=True)
    rank0 = os.environ.get("RANK", "0") == "0"  # torchrun's ranks share one --out; the group starts later
    with run_lock(args.out) if rank0 else contextlib.nullcontext():
        finetune(
            run,
            args.model_dir,
            args.data_dir,
            args.domain,
            args.seed,
            args.out,
            args.importance,
            args.init_adapter,
        )


def cmd_importance(args, cfg):
    from .importance.estimators import get_estimator

    _model_job(args, trains=True)
    get_estimator(args.estimator).record(cfg, args.model_dir, args.data_dir, args.out, args.seed)


def cmd_evaluate(args, cfg):
    from .evaluate.run import evaluate
    from .methods.runs import resolve_run

    _model_job(args, trains=False)
    if (args.run_name is None) != (args.seed is None):
        raise ConfigError("--run-name and --seed go together: the run a tuned model belongs to")
    run = None if args.run_name is None else resolve_run(cfg, args.run_name)
    rec = evaluate(
        _eval_overrides(cfg, args.limit, args.batch_size),
        args.model_dir,
        args.data_dir,
        args.domains,
        args.out,
        args.weights,
        args.delta_scale,
        run,
        args.seed,
        args.split,
        args.general_tasks,
    )
    log.info(
        "%s split: general score %s, NLL %s; domains %s",
        args.split,
        rec["general"].get("score", "-"),
        rec["general"].get("nll", "-"),
        {d: round(v["score"], 4) for d, v in rec["domains"].items()},
    )


def _eval_overrides(cfg: dict, limit: int | None, batch_size: int | None) -> dict:
    """cfg with `--limit` and `--batch-size` over eval.limit and eval.batch_size (ad-hoc runs: the workflow
    passes neither, so its records keep the config's values); eval.json records the values used."""
    given = {k: v for k, v in (("limit", limit), ("batch_size", batch_size)) if v is not None}
    return {**cfg, "eval": {**cfg["eval"], **given}} if given else cfg


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text}: must be 1 or more")
    return value


def cmd_export(args, cfg):
    from .core.io import read_json
    from .export import export_run

    run = Path(args.run_dir)
    model_dir = args.model_dir
    if model_dir is None:
        name = read_json(run / "train.json")["config"]["model"]["name"] if (run / "train.json").is_file() else "?"
        model_dir = Path("resources") / "models" / name
    out = export_run(run, model_dir, args.out, args.data_dir)
    log.info("exported %s -> %s (model card: %s)", run, out, out / "README.md")


def cmd_tasks(args, cfg):
    from .assets.catalogue import data_in_use, datasets
    from .evaluate.tasks import write_task_yamls

    data = data_in_use(cfg)
    files = {n: Path(args.data_dir) / n / "test.jsonl" for n in datasets(data, built=True)}
    builtin = datasets(data, built=False)
    tasks = list(write_task_yamls(files, args.out, builtin).values())
    if args.model_dir:
        from .core.examples import read_records
        from .core.layout import GENERAL_TEXT
        from .evaluate.text_nll import write_nll_task
        from .model.load import load_tokenizer

        texts = read_records(Path(args.data_dir) / GENERAL_TEXT / "test.jsonl", "text")
        tasks.append(write_nll_task(load_tokenizer(args.model_dir), texts, args.out))
    log.info("wrote lm-eval task YAMLs to %s: %s", args.out, ", ".join(tasks))
    if not args.model_dir:
        log.info(
            "no --model-dir: the general-text NLL task (it counts tokens with the model's tokenizer) is not written"
        )


def _runs_from_records(paths) -> list[dict]:
    """{"domain", "method" (the run name), "seed", "eval"} of each run's eval.json, from its own record."""
    from .core.examples import DataError
    from .core.io import read_json

    runs = []
    for path in paths:
        run = read_json(path).get("run")
        if not run:
            raise DataError(
                f"{path} records no run (domain, run, seed); evaluate tuned models with "
                "`alr evaluate --run-name NAME --seed N`"
            )
        runs.append({"domain": run["domain"], "method": run["run"], "seed": run["seed"], "eval": path})
    return runs


def cmd_tables(args, cfg):
    from .methods.runs import run_order
    from .report.tables import write_main_table

    runs = _runs_from_records(args.evals)
    order = run_order(cfg["methods"], {r["method"] for r in runs})
    from .core.io import read_json
    from .report.protocol import load_protocol, protocol_path

    selection = read_json(args.selection) if args.selection else None
    protocol = load_protocol(protocol_path(cfg["eval"]))
    protocol.check_decides(cfg["eval"]["compare"].get("decides"))
    log.info("claims by %s, %s", protocol.label(), protocol.path)
    table = write_main_table(
        args.base_eval,
        runs,
        order,
        cfg["eval"],
        args.out_prefix,
        args.data_dir,
        selection,
        args.efficiency_table,
        protocol,
    )
    log.info(
        "wrote %s.{csv,md,tex} (%d rows), and forgetting, power, hypervolume, claims beside it",
        args.out_prefix,
        len(table),
    )


def cmd_select(args, cfg):
    from .report.selection import select, validation_points, write_selection

    points = validation_points(args.base_valid, args.valid)
    table = select(points, cfg["eval"]["compare"]["reference"], cfg["selection"]["keep_gain"])
    record = write_selection(table, args.out_prefix, cfg["eval"]["compare"]["reference"], cfg["selection"]["keep_gain"])
    log.info("selected %s", record["selected"])


def cmd_ablation(args, cfg):
    from .report.ablation import write_ablation_table

    table = write_ablation_table(args.main_table, args.out_prefix)
    log.info("wrote %s.{csv,md,tex} (%d rows)", args.out_prefix, len(table))


def cmd_figures(args, cfg):
    from .report.figures import build_figure

    paths = build_figure(
        args.figure,
        args.out_prefix,
        args.main_table,
        args.efficiency_table,
        args.base_eval,
        _runs_from_records(args.evals),
        args.train_records,
        args.importance,
    )
    log.info("wrote %s", ", ".join(map(str, paths)))


def cmd_efficiency(args, cfg):
    from .report.efficiency import write_efficiency_table

    table = write_efficiency_table(args.sidecars, args.train_records, args.out_prefix)
    log.info("wrote %s.{csv,md,tex} (%d rows)", args.out_prefix, len(table))


def cmd_check_config(args, cfg):
    from .config import check_config_files
    from .report.protocol import load_protocol, protocol_path

    checked = check_config_files(args.files, args.replace_workflow_config)
    protocol = load_protocol(protocol_path(checked["eval"]))
    protocol.check_decides(checked["eval"]["compare"].get("decides"))
    print(
        f"configuration OK: {len(checked['methods'])} methods x {len(checked['domains'])} domains x "
        f"{len(checked['seeds'])} seeds ({', '.join(map(str, args.files)) or 'config/config.yaml'}); "
        f"claims by {protocol.label()}"
    )


def _estimator_sections(name: str) -> tuple[str, ...]:
    from .importance.estimators import get_estimator

    return get_estimator(name).keys


def _estimator_list() -> str:
    from .importance.estimators import ESTIMATORS

    width = max(map(len, ESTIMATORS))
    return "estimators (alr/importance/estimators.py):\n" + "\n".join(
        f"  {name:<{width}}  {e.description}" for name, e in ESTIMATORS.items()
    )


def _method_list() -> str:
    from .methods.registry import METHODS

    width = max(map(len, METHODS))
    return "methods (alr/methods/registry.py):\n" + "\n".join(
        f"  {name:<{width}}  {m.description}" for name, m in METHODS.items() if m.trains
    )


# The config sections each command reads; a config without one is refused before any work
# (`finetune` asks its method: `Method.config_keys`).
SECTIONS = {
    "prepare-model": lambda a: ("model",),
    "prepare-data": lambda a: ("data",),
    "prefetch": lambda a: ("model", "data"),
    "importance": lambda a: _estimator_sections(a.estimator),
    "evaluate": lambda a: ("model", "data", "eval"),
    "tasks": lambda a: ("data",),
    "tables": lambda a: ("methods", "eval"),
    "select": lambda a: ("eval", "selection"),
}


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("alr")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


_DIRS = {
    "--model-dir": "prepared model folder (resources/models/<model>, from `alr prepare-model`)",
    "--data-dir": "prepared data folder (resources/data, from `alr prepare-data`)",
}
_DOWNLOADS = (
    "where fetched packages are kept (default: the per-user cache $ALR_CACHE/downloads, else "
    "~/.cache/alr/downloads; each file is checked against its sha256 on every use)"
)


def _add_command(sub, name, func, help_, description=None, epilog=None, config=True) -> argparse.ArgumentParser:
    """A subcommand running `func`; with `config`, its required --config."""
    s = sub.add_parser(
        name,
        help=help_,
        description=description or help_[0].upper() + help_[1:] + ".",
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    if config:
        s.add_argument(
            "--config",
            required=True,
            metavar="CONFIG",
            help="a config YAML/JSON file (config/config.yaml) or an inline JSON object",
        )
    s.set_defaults(func=func)
    return s


def _add_model_and_data(s) -> None:
    for flag, text in _DIRS.items():
        s.add_argument(flag, required=True, help=text)


def _add_threads(s) -> None:
    s.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice)")


def _add_config_commands(sub) -> None:
    """check-config and assets: read config files, run no pipeline step."""
    s = _add_command(
        sub,
        "check-config",
        cmd_check_config,
        "check config files as `snakemake --configfile` would use them",
        description="Merge the files over config/config.yaml (as `snakemake --configfile` does) and "
        "validate the result;\nsyntax errors name file and line. `make run` runs it first.",
        config=False,
    )
    s.add_argument("files", nargs="*", metavar="FILE", help="config files, merged in order")
    s.add_argument(
        "--replace-workflow-config",
        action="store_true",
        help="do not start from config/config.yaml (as the snakemake flag of that name)",
    )

    s = _add_command(
        sub,
        "assets",
        cmd_assets,
        "list the registry files a config pins; --check: are they still served",
        description="List every distribution file (model wheel, data packages) the merged config pins "
        "by sha256;\n--check asks the package index whether each is still served (a listing, "
        "no download)\nand exits 1 if one is not.",
        config=False,
    )
    s.add_argument("files", nargs="*", metavar="FILE", help="config files, merged over config/config.yaml in order")
    s.add_argument("--replace-workflow-config", action="store_true", help="do not start from config/config.yaml")
    s.add_argument("--check", action="store_true", help="ask the package index whether each file is served")


def _add_prepare_commands(sub) -> None:
    """prepare-model, prepare-data and prefetch: the pipeline's inputs."""
    s = _add_command(
        sub, "prepare-model", cmd_prepare_model, "build resources/models/<name>/ from the configured model source"
    )
    s.add_argument("--out", required=True, help="output folder (resources/models/<model.name>)")
    s.add_argument("--downloads", help=_DOWNLOADS)

    s = _add_command(
        sub, "prepare-data", cmd_prepare_data, "build the canonical JSONL datasets (train/test splits) of the config"
    )
    s.add_argument("--out", required=True, help="output folder (resources/data)")
    s.add_argument("--downloads", help=_DOWNLOADS)

    s = _add_command(
        sub, "prefetch", cmd_prefetch, "download the config's hub model and datasets into the HF cache (login node)"
    )
    s.add_argument("--out", required=True, help="record of what was fetched, e.g. resources/hub/prefetch.json")


def _add_training_commands(sub) -> None:
    """finetune (phase 2) and importance (phase 1): the commands that train."""
    s = _add_command(
        sub, "finetune", cmd_finetune, "tune one method on one domain with one seed (phase 2)", epilog=_method_list()
    )
    _add_model_and_data(s)
    s.add_argument("--domain", required=True, help="a domain of data.domains")
    s.add_argument(
        "--out", required=True, help="run folder: writes model/ and train.json (results/<m>/<d>/<run>/seed<s>)"
    )
    s.add_argument(
        "--run-name",
        required=True,
        help="a method (below), or a sweep run <method>-<tag><value> (alr-lambda0.5, kl_lora-w10)",
    )
    s.add_argument("--seed", type=int, required=True, help="training seed (LoRA init, dropout, data order)")
    s.add_argument(
        "--importance",
        help="the importance .safetensors file of the method's estimator (only for methods that use one)",
    )
    s.add_argument(
        "--init-adapter", help="phase-1 adapter folder to continue from (only with regularize.phase2_init: phase1)"
    )
    _add_threads(s)

    s = _add_command(
        sub,
        "importance",
        cmd_importance,
        "record one importance file on general text (phase 1, Fisher, MAS)",
        epilog=_estimator_list(),
    )
    _add_model_and_data(s)
    s.add_argument("--estimator", default=SI, help="an estimator (below; default: %(default)s)")
    s.add_argument(
        "--out",
        required=True,
        help="importance file to write (results/<m>/importance/<estimator>.safetensors); "
        "the .json sidecar (and for SI <estimator>_adapter/) go beside it",
    )
    s.add_argument("--seed", type=int, help="phase-1 seed (default: importance.seed; SI estimators only)")
    _add_threads(s)


def _add_evaluation_commands(sub) -> None:
    """evaluate and tasks: scoring a model with lm-eval."""
    s = _add_command(sub, "evaluate", cmd_evaluate, "lm-eval general + domain tasks and general NLL -> eval.json")
    _add_model_and_data(s)
    s.add_argument("--out", required=True, help="eval.json to write (per-item records go beside it)")
    s.add_argument("--domains", nargs="+", required=True, help="domains of data.domains to evaluate")
    s.add_argument("--weights", help="tuned weights (PEFT adapter or checkpoint folder); omit for the base model")
    s.add_argument(
        "--delta-scale", type=float, default=1.0, help="scale the adapter's update (WiSE-FT beta; needs --weights)"
    )
    s.add_argument(
        "--run-name", help="the run the weights belong to (a method or <method>-<tag><value>), recorded in eval.json"
    )
    s.add_argument("--seed", type=int, help="the run's seed, recorded in eval.json (with --run-name)")
    s.add_argument(
        "--split",
        choices=["test", "valid"],
        default="test",
        help="valid: the domains' valid items and the general text's valid texts (strength selection)",
    )
    s.add_argument(
        "--general-tasks",
        choices=["score", "skip", "only"],
        default="score",
        help="the test split's general multiple-choice tasks: skip them (a sweep point selection did not choose), "
        "or score them alone (the selected point's, beside an eval.json that skipped them)",
    )
    s.add_argument(
        "--limit",
        type=_positive_int,
        help="items per task and general texts scored, over eval.limit (ad-hoc checks; scores then cover only these)",
    )
    s.add_argument(
        "--batch-size",
        type=_positive_int,
        help="lm-eval batch size, over eval.batch_size (ad-hoc runs; the scores can move with it)",
    )
    _add_threads(s)

    s = _add_command(sub, "tasks", cmd_tasks, "write the lm-eval task YAMLs (use with `lm_eval --include_path`)")
    s.add_argument("--data-dir", required=True, help=_DIRS["--data-dir"])
    s.add_argument("--out", required=True, help="folder for the task YAMLs")
    s.add_argument(
        "--model-dir",
        help=_DIRS["--model-dir"] + "; adds the general-text NLL task alr_general_nll (token counts are the model's)",
    )

    s = _add_command(
        sub,
        "export",
        cmd_export,
        "one run's weights as a folder that loads outside this repository, with a model card",
        epilog="example: alr export results/smollm2-135m-instruct/science/alr/seed0 --out alr-science-seed0\n"
        "then, from any folder: AutoPeftModelForCausalLM.from_pretrained('alr-science-seed0')",
        config=False,
    )
    s.add_argument("run_dir", metavar="RUN", help="a run folder, results/<model>/<domain>/<run>/seed<k>")
    s.add_argument("--out", required=True, help="the folder to write (alr replaces only an empty one or its own)")
    s.add_argument("--model-dir", help="the prepared base (default: resources/models/<the run's model>)")
    s.add_argument("--data-dir", default="resources/data", help="the prepared data, for the domain's source")


def _add_table_commands(sub) -> None:
    """tables, select and ablation: result tables from the runs' records."""
    s = _add_command(sub, "tables", cmd_tables, "comparison tables from eval.json files")
    s.add_argument("--base-eval", required=True, help="the base model's eval.json (results/<m>/base/eval.json)")
    s.add_argument(
        "--evals", nargs="*", default=[], help="eval.json of each run (results/<m>/<d>/<run>/seed<s>/eval.json)"
    )
    s.add_argument("--data-dir", help=_DIRS["--data-dir"] + "; adds the model-free lexical and majority rows")
    s.add_argument(
        "--selection", help="selection.json (`alr select`): the run each swept method stands for in the claims"
    )
    s.add_argument("--efficiency-table", help="efficiency.csv: the speed and storage claims")
    s.add_argument(
        "--out-prefix",
        required=True,
        help="e.g. results/tables/main (writes .csv, .md and .tex; "
        "forgetting, power, hypervolume and claims beside it)",
    )

    s = _add_command(sub, "select", cmd_select, "select each swept method's strength on the validation split")
    s.add_argument("--base-valid", required=True, help="the base model's valid.json (`alr evaluate --split valid`)")
    s.add_argument("--valid", nargs="+", required=True, help="valid.json of every swept run and of the reference")
    s.add_argument("--out-prefix", required=True, help="e.g. results/tables/selection (.csv, .md, .tex, .json)")

    s = _add_command(
        sub,
        "ablation",
        cmd_ablation,
        "ablation table (lora, alr_no_element, alr_no_layer, alr) from main.csv",
        config=False,
    )
    s.add_argument("--main-table", required=True, help="results/tables/main.csv")
    s.add_argument("--out-prefix", required=True, help="e.g. results/tables/ablation (writes .csv, .md and .tex)")


def _add_figure_commands(sub) -> None:
    """figures and efficiency: config-free commands over result files (a figure, the efficiency table)."""
    s = _add_command(sub, "figures", cmd_figures, "one paper figure (PNG + PDF) from result files", config=False)
    s.add_argument(
        "--figure",
        required=True,
        help="tradeoff, forgetting_heatmap, efficiency, layer_coefficients, "
        "importance or lambda_sweep (alr.report.figures)",
    )
    s.add_argument("--out-prefix", required=True, help="e.g. results/figures/tradeoff (writes .png and .pdf)")
    s.add_argument("--main-table", help="results/tables/main.csv (tradeoff, lambda_sweep)")
    s.add_argument("--efficiency-table", help="results/tables/efficiency.csv (efficiency)")
    s.add_argument("--base-eval", help="results/<m>/base/eval.json (forgetting_heatmap)")
    s.add_argument("--evals", nargs="*", default=[], help="runs' eval.json files (forgetting_heatmap)")
    s.add_argument("--train-records", nargs="*", default=[], help="runs' train.json files (layer_coefficients)")
    s.add_argument("--importance", help="an importance .safetensors file, its .json sidecar beside it (importance)")

    s = _add_command(
        sub,
        "efficiency",
        cmd_efficiency,
        "efficiency table from importance sidecars and train.json files",
        config=False,
    )
    s.add_argument(
        "--sidecars", nargs="+", required=True, help="importance sidecars (results/<m>/importance/<estimator>.json)"
    )
    s.add_argument("--train-records", nargs="*", default=[], help="runs' train.json files")
    s.add_argument("--out-prefix", required=True, help="e.g. results/tables/efficiency (writes .csv, .md and .tex)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="alr",
        description=__doc__.split("\n\n")[0],
        epilog="`alr COMMAND --help` describes a command; docs/pipeline.md shows the whole pipeline.",
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    p.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    p.add_argument("--debug", action="store_true", help="show the Python traceback of an error in your input too")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_config_commands(sub)
    _add_prepare_commands(sub)
    _add_training_commands(sub)
    _add_evaluation_commands(sub)
    _add_table_commands(sub)
    _add_figure_commands(sub)
    return p


def _user_error_types() -> tuple[type[Exception], ...]:
    """The exceptions that mean a mistake in the user's input: the config or the arguments
    (ConfigError), an input file (DataError, a missing file), a pinned artifact that cannot be had
    (FetchError), an importance file or checkpoints made for another run.

    Classes of modules not imported yet are left out rather than imported: such a module cannot have
    raised the error, and importing alr.importance.store would load torch on every error."""
    types = [ConfigError, FetchError, FileNotFoundError]
    for module, name in (
        ("alr.core.examples", "DataError"),
        ("alr.model.checkpoints", "CheckpointMismatchError"),
        ("alr.importance.store", "ImportanceMismatchError"),
    ):
        if module in sys.modules:
            types.append(getattr(sys.modules[module], name))
    return tuple(types)


def _out_of_memory(exc: Exception) -> bool:
    """torch running out of device memory: torch.cuda.OutOfMemoryError ("CUDA out of memory. ...")
    and the plain RuntimeError other backends raise ("MPS backend out of memory ...")."""
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc)


def _user_error(command: str, exc: Exception, out: str | None = None) -> str | None:
    """The one line `alr` prints for an error in the user's input or a failed write (a full disk, a
    read-only folder: `out` is the command's output when the error names no file); None for any other error
    (a bug), which keeps its traceback."""
    if _out_of_memory(exc):
        batch = (
            "eval.batch_size"
            if command == "evaluate"
            else "train.batch_size (a larger train.grad_accum keeps the effective batch size)"
        )
        return f"{str(exc).splitlines()[0]}; try a smaller batch size: {batch}"
    if isinstance(exc, _user_error_types()):
        return str(exc)
    if isinstance(exc, OSError) and exc.errno in WRITE_ERRNOS:
        where = exc.filename or out or "an output file"
        return f"cannot write {where}: {exc.strerror}; {WRITE_ERRNOS[exc.errno]}"
    return None


WRITE_ERRNOS = {
    errno.ENOSPC: "free some space on that disk (or point the output elsewhere) and rerun: completed outputs are kept",
    errno.EDQUOT: "your disk quota is full: free some space (or point the output elsewhere) and rerun",
    errno.EACCES: "make the folder writable (or point the output elsewhere) and rerun",
    errno.EPERM: "make the folder writable (or point the output elsewhere) and rerun",
    errno.EROFS: "that file system is read-only: point the output elsewhere and rerun",
}


def main(argv: list[str] | None = None) -> int:
    """Run one command: exit 0, or 2 with one line for a mistake in the input (with --debug, its
    traceback instead), or 3 for a loss that stopped being finite; any other error propagates."""
    from .core.sections import section

    load_plugins()  # before the parser: its help lists the registries' names
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("httpx", "httpx2"):  # one line per package-index request otherwise
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # PEFT reads transformers' deprecated `is_gradient_checkpointing` whenever it wraps a model: the same
    # FutureWarning in every job's log, about code neither alr nor its user can change
    warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
    try:
        cfg = load_config(args.config, partial=True) if hasattr(args, "config") else None
        if args.command in SECTIONS:
            section(cfg, *SECTIONS[args.command](args))
        code = args.func(args, cfg)
    except FloatingPointError as exc:  # NaN/Inf during training (alr.model.trainer.NonFiniteLossError)
        print(f"alr {args.command}: error: {exc}", file=sys.stderr)
        return 3
    except Exception as exc:
        message = _user_error(args.command, exc, getattr(args, "out", None))
        if message is None or args.debug:
            raise
        print(f"alr {args.command}: error: {message}", file=sys.stderr)
        return 2
    return code or 0


if __name__ == "__main__":
    sys.exit(main())
