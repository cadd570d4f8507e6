"""Hugging Face hub assets (config/paper.yaml): canonical records from hub datasets, and `prefetch`.

    alr prefetch --config config/paper.yaml --out resources/hub/prefetch.json

`prefetch` runs once on a machine with internet (a cluster's login node): it downloads the model
(`model.source.type: hub`), every hub dataset (`source: hub`) and the data of every built-in lm-eval
task (`source: lm_eval`) into the Hugging Face cache (`HF_HOME`, set from `hub.cache` by the
workflow), and records what it fetched. Every other job then reads the cache offline.

Hub multiple-choice datasets are mapped to canonical records by `format`; the listed HF `splits`
are pooled and split into test/train like every other dataset (alr.assets.build).
"""

from __future__ import annotations

import logging
from pathlib import Path

from ...core.io import write_json

log = logging.getLogger(__name__)


def _sciq(r):
    return r["question"], [r["correct_answer"], r["distractor1"], r["distractor2"], r["distractor3"]], 0


def _medmcqa(r):
    return r["question"], [r["opa"], r["opb"], r["opc"], r["opd"]], r["cop"]


def _pubmedqa(r):
    context = " ".join(r["context"]["contexts"])
    return f"{context}\n{r['question']}", ["yes", "no", "maybe"], ["yes", "no", "maybe"].index(r["final_decision"])


def _piqa(r):
    return r["goal"], [r["sol1"], r["sol2"]], r["label"]


FORMATS = {"sciq": _sciq, "medmcqa": _medmcqa, "pubmedqa": _pubmedqa, "piqa": _piqa}


# `datasets` builders that read local files (`dataset_kwargs: {data_files: ...}`) instead of a hub repo;
# without data_files they would scan the working directory
FILE_BUILDERS = ("json", "csv", "parquet", "text", "arrow", "pandas")


def reads_local_files(spec: dict) -> bool:
    return spec.get("dataset_path") in FILE_BUILDERS


def local_file_problems(where: str, spec: dict) -> list[str]:
    """Config problems of a `source: hub` dataset that reads local files (config cross-checks)."""
    if not reads_local_files(spec):
        return []
    files = (spec.get("dataset_kwargs") or {}).get("data_files")
    if not files:
        return [
            f"config key '{where}': dataset_path {spec['dataset_path']!r} reads local files; name them in "
            f"dataset_kwargs: {{data_files: {{train: path/to/file}}}} (without it `datasets` would scan the "
            "working directory)"
        ]
    paths = (
        [files]
        if isinstance(files, str)
        else [
            p
            for v in (files.values() if isinstance(files, dict) else files)
            for p in ([v] if isinstance(v, str) else v)
        ]
    )
    return [
        f"config key '{where}.dataset_kwargs.data_files': {p} does not exist" for p in paths if not Path(p).exists()
    ]


def _load(spec: dict, split: str):
    import datasets

    return datasets.load_dataset(
        spec["dataset_path"],
        spec.get("dataset_name"),
        split=split,
        revision=spec.get("revision"),
        **spec.get("dataset_kwargs", {}),
    )


def hub_mc_rows(name: str, spec: dict) -> list[dict]:
    """Canonical multiple-choice records of a hub dataset (items without a valid label are skipped)."""
    convert = FORMATS[spec["format"]]
    rows = []
    for split in spec.get("splits", ["train"]):
        for i, r in enumerate(_load(spec, split)):
            question, choices, label = convert(r)
            if not isinstance(label, int) or not 0 <= label < len(choices) or len(set(choices)) != len(choices):
                continue  # unlabelled test items (label -1) and items with duplicate choices
            rows.append(
                {
                    "id": f"{name}-{split}-{i}",
                    "question": question.strip(),
                    "choices": [c.strip() for c in choices],
                    "label": label,
                }
            )
    return rows


def hub_texts(spec: dict) -> list[dict]:
    """Text records from a hub dataset's `field` (phase-1 general text)."""
    return [
        {"id": f"general-{i}", "text": r[spec["field"]]}
        for i, r in enumerate(_load(spec, spec.get("split", "train")))
        if isinstance(r[spec["field"]], str) and r[spec["field"]].strip()
    ]


# other frameworks' weights and Meta's original checkpoint (original/*.pth, another 16 GB) are not needed
MODEL_IGNORE = ["original/*", "*.msgpack", "*.h5", "*.ot", "*.onnx", "flax_*", "tf_*"]


def model_snapshot(repo_id: str, revision: str | None, local_only: bool = False) -> Path:
    """The model's snapshot folder in the Hugging Face cache, downloaded unless `local_only` (or
    HF_HUB_OFFLINE); a revision missing from the cache offline is one clear FileNotFoundError."""
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        path = snapshot_download(repo_id, revision=revision, local_files_only=local_only, ignore_patterns=MODEL_IGNORE)
    except LocalEntryNotFoundError:
        raise FileNotFoundError(
            f"model {repo_id}@{revision or 'main'} is not in the Hugging Face cache {constants.HF_HUB_CACHE}; fill it "
            "with `alr prefetch` (snakemake runs it first) on a machine that reaches the hub"
        ) from None
    return Path(path)


def hub_assets(cfg: dict) -> dict:
    """What a config needs from the hub: {"model": repo or None, "datasets": [...], "lm_eval_tasks": [...]}."""
    data = cfg["data"]
    from ..catalogue import datasets

    specs = datasets(data)
    hub = [dict(s, name=n) for n, s in specs.items() if s["source"] == "hub" and not reads_local_files(s)]
    from ..general_text import sources

    hub += [
        dict(s, name=f"general_text/{n}") for n, s in sources(data["general"]["text"]).items() if s["source"] == "hub"
    ]
    source = cfg["model"]["source"]
    return {
        "model": source if source["type"] == "hub" else None,
        "datasets": hub,
        "lm_eval_tasks": sorted(
            {s["task"] for s in specs.values() if s["source"] == "lm_eval" and "dataset_path" not in s}
        ),
    }


def prefetch(cfg: dict, out_path) -> dict:
    """Download every hub asset of the config into the HF cache; write a record of them to out_path."""
    assets = hub_assets(cfg)
    record = {"model": None, "datasets": {}, "lm_eval_tasks": assets["lm_eval_tasks"]}
    if assets["model"]:
        src = assets["model"]
        path = model_snapshot(src["repo_id"], src.get("revision"))
        record["model"] = {"repo_id": src["repo_id"], "revision": src.get("revision"), "path": str(path)}
        log.info("model %s -> %s", src["repo_id"], path)
    for spec in assets["datasets"]:
        splits = spec.get("splits") or [spec.get("split", "train")]
        record["datasets"][spec["name"]] = {s: len(_load(spec, s)) for s in splits}
        log.info("dataset %s (%s): %s", spec["name"], spec["dataset_path"], record["datasets"][spec["name"]])
    if assets["lm_eval_tasks"]:
        from lm_eval.tasks import TaskManager, get_task_dict

        get_task_dict(assets["lm_eval_tasks"], TaskManager())  # builds each task, which downloads its data
        log.info("lm-eval tasks cached: %s", ", ".join(assets["lm_eval_tasks"]))
    write_json(out_path, record)
    return record
