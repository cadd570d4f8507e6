"""BIG-bench task files read straight out of the `bigbench` sdist, as multiple-choice rows."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

from ...core.examples import DataError


def read_bigbench_tasks(archive: str | Path, wanted: list[str]) -> dict[str, dict]:
    """{"task" or "task/subtask": task.json content} for the wanted names, read from the sdist."""
    found: dict[str, dict] = {}
    with tarfile.open(archive, "r:gz") as tf:
        for member in tf:
            parts = member.name.split("/")
            if not member.isfile() or parts[-1] != "task.json" or "benchmark_tasks" not in parts:
                continue
            name = "/".join(parts[parts.index("benchmark_tasks") + 1 : -1])
            if name in wanted:
                found[name] = json.load(tf.extractfile(member))
    missing = sorted(set(wanted) - set(found))
    if missing:
        raise DataError(f"BIG-bench archive {archive} has no task.json for {missing}")
    return found


def bigbench_mc(task_json: dict, name: str) -> list[dict]:
    """Multiple-choice records with a single gold answer; the task prefix (if any) leads the question."""
    prefix = task_json.get("task_prefix")
    prefix = prefix.strip() if isinstance(prefix, str) else ""
    rows = []
    for i, ex in enumerate(task_json.get("examples", [])):
        scores = ex.get("target_scores")
        if not scores:
            continue
        choices = [c.strip() for c in scores]
        values = [float(v) for v in scores.values()]
        best = max(values)
        if best <= 0 or values.count(best) != 1 or len(set(choices)) != len(choices):
            continue  # need exactly one gold answer and distinct choices
        question = ex["input"].strip()
        if prefix:
            question = f"{prefix}\n{question}"
        rows.append(
            {
                "id": f"{name.replace('/', '-')}-{i}",
                "question": question,
                "choices": choices,
                "label": values.index(best),
            }
        )
    return rows
