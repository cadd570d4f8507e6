"""Evaluation through the lm-eval Python API plus general-text NLL; writes one fixed eval.json.

    alr evaluate --config config/config.yaml --model-dir resources/models/smollm2-135m-instruct \
        --data-dir resources/data --domains physics --weights results/.../seed0/model \
        --out results/.../seed0/eval.json

Each canonical multiple-choice split becomes a local lm-eval task (`alr_<dataset>`, cloze format:
"Question: ...\nAnswer:" scored against " <choice>"); general tasks may also be built-in lm-eval
tasks (`source: lm_eval`), optionally reading local files. lm-eval's `HFLM` (as `ContinuationHeadLM`,
which projects only the positions a request reads onto the vocabulary: alr/evaluate/scored_lm.py) is given the
batch size and device directly, because `simple_evaluate` ignores them for a model object, and the
batch size is pinned in the config because lm-eval scores move with it.
"""

from __future__ import annotations

import math
from pathlib import Path

from ..assets.catalogue import datasets, unknown_domains
from ..assets.model import check_model_dir
from ..core.errors import ConfigError
from ..core.examples import read_records
from ..core.io import check_replaceable, check_safetensors
from ..core.layout import GENERAL_TEXT
from ..core.measure import Timer, peak_mem_mb, provenance
from ..methods.runs import Run
from ..model.load import device, load_tuned
from .records import KIND, items_path, lm_eval_dir, weights_fingerprint, write_record
from .tasks import PHASE1_TEXT, hflm_args, run_lm_eval, text_task
from .text_nll import general_text_items, nll_summary


def task_metric(eval_cfg: dict, dataset: str) -> str:
    return eval_cfg.get("task_metrics", {}).get(dataset, eval_cfg["metric"])


def _evaluated_run(domains: list[str], run: Run | None, seed: int | None) -> dict | None:
    """The run a tuned model belongs to, as eval.json records it (None without `run`): its method and
    strength come from here, never from its name, in every report."""
    if run is None:
        return None
    if len(domains) != 1:
        raise ConfigError(f"a run is evaluated on its own domain; got --domains {' '.join(domains)}")
    return {
        "domain": domains[0],
        "method": run.method.name,
        "run": run.name,
        "seed": seed,
        "strength": run.strength_record(),
    }


def _check_arguments(cfg: dict, domains: list[str], weights_dir, delta_scale: float) -> None:
    """Refuse an unconfigured domain, and a delta scale without tuned weights."""
    unknown = unknown_domains(cfg["data"]["domains"], domains, "--domains")
    if unknown:
        raise ConfigError(unknown[0])
    if weights_dir is None and delta_scale != 1.0:
        raise ConfigError("--delta-scale scales tuned weights; without --weights (the base model) it would do nothing")


def task_sources(cfg: dict, data_dir: Path, names: list[str], split: str) -> tuple[dict[str, dict], dict[str, Path]]:
    """(built-in lm-eval tasks {dataset: spec}, canonical split files {dataset: path}) of the datasets
    `names`; every split file is read, so a bad one is refused before the model loads."""
    lm_eval_tasks = datasets(cfg["data"], built=False)
    builtin = {d: lm_eval_tasks[d] for d in names if d in lm_eval_tasks}
    if split == "valid" and builtin:
        raise ConfigError(f"{sorted(builtin)}: built-in lm-eval tasks have no valid split of ours")
    files = {d: data_dir / d / f"{split}.jsonl" for d in names if d not in builtin}
    for path in files.values():
        read_records(path, "mc")
    return builtin, files


def _check_model(model_dir, weights_dir) -> None:
    check_model_dir(model_dir)
    if weights_dir is not None and not Path(weights_dir).is_dir():
        raise FileNotFoundError(f"tuned weights {weights_dir} do not exist; build them with `alr finetune`")
    for weights in sorted(Path(weights_dir).glob("*.safetensors")) if weights_dir is not None else []:
        check_safetensors(weights, "alr finetune")


def _general_texts(eval_cfg: dict, data_dir: Path, split: str, phase1_too: bool) -> tuple[list[dict], list[dict]]:
    """(the general text's held-out texts of `split`, phase 1's own texts or [] without `phase1_too`),
    each cut to eval.limit when set."""
    held_out = read_records(data_dir / GENERAL_TEXT / f"{split}.jsonl", "text")
    # the authors' protocol: the text phase 1 tuned on (its first records), labelled as overlapping
    phase1 = (
        read_records(data_dir / GENERAL_TEXT / "train.jsonl", "text")[: eval_cfg["phase1_texts"]] if phase1_too else []
    )
    if eval_cfg["limit"]:
        held_out, phase1 = held_out[: eval_cfg["limit"]], phase1[: eval_cfg["limit"]]
    return held_out, phase1


def load_scoring_model(model_dir, weights_dir, dtype: str, delta_scale: float):
    """The model to score, on the device, and its tokenizer padding on the right."""
    model, tok = load_tuned(model_dir, weights_dir, dtype, delta_scale)
    model.to(device())
    if tok.padding_side != "right":
        tok.padding_side = "right"
    return model, tok


def _run_passes(
    model,
    tok,
    eval_cfg: dict,
    files: dict[str, Path],
    builtin: dict[str, dict],
    held_out: list[dict],
    phase1: list[dict],
    lm_eval_files: tuple[Path, str],
) -> tuple[dict, list[dict], list[dict], list[dict]]:
    """(lm-eval scores, their per-item records, the held-out texts' NLL records, phase 1's texts' NLL records).
    `lm_eval_files`: (the folder of lm-eval's own files, the model arguments that label them)."""
    tasks, items = run_lm_eval(model, tok, files, eval_cfg["batch_size"], eval_cfg["limit"], builtin, *lm_eval_files)
    text_items = general_text_items(
        model, tok, held_out, lambda r: text_task(r.get("source", "text")), eval_cfg["nll_max_length"]
    )
    overlap_items = general_text_items(model, tok, phase1, lambda r: PHASE1_TEXT, eval_cfg["nll_max_length"])
    return tasks, items, text_items, overlap_items


def _set_scores(tasks: dict, eval_cfg: dict) -> None:
    """Give each task its metric (eval.task_metrics, else eval.metric), and that metric's value and stderr
    as its score and stderr."""
    for name, t in tasks.items():
        t["metric"] = task_metric(eval_cfg, name)
        if t[t["metric"]] is None:
            raise ConfigError(f"lm-eval task {t['task']!r} reports no {t['metric']!r}; set eval.task_metrics.{name}")
        t["score"] = t[t["metric"]]
        t["stderr"] = t[f"{t['metric']}_stderr"]


def _general_summary(tasks: dict, general: list[str], text_items: list[dict], overlap_items: list[dict]) -> dict:
    """eval.json's "general": the general tasks' mean score and its stderr (when there are general
    tasks), the held-out NLL (when scored), and phase 1's text's NLL (when scored)."""
    score = (
        {
            "score": sum(tasks[t]["score"] for t in general) / len(general),
            "stderr": math.sqrt(sum(tasks[t]["stderr"] ** 2 for t in general)) / len(general),
        }
        if general
        else {}
    )
    return {
        **score,
        "tasks": general,
        **(nll_summary(text_items) if text_items else {}),
        **(
            {"phase1_text": {k: v for k, v in nll_summary(overlap_items).items() if k != "sources"}}
            if overlap_items
            else {}
        ),
    }


GENERAL_TASKS = ("score", "skip", "only")  # `alr evaluate --general-tasks`


def _scored_tasks(cfg: dict, domains: list[str], split: str, general_tasks: str) -> tuple[list[str], list[str]]:
    """(general multiple-choice tasks, domains) a pass scores. `general_tasks` "skip": no general tasks
    (a sweep point that selection did not choose: no table reads them); "only": those tasks alone, for
    the selected point, whose own pass skipped them."""
    if general_tasks not in GENERAL_TASKS:
        raise ValueError(f"general_tasks must be one of {GENERAL_TASKS}, got {general_tasks!r}")
    configured = list(cfg["data"]["general"]["tasks"]) if split == "test" else []
    if general_tasks == "only" and not configured:
        raise ConfigError(
            "--general-tasks only scores the general multiple-choice tasks of the test split: use --split test "
            "with data.general.tasks configured"
        )
    return ([] if general_tasks == "skip" else configured), ([] if general_tasks == "only" else list(domains))


def evaluate(
    cfg: dict,
    model_dir: str | Path,
    data_dir: str | Path,
    domains: list[str],
    out_path: str | Path,
    weights_dir: str | Path | None = None,
    delta_scale: float = 1.0,
    run: Run | None = None,
    seed: int | None = None,
    split: str = "test",
    general_tasks: str = "score",
) -> dict:
    """Score the base model, or tuned `weights_dir`; `run` (alr.methods.runs.resolve_run) and `seed` name
    the run it belongs to (recorded, so the tables never parse paths; a run is evaluated on its one domain).

    `split` "valid": the domains' valid items and the general text's valid texts only (no general
    tasks, no phase-1 text), for strength selection, which must never see a test item.
    `general_tasks` (`_scored_tasks`): "only" scores no domain and no text either. lm-eval's files
    folder beside `out_path` replaces only an empty one or this command's earlier output."""
    if split not in ("test", "valid"):
        raise ValueError(f"split must be 'test' or 'valid', got {split!r}")
    eval_cfg, data_dir = cfg["eval"], Path(data_dir)
    identity = _evaluated_run(domains, run, seed)
    general, scored = _scored_tasks(cfg, domains, split, general_tasks)
    _check_arguments(cfg, domains, weights_dir, delta_scale)
    builtin, files = task_sources(cfg, data_dir, general + scored, split)
    _check_model(model_dir, weights_dir)
    check_replaceable(lm_eval_dir(out_path), KIND)
    phase1_too = split == "test" and bool(cfg["data"]["general"]["tasks"])
    texts = general_tasks != "only"
    held_out, phase1 = _general_texts(eval_cfg, data_dir, split, phase1_too) if texts else ([], [])
    model, tok = load_scoring_model(model_dir, weights_dir, cfg["model"]["dtype"], delta_scale)
    lm_eval_files = (lm_eval_dir(out_path), hflm_args(model_dir, weights_dir))
    with Timer() as timer:
        passes = _run_passes(model, tok, eval_cfg, files, builtin, held_out, phase1, lm_eval_files)
    tasks, items, text_items, overlap_items = passes
    _set_scores(tasks, eval_cfg)
    domain_scores = {d: {"score": tasks[d]["score"], "stderr": tasks[d]["stderr"]} for d in scored}
    record = {
        "run": identity,
        "weights": str(weights_dir) if weights_dir else None,
        "delta_scale": delta_scale,
        "tasks": tasks,
        "split": split,
        "general_tasks": general_tasks,
        **({"weights_sha256": weights_fingerprint(weights_dir)} if general_tasks != "score" and weights_dir else {}),
        "general": _general_summary(tasks, general, text_items, overlap_items),
        "domain": {"name": scored[0], **domain_scores[scored[0]]} if len(scored) == 1 else None,
        "domains": domain_scores,
        **_record_tail(eval_cfg, out_path, timer.seconds),
        "provenance": provenance({k: cfg[k] for k in ("model", "data", "eval") if k in cfg}),
    }
    write_record(out_path, record, items + text_items + overlap_items)
    return record


def _record_tail(eval_cfg: dict, out_path: str | Path, seconds: float) -> dict:
    """eval.json's files, lm-eval settings, timer and peak memory."""
    import lm_eval

    return {
        "items": items_path(out_path).name,
        "lm_eval_files": lm_eval_dir(out_path).name,
        "lm_eval": {
            "version": lm_eval.__version__,
            "batch_size": eval_cfg["batch_size"],
            "limit": eval_cfg["limit"],
            "log_samples": True,
        },
        "wall_time_s": round(seconds, 3),
        "peak_mem_mb": peak_mem_mb(),
    }
