"""Natural general text: named sources, each split into test / valid / train, disjoint by content.

The general-text splits serve two kinds of readers, which must never see the same text:
- consumers (phase-1 SI tuning, the Fisher, MAS, replay, the KL baseline) read `train`;
- measures read `test` (the forgetting metric: per-text NLL against the base model) and `valid`
  (strength selection).

Every text is keyed by `content_key` (sha256 of its whitespace-folded, lower-cased first
`KEY_CHARS` characters, i.e. about what a 128-token window sees); a key seen twice, within a source or
across sources, keeps its first text only, so no split can hold a text another split holds. A text
that is also a multiple-choice item of the run, or holds one's question (`TaskContexts`), is dropped
too: no passage may be the context of a task item the run trains or evaluates on.
"""

from __future__ import annotations

import hashlib
import logging
import random
import re
from collections.abc import Iterable

from ..core.examples import DataError, read_records

log = logging.getLogger(__name__)

KEY_CHARS = 500
CONTEXT_MIN_CHARS = 40  # shorter questions ("To make tea,") are phrases any how-to text may hold
_ENGLISH = {"the", "and", "of", "is", "was", "in", "to"}


def _fold(text: str) -> str:
    return " ".join(text.lower().split())


def content_key(text: str) -> str:
    return hashlib.sha256(_fold(text)[:KEY_CHARS].encode()).hexdigest()


class TaskContexts:
    """The multiple-choice items of a run, as a filter for general text: a text is `in` it when its
    content key is an item's question's (alone or followed by the gold answer), or when it contains an
    item's question of at least CONTEXT_MIN_CHARS characters (whitespace-folded, lower-cased)."""

    def __init__(self, items: Iterable[dict] = ()):
        self.keys = set()
        self.questions = set()
        for r in items:
            self.keys |= {content_key(r["question"]), content_key(f"{r['question']} {r['choices'][r['label']]}")}
            if len(question := _fold(r["question"])) >= CONTEXT_MIN_CHARS:
                self.questions.add(question)

    def __contains__(self, text: str) -> bool:
        if content_key(text) in self.keys:
            return True
        folded = _fold(text)
        return any(q in folded for q in self.questions)


def _clip(text: str, max_chars: int) -> str:
    """At most max_chars characters, cut at a word boundary."""
    text = text.strip()
    if len(text) <= max_chars:
        return text
    cut = text[:max_chars]
    return cut[: cut.rfind(" ")] if " " in cut else cut


def _looks_english(text: str, min_share: float = 0.15) -> bool:
    """Crude language filter: the share of a few very common English words among the words."""
    words = re.findall(r"[a-z]+", text.lower())
    return bool(words) and sum(w in _ENGLISH for w in words) / len(words) >= min_share


def bigbench_texts(task_json: dict, spec: dict) -> list[str]:
    """The `input` of each example of a BIG-bench task: the documents (gem/xsum: BBC articles,
    gem/wikilingua_en: WikiHow guides, paragraph_segmentation: Wikipedia articles, one sentence per
    line, which `join_lines` rejoins; `english_only` drops its other languages)."""
    out = []
    for ex in task_json.get("examples", []):
        text = ex.get("input")
        if not isinstance(text, str):
            continue
        if spec.get("join_lines"):
            text = " ".join(line.strip() for line in text.splitlines() if line.strip())
        if spec.get("english_only") and not _looks_english(text):
            continue
        out.append(text)
    return out


def sources(text_cfg: dict) -> dict[str, dict]:
    """The enabled sources, by name (a source set to null in a config file is switched off). Sorted,
    so the texts do not depend on the order of the config's keys (Snakemake hands its rules the config
    as JSON with sorted keys; `alr prepare-data` on a YAML file reads them in file order)."""
    return {name: spec for name, spec in sorted(text_cfg["sources"].items()) if spec}


def bigbench_tasks(text_cfg: dict) -> set[str]:
    return {s["task"] for s in sources(text_cfg).values() if s["source"] == "bigbench"}


def _fresh(texts: list[str], max_chars: int, seen: set[str]) -> list[str]:
    """The texts clipped to `max_chars`, in order, less empty ones and those whose content key is in
    `seen` (to which the kept ones' keys are added)."""
    kept = []
    for text in texts:
        text = _clip(text, max_chars)
        key = content_key(text)
        if text and key not in seen:
            seen.add(key)
            kept.append(text)
    return kept


def _apart_from_tasks(src: str, texts: list[str], tasks: TaskContexts, limit: int | None = None) -> list[str]:
    """The texts not in `tasks`, in order, at most `limit` (only the texts up to it are checked)."""
    kept, dropped = [], 0
    for text in texts:
        if limit is not None and len(kept) == limit:
            break
        if text in tasks:
            dropped += 1
        else:
            kept.append(text)
    if dropped:
        log.info("general text %s: %d texts dropped as task items or their contexts", src, dropped)
    return kept


def _user_split_texts(
    src: str, spec: dict, size: dict[str, int], max_chars: int, seen: set[str], tasks: TaskContexts
) -> dict[str, list[str]]:
    """{split: texts} of a user source given as split files (valid carved from train when not given)."""
    parts = {
        k: _apart_from_tasks(src, _fresh([r["text"] for r in read_records(spec[k], "text")], max_chars, seen), tasks)
        if k in spec
        else []
        for k in ("test", "valid", "train")
    }
    if "valid" not in spec:  # carved from the user's train file
        parts["valid"], parts["train"] = parts["train"][: size["valid"]], parts["train"][size["valid"] :]
    return parts


def _drawn_split_texts(
    src: str, texts: list[str], rng: random.Random, size: dict[str, int], tasks: TaskContexts
) -> dict[str, list[str]]:
    """{split: texts} cut from a source's fresh texts, shuffled with `rng` (in place) and rid of `tasks`."""
    rng.shuffle(texts)
    texts = _apart_from_tasks(src, texts, tasks, size["test"] + size["valid"] + size["train"])
    need = size["test"] + size["valid"] + min(size["train"], 1)
    if len(texts) < need:
        raise DataError(
            f"general text source {src!r} has {len(texts)} distinct texts apart from task "
            f"items; test_size + valid_size + at least one train text need {need}"
        )
    return {
        "test": texts[: size["test"]],
        "valid": texts[size["test"] : size["test"] + size["valid"]],
        "train": texts[size["test"] + size["valid"] :][: size["train"]],
    }


def split_sources(text_cfg: dict, texts_of, rng_for, tasks: TaskContexts | None = None) -> dict[str, list[dict]]:
    """{"test", "valid", "train": [{"id", "text", "source"}]}: per source, the passages `texts_of(name,
    spec)` are clipped to `max_chars`, deduplicated by content key (across sources too), shuffled with
    `rng_for(source)`, rid of the texts in `tasks`, and cut into test, valid and train (sizes per
    source; a source may set its own; `train_size: 0` holds a genre out of every general-data consumer);
    a user source given as split files (`train`, `test`, optional `valid`, else carved from train) is
    kept as it is, deduplicated and filtered the same way."""
    tasks = tasks or TaskContexts()
    seen: set[str] = set()
    out: dict[str, list[dict]] = {"test": [], "valid": [], "train": []}
    for src, spec in sources(text_cfg).items():
        size = {k: spec.get(f"{k}_size", text_cfg[f"{k}_size"]) for k in out}
        max_chars = spec.get("max_chars", text_cfg["max_chars"])
        if spec["source"] == "jsonl" and "train" in spec:
            parts = _user_split_texts(src, spec, size, max_chars, seen, tasks)
        else:
            texts = _fresh(texts_of(src, spec), max_chars, seen)
            parts = _drawn_split_texts(src, texts, rng_for(src), size, tasks)
        for split, texts in parts.items():
            out[split] += [{"id": f"{src}-{split}-{i}", "text": t, "source": src} for i, t in enumerate(texts)]
    return out
