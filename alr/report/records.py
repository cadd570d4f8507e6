"""A run's test evaluation as the reports read it: its eval.json with, for a selected sweep point, the
general multiple-choice tasks scored apart (`alr evaluate --general-tasks only`: eval_general.json
and its items) merged in. A sweep point that selection did not choose has no general tasks: the
tables leave their columns empty for it."""

from __future__ import annotations

from pathlib import Path

from ..evaluate import general_tasks_path, items_path
from ..io import read_json
from .stats import read_items


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
