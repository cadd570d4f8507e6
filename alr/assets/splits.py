"""How a dataset's items become its splits, deterministically given the data seed: one RNG per
dataset, choices shuffled (many sources list the gold first), items deduplicated by question, test
first, then valid, then train; and the check that a general task shares no item with a domain."""

from __future__ import annotations

import random
import zlib
from collections.abc import Iterable

from ..core.examples import DataError


def dataset_rng(seed: int, name: str) -> random.Random:
    # zlib.crc32 is stable across processes (unlike hash()).
    return random.Random(seed * 1_000_003 + zlib.crc32(name.encode()))


def shuffle_choices(rows: list[dict], rng: random.Random, max_choices: int | None = None) -> list[dict]:
    """Shuffle each item's choices (keeping the gold), optionally keeping gold + random distractors."""
    out = []
    for r in rows:
        choices = list(r["choices"])
        gold = choices[r["label"]]
        if max_choices and len(choices) > max_choices:
            choices = [gold] + rng.sample([c for c in choices if c != gold], max_choices - 1)
        rng.shuffle(choices)
        out.append(dict(r, choices=choices, label=choices.index(gold)))
    return out


def question_key(item: dict) -> str:
    """What makes two items the same item: the question, stripped and lower-cased."""
    return item["question"].strip().lower()


def check_tasks_disjoint(items: dict[str, list[dict]], general: Iterable[str]) -> None:
    """Refuse a general task that shares an item with a domain of the run: the forgetting measure
    would then score the very items the domain trains or tests on."""
    owner = {question_key(r): name for name, rows in items.items() if name not in general for r in rows}
    for task in general:
        shared = [r["question"] for r in items.get(task, []) if question_key(r) in owner]
        if shared:
            domain = owner[question_key({"question": shared[0]})]
            raise DataError(
                f"general task {task!r} shares {len(shared)} item(s) with domain {domain!r} "
                f"(e.g. {shared[0][:60]!r}); a general task must be disjoint from the domains: "
                f"set data.general.tasks.{task}: null, or leave {domain!r} out of `domains`"
            )


def split_items(
    rows: list[dict], rng: random.Random, test_size: int, train_size: int, valid_size: int = 0, test_only: bool = False
) -> dict[str, list[dict]]:
    """Dedupe by question and shuffle; then test = the first min(test_size, n // 2) items, valid the
    next valid_size (strength selection, carved from the training data), train the next train_size.
    `test_only` (general tasks, which nothing trains on): the first test_size items, test only."""
    seen, unique = set(), []
    for r in rows:
        key = question_key(r)
        if key not in seen:
            seen.add(key)
            unique.append(r)
    rng.shuffle(unique)
    if test_only:
        return {"test": unique[:test_size]}
    n_test = min(test_size, len(unique) // 2)
    out = {
        "test": unique[:n_test],
        "valid": unique[n_test : n_test + valid_size],
        "train": unique[n_test + valid_size : n_test + valid_size + train_size],
    }
    return out if valid_size else {k: v for k, v in out.items() if k != "valid"}
