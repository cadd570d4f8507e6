"""Hub datasets -> canonical records, and config/paper.yaml; nothing here touches the network."""

import yaml

from alr import hub
from alr.config import load_config, validate_config
from alr.data import _check_mc
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
