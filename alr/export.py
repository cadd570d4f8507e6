"""`alr export`: one run's tuned weights as a folder that stands alone outside this repository.

A run folder's `model/` is what PEFT wrote during the run: its `adapter_config.json` names the base by the
path it was loaded from (`resources/models/<name>`, relative to the work folder) and its README is PEFT's
blank template. The export copies the weights and names the base so that
`AutoPeftModelForCausalLM.from_pretrained(folder)` finds it from any working folder: the hub repo id and
commit for a model prepared from the hub, else the base folder's absolute path (its manifest's hashes are
in `alr_run.json`, so a moved or rebuilt base can be told apart). The model card says what the weights are:
method and strength, domain and its data source, seed, alr's version and commit, the base's provenance, and
the run's scores with 95% intervals.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from .core.io import OWNER_RECORD, atomic_dir, check_replaceable, read_json, write_json

KIND = "alr export"
CARD = "README.md"


def base_reference(model_dir: str | Path) -> tuple[str, str | None]:
    """(what `base_model_name_or_path` should say, the revision or None) for a prepared base."""
    manifest = read_json(Path(model_dir) / "manifest.json")
    source = manifest.get("source", {})
    if source.get("type") == "hub":
        return source["repo_id"], manifest.get("commit", source.get("revision"))
    return str(Path(model_dir).resolve()), None


def _interval(score: float, stderr: float | None) -> str:
    if stderr is None:
        return f"{score:.4f}"
    return f"{score:.4f} [{score - 1.96 * stderr:.4f}, {score + 1.96 * stderr:.4f}]"


def _scores(record: dict) -> list[str]:
    """Markdown rows of an eval.json's scores: every task's accuracy with its 95% interval (lm-eval's
    standard error), and the general text's NLL per token."""
    rows = []
    for name, task in sorted(record.get("tasks", {}).items()):
        score = _interval(task["score"], task.get("stderr"))
        rows.append(f"| {name} ({task.get('metric', 'acc')}) | {score} | {task.get('n', '')} |")
    general = record.get("general", {})
    if "nll" in general:
        rows.append(f"| general text (NLL per token, nats) | {general['nll']:.4f} | {general.get('texts', '')} texts |")
    return rows


def model_card(
    train: dict, record: dict | None, manifest: dict, base: str, data_source: dict | None, adapter: bool
) -> str:
    """The README.md of an exported run (YAML front matter as the hub reads it, then the facts)."""
    strength = (record or {}).get("run", {}).get("strength")
    prov = train.get("provenance", {})
    source = manifest.get("source", {})
    lines = [
        "---",
        "library_name: peft" if adapter else "library_name: transformers",
        f"base_model: {base}",
        "tags: [alr, domain-tuning, forgetting]",
        "---",
        "",
        f"# {train['run']} on {train['domain']}, seed {train['seed']}",
        "",
        f"- **Method:** `{train['method']}`"
        + (f", strength {strength['key']} = {strength['value']:g}" if strength else " (no strength)"),
        f"- **Domain:** `{train['domain']}`"
        + (f", from {data_source.get('source', '?')} (sha256 {data_source.get('sha256', '?')})" if data_source else ""),
        f"- **Seed:** {train['seed']}; {train['steps']} optimizer steps on {train['examples']} examples",
        f"- **alr:** {prov.get('versions', {}).get('alr', '?')}, commit {prov.get('git_commit') or '?'}"
        + (" (uncommitted changes)" if prov.get("git_dirty") else ""),
        f"- **Base:** `{base}` ({manifest.get('architecture', '?')}, {manifest.get('n_params', 0):,} parameters, "
        f"{manifest.get('dtype', '?')}), prepared from {source.get('type', '?')} "
        + ", ".join(f"{k} {source[k]}" for k in ("package", "version", "member", "repo_id", "sha256") if k in source),
        "",
    ]
    if record:
        lines += [
            f"## Scores ({record.get('split', 'test')} split, 95% intervals)",
            "",
            "| task | score | items |",
            "|---|---|---|",
            *_scores(record),
            "",
        ]
    lines += [
        "Load it from any folder:",
        "",
        "```python",
        "from peft import AutoPeftModelForCausalLM" if adapter else "from transformers import AutoModelForCausalLM",
        f"model = {'AutoPeftModelForCausalLM' if adapter else 'AutoModelForCausalLM'}.from_pretrained('<this folder>')",
        "```",
        "",
        "`alr_run.json` holds the run's training record, its evaluation record and the base's manifest.",
    ]
    return "\n".join(lines) + "\n"


def export_run(run_dir: str | Path, model_dir: str | Path, out: str | Path, data_dir: str | Path | None = None) -> Path:
    """Write `out`: the run's weights, its adapter_config naming the base (`base_reference`), a model
    card and `alr_run.json`. Refused before anything is copied when `out` is a folder alr may not replace."""
    run_dir, out = Path(run_dir), Path(out)
    weights = run_dir / "model"
    if not (run_dir / "train.json").is_file() or not weights.is_dir():
        raise FileNotFoundError(f"{run_dir} holds no finished run (model/ and train.json); run `alr finetune` first")
    check_replaceable(out, KIND)
    train = read_json(run_dir / "train.json")
    record = read_json(run_dir / "eval.json") if (run_dir / "eval.json").is_file() else None
    manifest = read_json(Path(model_dir) / "manifest.json")
    base, revision = base_reference(model_dir)
    data_manifest = Path(data_dir) / "manifest.json" if data_dir else None
    data_source = (
        read_json(data_manifest)["datasets"].get(train["domain"]) if data_manifest and data_manifest.is_file() else None
    )
    with atomic_dir(out, KIND) as tmp:
        for path in weights.iterdir():
            if path.is_file() and path.name not in (OWNER_RECORD, CARD):
                shutil.copy2(path, tmp / path.name)
        adapter = (tmp / "adapter_config.json").is_file()  # LoRA methods; full fine-tuning writes a whole model
        if adapter:
            write_json(
                tmp / "adapter_config.json",
                {**read_json(tmp / "adapter_config.json"), "base_model_name_or_path": base, "revision": revision},
            )
        write_json(tmp / "alr_run.json", {"train": train, "eval": record, "base_manifest": manifest})
        (tmp / CARD).write_text(model_card(train, record, manifest, base, data_source, adapter))
    return out
