"""Hub datasets -> canonical records, config/paper.yaml, and hub models read from the HF cache; nothing
here touches the network."""

import copy
import shutil

import pytest
import yaml

from alr.assets.model import MANIFEST
from alr.assets.sources import hub
from alr.cli import main
from alr.config import load_config, validate_config
from alr.core.examples import _check_mc
from alr.core.io import OWNER_RECORD, read_json, sha256_file
from tests.tiny import REPO

ROWS = {
    "sciq": [
        {
            "question": "What do plants need?",
            "correct_answer": "light",
            "distractor1": "rocks",
            "distractor2": "salt",
            "distractor3": "sand",
            "support": "",
        }
    ],
    "medmcqa": [
        {"question": "Which vitamin?", "opa": "A", "opb": "B", "opc": "C", "opd": "D", "cop": 2},
        {"question": "Unlabelled test item", "opa": "A", "opb": "B", "opc": "C", "opd": "D", "cop": -1},
    ],
    "pubmedqa": [
        {"question": "Does X help?", "context": {"contexts": ["Background.", "Results."]}, "final_decision": "maybe"}
    ],
    "piqa": [
        {"goal": "Open a jar", "sol1": "twist the lid", "sol2": "freeze it", "label": 0},
        {"goal": "Duplicate choices", "sol1": "same", "sol2": "same", "label": 1},
    ],
}


def test_hub_formats_give_canonical_records(monkeypatch):
    monkeypatch.setattr(hub, "_load", lambda spec, split: ROWS[spec["format"]])
    out = {f: hub.hub_mc_rows(f, {"source": "hub", "dataset_path": f"x/{f}", "format": f}) for f in ROWS}
    for rows in out.values():
        for r in rows:
            _check_mc(r, "test")
    assert out["sciq"][0]["choices"][out["sciq"][0]["label"]] == "light"
    assert len(out["medmcqa"]) == 1 and out["medmcqa"][0]["choices"][out["medmcqa"][0]["label"]] == "C"
    pub = out["pubmedqa"][0]
    assert pub["question"] == "Background. Results.\nDoes X help?" and pub["choices"][pub["label"]] == "maybe"
    assert [r["id"] for r in out["piqa"]] == ["piqa-train-0"]  # the item with duplicate choices is skipped


def test_paper_config_is_valid_and_lists_its_hub_assets():
    cfg = load_config(REPO / "config" / "paper.yaml")
    assets = hub.hub_assets(cfg)
    assert assets["model"]["repo_id"] == "meta-llama/Meta-Llama-3-8B" and cfg["model"]["dtype"] == "bfloat16"
    assert {d["name"] for d in assets["datasets"]} == {"sciq", "medmcqa", "pubmedqa", "piqa", "general_text/alpaca"}
    assert assets["lm_eval_tasks"] == ["arc_challenge", "arc_easy", "hellaswag", "mmlu", "winogrande"]
    assert cfg["fisher"]["samples"] == 20000
    gptj = yaml.safe_load((REPO / "config" / "paper-gptj.yaml").read_text())
    validate_config(dict(cfg, **gptj))  # the overlay replaces the model; the result is a valid config
    assert gptj["model"]["source"]["repo_id"] == "EleutherAI/gpt-j-6b"


def test_default_config_needs_nothing_from_the_hub():
    assert not any(hub.hub_assets(load_config(REPO / "config" / "config.yaml")).values())


COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def hub_cache(tiny_model, tmp_path, monkeypatch):
    """A Hugging Face cache that holds the tiny model as someone/tiny-llama at COMMIT, with `main`
    pointing at it, and the hub switched off (it is unreachable here)."""
    from huggingface_hub import constants

    repo = tmp_path / "hub" / "models--someone--tiny-llama"
    shutil.copytree(tiny_model, repo / "snapshots" / COMMIT, ignore=shutil.ignore_patterns(MANIFEST))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return repo / "snapshots" / COMMIT


def test_a_hub_model_is_read_from_the_cache_and_never_copied(hub_cache, tiny_cfg, tiny_data, tmp_path, capsys):
    """prepare-model of a hub model writes only the manifest (pinning the snapshot's commit) and alr's
    ownership record; fine-tuning
    loads the weights from the cache and names the hub base in its adapter; a job whose snapshot left the
    cache stops with one line naming the fix."""
    cfg = copy.deepcopy(tiny_cfg)
    cfg["model"]["source"] = {"type": "hub", "repo_id": "someone/tiny-llama", "revision": "main"}
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(cfg))
    model_dir = tmp_path / "model"
    assert main(["prepare-model", "--config", str(config_file), "--out", str(model_dir)]) == 0
    assert sorted(p.name for p in model_dir.iterdir()) == [OWNER_RECORD, MANIFEST]
    manifest = read_json(model_dir / MANIFEST)
    assert manifest["commit"] == COMMIT and manifest["architecture"] == "LlamaForCausalLM"
    assert manifest["files"]["model.safetensors"] == sha256_file(hub_cache / "model.safetensors")
    argv = ["finetune", "--config", str(config_file), "--model-dir", str(model_dir), "--data-dir", str(tiny_data)]
    argv += ["--domain", "science", "--run-name", "lora", "--seed", "0", "--out", str(tmp_path / "run")]
    assert main(argv) == 0
    adapter = read_json(tmp_path / "run" / "model" / "adapter_config.json")
    assert adapter["base_model_name_or_path"] == "someone/tiny-llama" and adapter["revision"] == COMMIT
    shutil.rmtree(hub_cache)
    capsys.readouterr()
    assert main([*argv[:-1], str(tmp_path / "run2")]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert f"someone/tiny-llama@{COMMIT} is not in the Hugging Face cache" in line and "alr prefetch" in line
