"""`alr export`: a run's adapter loads with PEFT's own loader from a folder outside the repository and
scores an item as the run's evaluation did; its model card says what it is; every file a run writes is
readable by the group."""

import gzip
import json
import stat
import subprocess
import sys

import pytest

from alr.cli import main
from alr.core.io import read_json

SCORE_ONE = """
import json, sys
from lm_eval.api.instance import Instance
from lm_eval.models.huggingface import HFLM
from peft import AutoPeftModelForCausalLM
from transformers import AutoTokenizer

folder, context, continuation = sys.argv[1:]
model = AutoPeftModelForCausalLM.from_pretrained(folder)
tok = AutoTokenizer.from_pretrained(model.peft_config["default"].base_model_name_or_path)
lm = HFLM(pretrained=model, tokenizer=tok, batch_size=1)
request = Instance(request_type="loglikelihood", doc={}, arguments=(context, continuation), idx=0)
print(json.dumps({"nll": -lm.loglikelihood([request])[0][0]}))
"""


@pytest.fixture(scope="module")
def run(tiny_config_file, tiny_model, tiny_data, tmp_path_factory):
    """A lora run on science, tuned and evaluated with the CLI, as the workflow runs them."""
    folder = tmp_path_factory.mktemp("export") / "results" / "tiny-llama" / "science" / "lora" / "seed0"
    common = ["--config", str(tiny_config_file), "--model-dir", str(tiny_model), "--data-dir", str(tiny_data)]
    tune = ["finetune", *common, "--domain", "science", "--run-name", "lora", "--seed", "0", "--out", str(folder)]
    assert main(tune) == 0
    score = ["evaluate", *common, "--domains", "science", "--weights", str(folder / "model")]
    assert main([*score, "--run-name", "lora", "--seed", "0", "--out", str(folder / "eval.json")]) == 0
    return folder


@pytest.mark.slow
def test_an_exported_adapter_loads_anywhere_and_scores_as_the_run_did(run, tiny_model, tiny_data, tmp_path):
    out = tmp_path / "shared" / "lora-science"
    argv = ["export", str(run), "--out", str(out), "--model-dir", str(tiny_model), "--data-dir", str(tiny_data)]
    assert main(argv) == 0
    assert read_json(out / "adapter_config.json")["base_model_name_or_path"] == str(tiny_model.resolve())
    with gzip.open(run / "eval_items.jsonl.gz", "rt") as fh:
        item = next(r for r in map(json.loads, fh) if r.get("task") == "science")
    question = next(
        r["question"] for r in map(json.loads, (tiny_data / "science" / "test.jsonl").open()) if r["id"] == item["id"]
    )
    elsewhere = tmp_path / "elsewhere"  # a working folder outside the repository, holding nothing of alr's
    elsewhere.mkdir()
    done = subprocess.run(
        [sys.executable, "-c", SCORE_ONE, str(out), f"Question: {question}\nAnswer:", f" {item['gold']}"],
        cwd=elsewhere,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1])["nll"] == pytest.approx(item["gold_nll"], abs=1e-4)


def test_the_model_card_names_method_domain_seed_base_and_scores(run, tiny_model, tiny_data, tmp_path):
    out = tmp_path / "card"
    assert (
        main(["export", str(run), "--out", str(out), "--model-dir", str(tiny_model), "--data-dir", str(tiny_data)]) == 0
    )
    card = (out / "README.md").read_text()
    score = read_json(run / "eval.json")["tasks"]["science"]["score"]
    for fact in (
        "# lora on science, seed 0",
        "**Method:** `lora`",
        "**Domain:** `science`",
        "**Seed:** 0",
        "library_name: peft",
    ):
        assert fact in card, fact
    assert f"| science (acc) | {score:.4f} [" in card and "general text (NLL per token, nats)" in card
    assert "More Information Needed" not in card
    assert read_json(out / "alr_run.json")["train"]["run"] == "lora"


def test_every_file_a_run_writes_is_readable_by_the_group(run):
    modes = {p: stat.S_IMODE(p.stat().st_mode) for p in run.rglob("*") if p.is_file()}
    assert any(p.suffix == ".safetensors" for p in modes)
    assert all(mode & stat.S_IRGRP for mode in modes.values()), {str(p): oct(m) for p, m in modes.items()}


def test_export_refuses_a_folder_of_the_users(run, tiny_model, tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine\n")
    assert main(["export", str(run), "--out", str(mine), "--model-dir", str(tiny_model)]) == 2
    assert "notes.txt" in capsys.readouterr().err and (mine / "notes.txt").read_text() == "mine\n"
