"""Your own data through configuration: `source: jsonl` for domains, general tasks and general text."""

import copy
import json
import os

import pandas as pd
import pytest
import yaml

from alr.assets.build import build_all
from alr.assets.catalogue import data_in_use
from alr.cli import main
from alr.config import validate_config
from alr.core.errors import ConfigError
from alr.core.io import read_json, sha256_file
from alr.core.layout import REPO_ROOT
from tests.tiny import WORDS, snakemake


def _mc_rows(prefix: str, n: int) -> list[dict]:
    return [
        {
            "id": f"{prefix}-{i}",
            "question": f"{prefix} item {i}: which {WORDS[i % len(WORDS)]} fits?",
            "choices": [WORDS[(i + k) % len(WORDS)] for k in range(4)],
            "label": i % 4,
        }
        for i in range(n)
    ]


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def _with_user_domain(cfg, tmp_path, split=True):
    c = copy.deepcopy(cfg)
    if split:
        spec = {
            "source": "jsonl",
            "train": _write(tmp_path / "train.jsonl", _mc_rows("mine", 12)),
            "test": _write(tmp_path / "test.jsonl", _mc_rows("mine-test", 6)),
        }
    else:
        spec = {"source": "jsonl", "path": _write(tmp_path / "all.jsonl", _mc_rows("mine", 20))}
    c["data"]["domains"]["mine"] = spec
    c["domains"] = ["mine"]
    return c


def test_user_domain_files_are_kept_split_and_hashed(tiny_cfg, tmp_path):
    cfg = _with_user_domain(tiny_cfg, tmp_path)
    validate_config(cfg)
    manifest = build_all(data_in_use(cfg), tmp_path / "data")
    entry = manifest["datasets"]["mine"]
    # valid carved from train
    assert {s: v["n"] for s, v in entry["splits"].items()} == {"test": 6, "valid": 2, "train": 10}
    assert entry["files"] == {
        p: sha256_file(p) for p in (cfg["data"]["domains"]["mine"]["train"], cfg["data"]["domains"]["mine"]["test"])
    }
    written = [
        json.loads(line)
        for split in ("valid", "train")
        for line in (tmp_path / "data" / "mine" / f"{split}.jsonl").read_text().splitlines()
    ]
    assert sorted(r["id"] for r in written) == sorted(f"mine-{i}" for i in range(12))
    for r in written:  # choices shuffled, the gold answer kept
        original = _mc_rows("mine", 12)[int(r["id"].split("-")[1])]
        assert r["choices"][r["label"]] == original["choices"][original["label"]]


def test_one_user_file_is_split_by_the_pipeline_and_general_text_can_be_yours(tiny_cfg, tmp_path):
    cfg = _with_user_domain(tiny_cfg, tmp_path, split=False)
    texts = [
        {"id": f"t{i}", "text": f"{WORDS[i % len(WORDS)]} is a word of the general text number {i}."} for i in range(30)
    ]
    # the user's text replaces the default sources (null switches one off, as in a config file merged over the default)
    cfg["data"]["general"]["text"]["sources"] = {
        "encyclopedic": None,
        "howto": None,
        "narrative": None,
        "mine": {
            "source": "jsonl",
            "path": _write(tmp_path / "text.jsonl", texts),
            "train_size": 16,
            "valid_size": 4,
            "test_size": 10,
        },
    }
    validate_config(cfg)
    manifest = build_all(data_in_use(cfg), tmp_path / "data")
    assert {s: v["n"] for s, v in manifest["datasets"]["mine"]["splits"].items()} == {
        "test": min(cfg["data"]["test_size"], 10),
        "valid": cfg["data"]["valid_size"],
        "train": min(cfg["data"]["train_size"], 20 - 6 - cfg["data"]["valid_size"]),
    }
    text = manifest["datasets"]["general_text"]
    assert text["source"] == "natural text: mine (jsonl)"
    assert {s: v["n"] for s, v in text["splits"].items()} == {"test": 10, "valid": 4, "train": 16}
    assert text["files"] == {str(tmp_path / "text.jsonl"): sha256_file(tmp_path / "text.jsonl")}


def test_a_bad_line_names_file_and_line_and_a_missing_file_is_a_config_error(tiny_cfg, tmp_path, capsys):
    cfg = _with_user_domain(tiny_cfg, tmp_path)
    lines = (tmp_path / "train.jsonl").read_text().splitlines()
    lines[4] = lines[4].replace('"label": 0', '"label": 7')
    (tmp_path / "train.jsonl").write_text("\n".join(lines) + "\n")
    assert main(["prepare-data", "--config", json.dumps(cfg), "--out", str(tmp_path / "data")]) == 2
    assert f"{tmp_path / 'train.jsonl'}:5: label 7 out of range" in capsys.readouterr().err
    cfg["data"]["domains"]["mine"]["test"] = str(tmp_path / "absent.jsonl")
    with pytest.raises(ConfigError, match="absent.jsonl \\(source: jsonl\\) does not exist"):
        validate_config(cfg)
    del cfg["data"]["domains"]["mine"]["test"]
    with pytest.raises(ConfigError, match="data.domains.mine"):
        validate_config(cfg)  # `train` without `test`: neither form


@pytest.mark.slow
def test_a_user_domain_runs_and_an_edit_replans_what_depends_on_it(tiny_cfg, tmp_path):
    cfg = _with_user_domain(tiny_cfg, tmp_path)
    cfg["methods"] = ["lora"]
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(cfg))
    work = tmp_path / "work"
    work.mkdir()
    proc = snakemake(work, path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    table = pd.read_csv(work / "results" / "tables" / "main.csv")
    assert sorted(zip(table.domain, table.method)) == [("mine", m) for m in ("base", "lexical", "lora", "majority")]
    assert read_json(work / "resources" / "data" / "manifest.json")["datasets"]["mine"]["splits"]["test"]["n"] == 6
    assert "Nothing to be done" in (done := snakemake(work, path, "-n")).stdout + done.stderr
    lines = (tmp_path / "train.jsonl").read_text().splitlines()
    lines[3] = lines[3].replace("item 3", "item three")  # one edited line
    (tmp_path / "train.jsonl").write_text("\n".join(lines) + "\n")
    later = os.stat(work / "resources" / "data" / "manifest.json").st_mtime + 2
    os.utime(tmp_path / "train.jsonl", (later, later))
    plan = snakemake(work, path, "-n")
    assert plan.returncode == 0, plan.stderr[-3000:]
    jobs = {
        line.split()[0]
        for line in plan.stdout.splitlines()
        if line[:1].isalpha() and len(line.split()) == 2 and line.split()[1].isdigit()
    }
    assert {"prepare_data", "finetune", "evaluate", "evaluate_base", "tables"} <= jobs, plan.stdout[-2000:]


def test_data_md_example_builds_without_any_default_download(tmp_path, monkeypatch):
    """DATA.md's "Your own data" example as written (its /data paths pointed at files of this test),
    merged over the default: every default dataset it does not use is off or unselected, so the
    build fetches nothing."""
    import re

    import alr.assets.sources.fetch
    from alr.config import check_config_files

    def no_download(*args, **kwargs):
        raise AssertionError(f"a default artifact was fetched: {args}")

    monkeypatch.setattr(alr.assets.sources.fetch, "fetch_distribution", no_download)
    text = (REPO_ROOT / "DATA.md").read_text()
    example = re.search(r"```yaml\n(# my.yaml.*?)```", text, re.S).group(1)
    for path in sorted(set(re.findall(r"/data/[\w/.]+\.jsonl", example))):
        local = tmp_path / path.lstrip("/")
        local.parent.mkdir(parents=True, exist_ok=True)
        rows = (
            [{"id": f"t{i}", "text": f"{WORDS[i % len(WORDS)]} text number {i} of the user's own."} for i in range(400)]
            if "news" in path
            else _mc_rows(local.stem, 200)
        )
        _write(local, rows)
        example = example.replace(path, str(local))
    (tmp_path / "my.yaml").write_text(example)
    cfg = check_config_files([tmp_path / "my.yaml"])
    manifest = build_all(data_in_use(cfg), tmp_path / "out", tmp_path / "downloads")
    assert set(manifest["datasets"]) == {"law", "mytask", "general_text"}
