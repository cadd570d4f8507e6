"""Evaluation through the lm-eval Python API plus general-text NLL; writes one fixed eval.json.

    alr evaluate --config config/config.yaml --model-dir resources/models/smollm2-135m-instruct \
        --data-dir resources/data --domains physics --weights results/.../seed0/model \
        --out results/.../seed0/eval.json

Each canonical multiple-choice split becomes a local lm-eval task (`alr_<dataset>`, cloze format:
"Question: ...\nAnswer:" scored against " <choice>"); general tasks may also be built-in lm-eval
tasks (`source: lm_eval`), optionally reading local files. lm-eval's `HFLM` (as `ContinuationHeadLM`,
which projects only the positions a request reads onto the vocabulary: alr/scored_lm.py) is given the
batch size and device directly, because `simple_evaluate` ignores them for a model object, and the
batch size is pinned in the config because lm-eval scores move with it.
"""

from __future__ import annotations

import logging
import math
import tempfile
from pathlib import Path

import yaml

from .assets import check_model_dir
from .catalogue import datasets, unknown_domains
from .data import PROMPT, read_records
from .errors import ConfigError
from .io import atomic_dir, check_replaceable, check_safetensors, sha256_file, write_json, write_jsonl
from .layout import GENERAL_TEXT
from .measure import Timer, peak_mem_mb, provenance
from .models import device, load_tuned
from .text_nll import general_text_items, nll_summary

log = logging.getLogger(__name__)
TASK_PREFIX = "alr_"
KIND = "evaluate"  # what the lm-eval files folder's ownership record names (alr.io.atomic_dir)


def text_task(source: str) -> str:
    """The per-item task name of a general-text source's held-out NLL records."""
    return f"text:{source}"


PHASE1_TEXT = "phase1_text"  # per-item task of the NLL on phase 1's own text (overlapping, the authors' protocol)


def task_name(dataset: str) -> str:
    return TASK_PREFIX + dataset


def task_config(dataset: str, data_file: str | Path) -> dict:
    """An lm-eval task definition (data only) for a canonical multiple-choice JSONL file."""
    return {
        "task": task_name(dataset),
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(Path(data_file).resolve())}},
        "output_type": "multiple_choice",
        "test_split": "test",
        "doc_to_text": PROMPT.replace("{question}", "{{question}}"),
        "doc_to_choice": "{{choices}}",
        "doc_to_target": "label",
        "metric_list": [
            {"metric": "acc", "aggregation": "mean", "higher_is_better": True},
            {"metric": "acc_norm", "aggregation": "mean", "higher_is_better": True},
        ],
        "metadata": {"version": 1.0},
    }


def builtin_task_config(dataset: str, spec: dict) -> dict | None:
    """For a built-in lm-eval task with `dataset_path`/`dataset_kwargs` overrides, a task YAML that
    `include`s the built-in one (so its prompt, choices and metrics stay lm-eval's) and reads the
    given files. None when the built-in task is used as is (from the hub or the HF datasets cache)."""
    if "dataset_path" not in spec:
        return None
    from lm_eval.tasks import TaskManager

    entry = TaskManager().task_index.get(spec["task"])
    if entry is None:
        raise ConfigError(f"lm-eval has no task named {spec['task']!r}")
    if entry.kind.name != "TASK":
        raise ConfigError(
            f"{spec['task']!r} is an lm-eval {entry.kind.name.lower()}; local files can only replace the "
            "data of a single task (prefetch a group's datasets into the HF cache instead)"
        )
    kwargs = spec.get("dataset_kwargs", {})
    splits = set(kwargs.get("data_files", {})) if isinstance(kwargs.get("data_files"), dict) else set()
    cfg = {
        "include": str(entry.yaml_path),
        "task": task_name(dataset),
        "dataset_path": spec["dataset_path"],
        "dataset_name": spec.get("dataset_name"),
        "dataset_kwargs": kwargs,
    }
    if splits:  # only the splits the files provide; zero-shot scoring needs the test split alone
        cfg.update(
            {
                f"{role}_split": (role_split if role_split in splits else None)
                for role, role_split in (("training", "train"), ("validation", "validation"))
            }
        )
        cfg["test_split"] = "test" if "test" in splits else sorted(splits)[0]
    return cfg


def write_task_yamls(
    data_files: dict[str, Path], out_dir: str | Path, builtin: dict[str, dict] | None = None
) -> dict[str, str]:
    """Write the task YAMLs; returns {dataset: lm-eval task name}."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = {}
    configs = {}
    for dataset, path in data_files.items():
        read_records(path, "mc")  # refuse malformed data before lm-eval sees it
        configs[dataset] = task_config(dataset, path)
    for dataset, spec in (builtin or {}).items():
        configs[dataset] = builtin_task_config(dataset, spec)
        names[dataset] = spec["task"]
    for dataset, cfg in configs.items():
        if cfg is None:
            continue
        with open(out_dir / f"{cfg['task']}.yaml", "w", encoding="utf-8") as fh:
            yaml.safe_dump(cfg, fh, sort_keys=False)
        names[dataset] = cfg["task"]
    return names


def _subtasks(out: dict, name: str) -> list[str]:
    """The leaf tasks of an lm-eval group (or [name] for a plain task)."""
    groups = out.get("group_subtasks", {})
    if name not in groups or not groups[name]:
        return [name]
    return [leaf for sub in groups[name] for leaf in _subtasks(out, sub)]


def run_lm_eval(
    model,
    tok,
    data_files: dict[str, Path],
    batch_size: int,
    limit: int | None,
    builtin: dict[str, dict] | None = None,
    files_dir: Path | None = None,
) -> tuple[dict, list[dict]]:
    """({dataset: {acc, acc_norm, acc_stderr, acc_norm_stderr, n}} exactly as lm-eval reports them
    (None where a task has no such metric), per-item records [{task, doc_id, id, acc, acc_norm}]);
    with `files_dir`, lm-eval's own results and samples files there too (`save_lm_eval_files`)."""
    import lm_eval
    from lm_eval.loggers import EvaluationTracker
    from lm_eval.tasks import TaskManager

    from .scored_lm import ContinuationHeadLM

    lm = ContinuationHeadLM(pretrained=model, tokenizer=tok, batch_size=batch_size, device=device())
    tracker = EvaluationTracker() if files_dir is not None else None
    with tempfile.TemporaryDirectory(prefix="alr-tasks-") as task_dir:
        names = write_task_yamls(data_files, task_dir, builtin)
        out = lm_eval.simple_evaluate(
            model=lm,
            tasks=list(names.values()),
            limit=limit,
            # indexing lm-eval's own task catalogue takes ~8 s per call on the 2-core CPU: only when needed
            task_manager=TaskManager(include_path=task_dir, include_defaults=bool(builtin)),
            log_samples=True,  # the per-item records, and lm-eval's samples files
            evaluation_tracker=tracker,
            random_seed=0,
            numpy_random_seed=1234,
            torch_random_seed=1234,
        )
    scores, items = _scores_and_items(out, names)
    if tracker is not None:
        save_lm_eval_files(tracker, out, files_dir)
    return scores, items


def _scores_and_items(out: dict, names: dict[str, str]) -> tuple[dict, list[dict]]:
    """run_lm_eval's two results, read out of simple_evaluate's output."""
    scores, items = {}, []
    for dataset, name in names.items():
        res = out["results"][name]
        leaves = _subtasks(out, name)
        scores[dataset] = {
            "task": name,
            "acc": res.get("acc,none"),
            "acc_norm": res.get("acc_norm,none"),
            "acc_stderr": res.get("acc_stderr,none"),
            "acc_norm_stderr": res.get("acc_norm_stderr,none"),
            "n": sum(int(out["n-samples"][leaf]["effective"]) for leaf in leaves),
        }
        for leaf in leaves:
            for sample in sorted(out["samples"][leaf], key=lambda x: x["doc_id"]):
                doc_id = sample["doc"].get("id") if isinstance(sample["doc"].get("id"), str) else None
                items.append(
                    {
                        "task": dataset,
                        "doc_id": sample["doc_id"],
                        "id": doc_id or f"{leaf}:{sample['doc_id']}",
                        "acc": float(sample["acc"]) if "acc" in sample else None,
                        "acc_norm": float(sample["acc_norm"]) if "acc_norm" in sample else None,
                        **({"group": sample["doc"]["group"]} if sample["doc"].get("group") is not None else {}),
                        **_gold(sample),
                    }
                )
    return scores, items


def save_lm_eval_files(tracker, out: dict, files_dir: Path) -> None:
    """lm-eval's own files, as its command line writes them with `--output_path --log_samples`
    (`results_<time>.json`, `samples_<task>_<time>.jsonl`, its EvaluationTracker), flat in `files_dir`,
    which appears whole or not at all. It consumes `out` (the tracker rewrites the samples in place)."""
    samples = out.pop("samples")
    with atomic_dir(files_dir, KIND) as tmp:
        # an output path naming a .json file keeps every file beside it, with no per-model folder
        tracker.output_path = str(tmp / "results.json")
        tracker.save_results_aggregated(results=out, samples=samples)
        for task, task_samples in samples.items():
            tracker.save_results_samples(task_name=task, samples=task_samples)
        if not list(tmp.glob("results_*.json")):  # the tracker logs a failure to save instead of raising
            raise RuntimeError(f"lm-eval's EvaluationTracker wrote no results file in {tmp}; see the log above")


def lm_eval_dir(eval_path: str | Path) -> Path:
    """lm-eval's own files beside eval.json: eval.json -> eval_lm_eval/."""
    eval_path = Path(eval_path)
    return eval_path.with_name(eval_path.stem + "_lm_eval")


def _gold(sample: dict) -> dict:
    """The gold answer of a multiple-choice sample (the answer class of the prior-robust score), its
    NLL (minus its summed log-likelihood, nats), and its NLL among the choices (minus the log of its
    softmax over the choices' summed log-likelihoods): continuous domain measures beside accuracy.
    The second ignores what raises every choice alike, such as learning the answers' vocabulary."""
    target, resps = sample.get("target"), sample.get("filtered_resps")
    if not isinstance(target, int) or not isinstance(resps, list) or not 0 <= target < len(resps):
        return {}
    ll = [float(r[0]) for r in resps]
    top = max(ll)
    log_norm = top + math.log(sum(math.exp(x - top) for x in ll))
    return {
        "gold": sample["arguments"][target][1].strip(),
        "gold_nll": -ll[target],
        "choice_nll": log_norm - ll[target],
    }


def items_path(eval_path: str | Path) -> Path:
    """Per-item correctness beside eval.json: eval.json -> eval_items.jsonl.gz."""
    eval_path = Path(eval_path)
    return eval_path.with_name(eval_path.stem + "_items.jsonl.gz")


def general_tasks_path(eval_path: str | Path) -> Path:
    """The general multiple-choice tasks scored apart (`--general-tasks only`) beside an eval.json that
    skipped them: eval.json -> eval_general.json."""
    eval_path = Path(eval_path)
    return eval_path.with_name(eval_path.stem + "_general.json")


def weights_fingerprint(weights_dir: str | Path) -> str:
    """sha256 over a weights folder's files (names and contents): ties a sweep point's eval_general.json to
    the eval.json of the same weights, so a record left by an earlier fine-tune is never merged."""
    import hashlib

    files = sorted(p for p in Path(weights_dir).rglob("*") if p.is_file())
    lines = [f"{p.relative_to(weights_dir).as_posix()} {sha256_file(p)}" for p in files]
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def task_metric(eval_cfg: dict, dataset: str) -> str:
    return eval_cfg.get("task_metrics", {}).get(dataset, eval_cfg["metric"])


def _evaluated_run(cfg: dict, domains: list[str], run: str | None, seed: int | None) -> dict | None:
    """The run a tuned model belongs to, as eval.json records it (None without `run`): its method and
    strength come from here, never from its name, in every report."""
    if run is None:
        return None
    from .runs import run_method, strength_record

    if len(domains) != 1:
        raise ConfigError(f"a run is evaluated on its own domain; got --domains {' '.join(domains)}")
    method = run_method(run)
    return {"domain": domains[0], "method": method, "run": run, "seed": seed, "strength": strength_record(run, cfg)}


def _check_arguments(cfg: dict, domains: list[str], weights_dir, delta_scale: float) -> None:
    """Refuse an unconfigured domain, and a delta scale without tuned weights."""
    unknown = unknown_domains(cfg["data"]["domains"], domains, "--domains")
    if unknown:
        raise ConfigError(unknown[0])
    if weights_dir is None and delta_scale != 1.0:
        raise ConfigError("--delta-scale scales tuned weights; without --weights (the base model) it would do nothing")


def _task_sources(cfg: dict, data_dir: Path, names: list[str], split: str) -> tuple[dict[str, dict], dict[str, Path]]:
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


def _load_model(model_dir, weights_dir, dtype: str, delta_scale: float):
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
    files_dir: Path,
) -> tuple[dict, list[dict], list[dict], list[dict]]:
    """(lm-eval scores, their per-item records, the held-out texts' NLL records, phase 1's texts' NLL records)."""
    tasks, items = run_lm_eval(model, tok, files, eval_cfg["batch_size"], eval_cfg["limit"], builtin, files_dir)
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
    run: str | None = None,
    seed: int | None = None,
    split: str = "test",
    general_tasks: str = "score",
) -> dict:
    """Score the base model, or tuned `weights_dir`; `run` and `seed` name the run it belongs to
    (recorded, so the tables never parse paths; a run is evaluated on its one domain).

    `split` "valid": the domains' valid items and the general text's valid texts only (no general
    tasks, no phase-1 text), for strength selection, which must never see a test item.
    `general_tasks` (`_scored_tasks`): "only" scores no domain and no text either. lm-eval's files
    folder beside `out_path` replaces only an empty one or this command's earlier output."""
    if split not in ("test", "valid"):
        raise ValueError(f"split must be 'test' or 'valid', got {split!r}")
    eval_cfg, data_dir = cfg["eval"], Path(data_dir)
    identity = _evaluated_run(cfg, domains, run, seed)
    general, scored = _scored_tasks(cfg, domains, split, general_tasks)
    _check_arguments(cfg, domains, weights_dir, delta_scale)
    builtin, files = _task_sources(cfg, data_dir, general + scored, split)
    _check_model(model_dir, weights_dir)
    check_replaceable(lm_eval_dir(out_path), KIND)
    phase1_too = split == "test" and bool(cfg["data"]["general"]["tasks"])
    texts = general_tasks != "only"
    held_out, phase1 = _general_texts(eval_cfg, data_dir, split, phase1_too) if texts else ([], [])
    model, tok = _load_model(model_dir, weights_dir, cfg["model"]["dtype"], delta_scale)
    with Timer() as timer:
        tasks, items, text_items, overlap_items = _run_passes(
            model, tok, eval_cfg, files, builtin, held_out, phase1, lm_eval_dir(out_path)
        )
    _set_scores(tasks, eval_cfg)
    domain_scores = {d: {"score": tasks[d]["score"], "stderr": tasks[d]["stderr"]} for d in scored}
    write_jsonl(items_path(out_path), items + text_items + overlap_items, compress=True)
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
    write_json(out_path, record)
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
