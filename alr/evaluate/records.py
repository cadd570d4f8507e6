"""The eval record: the files an evaluation writes beside eval.json, their names, their writer and
their readers, shared by `alr evaluate` and the reports."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

from ..core.io import read_json, sha256_file, write_json, write_jsonl

KIND = "evaluate"  # what the lm-eval files folder's ownership record names (alr.core.io.atomic_dir)


def lm_eval_dir(eval_path: str | Path) -> Path:
    """lm-eval's own files beside eval.json: eval.json -> eval_lm_eval/."""
    eval_path = Path(eval_path)
    return eval_path.with_name(eval_path.stem + "_lm_eval")


def items_path(eval_path: str | Path) -> Path:
    """Per-item correctness beside eval.json: eval.json -> eval_items.jsonl.gz."""
    eval_path = Path(eval_path)
    return eval_path.with_name(eval_path.stem + "_items.jsonl.gz")


def general_tasks_path(eval_path: str | Path) -> Path:
    """The general multiple-choice tasks scored apart (`--general-tasks only`) beside an eval.json that
    skipped them: eval.json -> eval_general.json."""
    eval_path = Path(eval_path)
    return eval_path.with_name(eval_path.stem + "_general.json")


def write_record(eval_path: str | Path, record: dict, items: list[dict]) -> None:
    """An evaluation's per-item records, then its eval.json: the record appears last, so an eval.json
    always has its items beside it."""
    write_jsonl(items_path(eval_path), items, compress=True)
    write_json(eval_path, record)


def weights_fingerprint(weights_dir: str | Path) -> str:
    """sha256 over a weights folder's files (names and contents): ties a sweep point's eval_general.json to
    the eval.json of the same weights, so a record left by an earlier fine-tune is never merged."""
    files = sorted(p for p in Path(weights_dir).rglob("*") if p.is_file())
    lines = [f"{p.relative_to(weights_dir).as_posix()} {sha256_file(p)}" for p in files]
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def read_items(path: str | Path) -> dict[tuple[str, str], dict]:
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh]
    return {(r["task"], r["id"]): r for r in rows}


def _apart(eval_path: str | Path, record: dict) -> dict | None:
    """The record of eval_general.json beside an eval.json that skipped the general tasks, when it exists
    and scored the same weights (one left by an earlier fine-tune of a strength no longer selected is not)."""
    path = general_tasks_path(eval_path)
    if record.get("general_tasks") != "skip" or not path.is_file():
        return None
    general = read_json(path)
    return general if general.get("weights_sha256") == record.get("weights_sha256") else None


def read_eval(eval_path: str | Path) -> dict:
    record = read_json(eval_path)
    general = _apart(eval_path, record)
    if general is None:
        return record
    return {
        **record,
        "tasks": {**record["tasks"], **general["tasks"]},
        "general": {**record["general"], **general["general"]},
        "general_tasks": "score",
    }


def read_eval_items(eval_path: str | Path) -> dict[tuple[str, str], dict]:
    """eval.json's per-item records, and those of eval_general.json when `read_eval` merges it."""
    items = read_items(items_path(eval_path))
    if _apart(eval_path, read_json(eval_path)) is None:
        return items
    return {**items, **read_items(items_path(general_tasks_path(eval_path)))}


def scores_general_tasks(record: dict) -> bool:
    """Whether an evaluation (as `read_eval` gives it) holds the general multiple-choice tasks."""
    return bool(record["general"]["tasks"])
