"""The chain on a tiny random Llama: `alr` commands one by one, and one real `snakemake` run."""
import json
import os
import subprocess
import sys

import pandas as pd
import pytest
import yaml

from alr.cli import main
from alr.io import read_json
from tests.tiny import REPO, tiny_config


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tiny")
    cfg = tiny_config(tmp)
    path = tmp / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return tmp, cfg, path


def test_cli_chain(tiny):
    tmp, cfg, cfg_path = tiny
    model_dir, data_dir, run = tmp / "model", tmp / "data", tmp / "run" / "physics" / "lora" / "seed0"
    assert main(["prepare-model", "--config", str(cfg_path), "--out", str(model_dir)]) == 0
    assert main(["prepare-data", "--config", str(cfg_path), "--out", str(data_dir)]) == 0
    assert main(["finetune", "--config", str(cfg_path), "--model-dir", str(model_dir), "--data-dir", str(data_dir),
                 "--domain", "physics", "--method", "lora", "--seed", "0", "--out", str(run)]) == 0
    train = read_json(run / "train.json")
    assert train["steps"] == cfg["train"]["max_steps"] and train["tokens"] > 0
    assert train["final_ce"] > 0 and train["wall_time_s"] > 0 and train["peak_mem_mb"] > 0
    assert (run / "model" / "adapter_model.safetensors").exists()

    assert main(["evaluate", "--config", str(cfg_path), "--model-dir", str(model_dir), "--data-dir", str(data_dir),
                 "--domains", "physics", "--weights", str(run / "model"), "--out", str(run / "eval.json")]) == 0
    ev = read_json(run / "eval.json")
    general = list(cfg["data"]["general"]["tasks"])
    assert set(ev["tasks"]) == set(general) | {"physics"}
    for scores in ev["tasks"].values():
        assert scores["n"] == cfg["data"]["test_size"]
        assert 0 <= scores["acc"] <= 1 and 0 <= scores["acc_norm"] <= 1 and scores["stderr"] >= 0
    assert ev["general"]["score"] == pytest.approx(sum(ev["tasks"][t]["acc"] for t in general) / len(general))
    assert ev["domain"] == {"name": "physics", "score": ev["tasks"]["physics"]["acc"]}
    assert ev["lm_eval"]["batch_size"] == cfg["eval"]["batch_size"]


def test_adapter_changes_predictions(tiny):
    """The evaluated model is really the tuned one: merged LoRA weights differ from the base."""
    import torch

    from alr.models import load_tuned

    tmp, _, _ = tiny
    run = tmp / "run" / "physics" / "lora" / "seed0"
    if not (run / "model").exists():
        pytest.skip("needs test_cli_chain")
    base, _ = load_tuned(tmp / "model", None)
    tuned, _ = load_tuned(tmp / "model", run / "model")
    ids = torch.arange(1, 20)[None]
    with torch.no_grad():
        assert not torch.allclose(base(ids).logits, tuned(ids).logits)


def test_cli_reports_bad_config(tiny, capsys):
    _, _, cfg_path = tiny
    bad = yaml.safe_load(cfg_path.read_text())
    bad["train"]["lr"] = -1
    assert main(["finetune", "--config", json.dumps(bad), "--model-dir", "x", "--data-dir", "y",
                 "--domain", "physics", "--method", "lora", "--seed", "0", "--out", "z"]) == 2
    assert "train.lr" in capsys.readouterr().err


def _snakemake(workdir, cfg_path, *extra):
    env = dict(os.environ, PATH=f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ['PATH']}")
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir), "--cores", "2",
         "--configfile", str(cfg_path), "--replace-workflow-config", *extra],
        capture_output=True, text=True, env=env, timeout=900,
    )


@pytest.mark.slow
def test_snakemake_end_to_end(tiny):
    tmp, cfg, cfg_path = tiny
    work = tmp / "work"
    work.mkdir()
    proc = _snakemake(work, cfg_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    table = pd.read_csv(work / "results" / "tables" / "main.csv")
    assert sorted(zip(table.domain, table.method)) == sorted(
        (d, m) for d in ("medical", "physics") for m in ("base", "lora", "alr"))
    assert table[["domain_score", "general_score", "general_nll"]].notna().all().all()
    base = table[table.method == "base"]
    assert (base.forgetting == 0).all() and (base.domain_gain == 0).all()
    md = (work / "results" / "tables" / "main.md").read_text()
    assert "| physics" in md and "lora" in md
    alr_train = read_json(work / "results" / "tiny-llama" / "physics" / "alr" / "seed0" / "train.json")
    assert alr_train["importance"].endswith("results/tiny-llama/importance/si.safetensors")
    assert sum(alr_train["layer_coefficients"].values()) == pytest.approx(1.0)
    for rel in ("logs/prepare_data.log", "logs/finetune/tiny-llama/physics/lora/seed0.log",
                "results/tiny-llama/importance/si.safetensors", "results/tiny-llama/importance/si.json",
                "results/tiny-llama/physics/lora/seed0/train.json", "results/tiny-llama/base/eval.json"):
        assert (work / rel).exists(), rel
    again = _snakemake(work, cfg_path, "-n")
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr


def test_snakemake_refuses_invalid_config_before_any_job(tiny):
    tmp, _, cfg_path = tiny
    bad = yaml.safe_load(cfg_path.read_text())
    bad["train"]["nonsense"] = 1
    bad_path = tmp / "bad.yaml"
    bad_path.write_text(yaml.safe_dump(bad))
    work = tmp / "badwork"
    work.mkdir()
    proc = _snakemake(work, bad_path, "-n")
    assert proc.returncode != 0
    assert "'nonsense'" in proc.stdout + proc.stderr
    assert not (work / "results").exists()
