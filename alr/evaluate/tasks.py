"""lm-eval tasks of the canonical splits, and one lm-eval pass over them: its scores, its per-item
records and its own result files."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import yaml

from ..core.errors import ConfigError
from ..core.examples import PROMPT, read_records
from ..core.io import atomic_dir
from ..model.load import device
from .records import KIND

TASK_PREFIX = "alr_"


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
    model_args: str | None = None,
) -> tuple[dict, list[dict]]:
    """({dataset: {acc, acc_norm, acc_stderr, acc_norm_stderr, n}} exactly as lm-eval reports them
    (None where a task has no such metric), per-item records [{task, doc_id, id, acc, acc_norm}]);
    with `files_dir`, lm-eval's own results and samples files there too (`save_lm_eval_files`), labelled
    with `model_args` (`hflm_args`) and the batch size, as lm-eval's command line would label them."""
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
            model_args=model_args,  # a label only: the model object above is what is scored
            batch_size=batch_size,
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


def hflm_args(model_dir: str | Path, weights_dir: str | Path | None) -> str:
    """The `--model_args` of lm-eval's own `hf` model that load the model scored here: the base, and a PEFT
    adapter or a full checkpoint in its place (a WiSE-FT delta scale is recorded in eval.json only)."""
    if weights_dir is None:
        return f"pretrained={model_dir}"
    if (Path(weights_dir) / "adapter_config.json").is_file():
        return f"pretrained={model_dir},peft={weights_dir}"
    return f"pretrained={weights_dir}"


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
