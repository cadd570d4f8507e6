"""The chain on a tiny random Llama: `alr` commands one by one, and one real `snakemake` run."""

import copy
import json
import math
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml

from alr.cli import main
from alr.core.io import read_json
from alr.evaluate.records import read_items
from alr.evaluate.tasks import PHASE1_TEXT, text_task
from alr.report.claims import AT_EDGE
from alr.report.matched import GAIN_NOT_REACHED
from alr.report.protocol import load_protocol
from tests.tiny import REPO, snakemake, snakemake_on


@pytest.fixture(scope="module")
def lora_run(tiny_config_file, tiny_model, tiny_data, tmp_path_factory):
    """`alr finetune` of lora on science, seed 0 (read-only for tests)."""
    run = tmp_path_factory.mktemp("run") / "science" / "lora" / "seed0"
    assert (
        main(
            [
                "finetune",
                "--config",
                str(tiny_config_file),
                "--model-dir",
                str(tiny_model),
                "--data-dir",
                str(tiny_data),
                "--domain",
                "science",
                "--run-name",
                "lora",
                "--seed",
                "0",
                "--out",
                str(run),
            ]
        )
        == 0
    )
    return run


def evaluate_argv(config_file, model, data, out, *extra: str) -> list[str]:
    """`alr evaluate` of `model` (plus `extra`, e.g. --weights) on science, writing `out`."""
    argv = ["evaluate", "--config", str(config_file), "--model-dir", str(model), "--data-dir", str(data)]
    return [*argv, "--domains", "science", "--out", str(out), *extra]


def test_cli_chain(tiny_config_file, tiny_cfg, tiny_model, tiny_data, lora_run, tmp_path):
    """prepare-model, prepare-data and finetune (the fixtures run them), then evaluate the tuned model."""
    cfg = tiny_cfg
    assert (tiny_model / "manifest.json").exists() and (tiny_data / "manifest.json").exists()
    train = read_json(lora_run / "train.json")
    assert train["steps"] == cfg["train"]["max_steps"] and train["tokens"] > 0
    assert train["final_ce"] > 0 and train["wall_time_s"] > 0 and train["peak_mem_mb"] > 0
    assert (lora_run / "model" / "adapter_model.safetensors").exists()

    weights = ["--weights", str(lora_run / "model")]
    assert main(evaluate_argv(tiny_config_file, tiny_model, tiny_data, tmp_path / "eval.json", *weights)) == 0
    ev = read_json(tmp_path / "eval.json")
    general = list(cfg["data"]["general"]["tasks"])
    assert set(ev["tasks"]) == set(general) | {"science"}
    for scores in ev["tasks"].values():
        assert scores["n"] == cfg["data"]["test_size"]
        assert 0 <= scores["acc"] <= 1 and 0 <= scores["acc_norm"] <= 1 and scores["stderr"] >= 0
    assert ev["general"]["score"] == pytest.approx(sum(ev["tasks"][t]["acc"] for t in general) / len(general))
    assert ev["domain"]["name"] == "science" and ev["domain"]["score"] == ev["tasks"]["science"]["acc"]
    assert ev["lm_eval"]["batch_size"] == cfg["eval"]["batch_size"]
    items = read_items(tmp_path / "eval_items.jsonl.gz")
    mc = {key: v for key, v in items.items() if key[0] in ev["tasks"]}
    assert len(mc) == sum(t["n"] for t in ev["tasks"].values())
    for task, scores in ev["tasks"].items():
        mine = [v["acc"] for (t, _), v in mc.items() if t == task]
        assert sum(mine) / len(mine) == pytest.approx(scores["acc"])  # per-item records reproduce lm-eval's score
    for v in mc.values():  # the gold answer and its NLL beside correctness
        assert v["gold_nll"] > 0 and 0 < v["choice_nll"] <= v["gold_nll"] and isinstance(v["gold"], str) and v["gold"]
        if v["choice_nll"] < math.log(2):  # more than half of the probability among the choices: the argmax
            assert v["acc"] == 1.0
    # the general NLL: one record per held-out text, per source, and on phase 1's own first texts
    text_cfg = cfg["data"]["general"]["text"]
    sources = dict(ev["general"]["sources"])
    assert set(sources) == {text_task(s) for s in text_cfg["sources"]}
    texts = [v for (t, _), v in items.items() if t in sources]
    assert len(texts) == ev["general"]["texts"] == text_cfg["test_size"] * len(text_cfg["sources"])
    assert ev["general"]["nll"] == pytest.approx(sum(v["nll"] for v in texts) / len(texts))
    overlap = [v for (t, _), v in items.items() if t == PHASE1_TEXT]
    assert len(overlap) == ev["general"]["phase1_text"]["texts"] == cfg["eval"]["phase1_texts"]


def test_adapter_names_the_hub_base_model(tiny_config_file, tiny_model, tiny_data, lora_run, tmp_path):
    """adapter_config.json (a run's and phase 1's) names the base by its hub repo id and revision when the
    prepared checkpoint came from the hub (its manifest's source), the local folder otherwise; evaluation
    loads it either way."""
    import shutil

    from alr.model.load import load_tuned

    local = read_json(lora_run / "model" / "adapter_config.json")
    assert local["base_model_name_or_path"] == str(tiny_model) and local["revision"] is None
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model, model_dir)
    manifest = read_json(model_dir / "manifest.json")
    manifest["source"] = {"type": "hub", "repo_id": "someone/tiny-llama", "revision": "abc123"}
    (model_dir / "manifest.json").write_text(json.dumps(manifest))
    argv = ["finetune", "--config", str(tiny_config_file), "--model-dir", str(model_dir), "--data-dir"]
    argv += [str(tiny_data), "--domain", "science", "--run-name", "lora", "--seed", "0", "--out", str(tmp_path / "run")]
    assert main(argv) == 0
    saved = read_json(tmp_path / "run" / "model" / "adapter_config.json")
    assert saved["base_model_name_or_path"] == "someone/tiny-llama" and saved["revision"] == "abc123"
    model, _ = load_tuned(model_dir, tmp_path / "run" / "model")
    assert model is not None
    argv = ["importance", "--config", str(tiny_config_file), "--model-dir", str(model_dir), "--data-dir"]
    assert main([*argv, str(tiny_data), "--out", str(tmp_path / "si.safetensors")]) == 0
    phase1 = read_json(tmp_path / "si_adapter" / "adapter_config.json")  # phase 1's adapter names it too
    assert phase1["base_model_name_or_path"] == "someone/tiny-llama" and phase1["revision"] == "abc123"


def test_evaluate_limit_and_batch_size_override_the_config(tiny_config_file, tiny_cfg, tiny_model, tiny_data, tmp_path):
    """`alr evaluate --limit 5 --batch-size 2` on the base model: eval.json records (and scores) 5 items per
    task and 5 held-out texts at batch size 2, over the tiny config's eval.limit null and batch_size 4."""
    assert tiny_cfg["eval"]["limit"] is None and tiny_cfg["eval"]["batch_size"] != 2
    assert tiny_cfg["data"]["test_size"] > 5
    out = tmp_path / "eval.json"
    argv = evaluate_argv(tiny_config_file, tiny_model, tiny_data, out)
    assert main([*argv, "--limit", "5", "--batch-size", "2"]) == 0
    ev = read_json(out)
    assert ev["lm_eval"]["limit"] == 5 and ev["lm_eval"]["batch_size"] == 2
    assert {t: s["n"] for t, s in ev["tasks"].items()} == dict.fromkeys(ev["tasks"], 5)
    assert ev["general"]["texts"] == 5
    files = tmp_path / ev["lm_eval_files"]  # lm-eval's own files, as its command line writes them
    (results,) = files.glob("results_*.json")
    lm = json.loads(results.read_text())
    assert lm["config"]["model_args"] == f"pretrained={tiny_model}" and lm["config"]["batch_size"] == 2
    for task, scores in ev["tasks"].items():
        assert lm["results"][scores["task"]]["acc,none"] == scores["acc"], task
        (samples,) = files.glob(f"samples_{scores['task']}_*.jsonl")
        assert len(samples.read_text().splitlines()) == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval.json", "eval_items.jsonl.gz", "eval_lm_eval"]
    with pytest.raises(SystemExit) as refused:
        main([*argv, "--limit", "0"])
    assert refused.value.code == 2


def write_tasks(config_file, data, out, *extra: str):
    """`alr tasks` into `out` (plus `extra`, e.g. --model-dir)."""
    assert main(["tasks", "--config", str(config_file), "--data-dir", str(data), "--out", str(out), *extra]) == 0


def lm_eval_cli(model_args: str, tasks: str, include, out, batch_size: int) -> dict:
    """lm-eval's results file of its command line on CPU, with alr's task YAMLs in `include`."""
    lm_eval = os.path.join(os.path.dirname(sys.executable), "lm_eval")
    argv = [lm_eval, "--model", "hf", "--model_args", model_args, "--tasks", tasks, "--include_path", str(include)]
    argv += ["--device", "cpu", "--batch_size", str(batch_size), "--output_path", str(out), "--log_samples"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (result,) = out.rglob("results_*.json")
    return json.loads(result.read_text())


def test_tasks_are_written_for_the_domains_in_use_only(tiny_cfg, tiny_data, tmp_path):
    """`alr tasks` on a config that keeps a dataset configured but unused (as the default keeps medical)
    needs and writes no task for it, as `alr prepare-data` builds none."""
    tiny_cfg["domains"] = ["science"]
    config_file = tmp_path / "science-only.yaml"
    config_file.write_text(yaml.safe_dump(tiny_cfg))
    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    shutil.rmtree(data / "medical")
    write_tasks(config_file, data, tmp_path / "tasks")
    written = {p.stem for p in (tmp_path / "tasks").glob("*.yaml")}
    assert "alr_science" in written and not any("medical" in name for name in written)


@pytest.mark.slow
def test_scores_equal_the_lm_eval_command_line(tiny_config_file, tiny_cfg, tiny_model, tiny_data, lora_run, tmp_path):
    """`alr evaluate` of a tuned adapter and `lm_eval` on the same task YAMLs, base checkpoint and adapter
    (`peft=`, as docs/pipeline.md shows) report the same accuracies, in eval.json and in the results
    file alr keeps beside it."""
    write_tasks(tiny_config_file, tiny_data, tmp_path / "tasks")
    model_args = f"pretrained={tiny_model},peft={lora_run / 'model'},dtype=float32"
    cli = lm_eval_cli(
        model_args, "alr_science,alr_basic_logic", tmp_path / "tasks", tmp_path / "out", tiny_cfg["eval"]["batch_size"]
    )["results"]
    weights = ["--weights", str(lora_run / "model")]
    assert main(evaluate_argv(tiny_config_file, tiny_model, tiny_data, tmp_path / "eval.json", *weights)) == 0
    ours = read_json(tmp_path / "eval.json")["tasks"]
    (kept,) = (tmp_path / "eval_lm_eval").glob("results_*.json")  # the results file alr keeps, as lm_eval's
    kept = json.loads(kept.read_text())
    # labelled as the command line labels its own: the model arguments that rebuild the scored model
    assert kept["config"]["model_args"] == f"pretrained={tiny_model},peft={lora_run / 'model'}"
    assert kept["config"]["batch_size"] == tiny_cfg["eval"]["batch_size"]
    kept = kept["results"]
    for task in ("science", "basic_logic"):
        for metric in ("acc", "acc_norm"):
            assert ours[task][metric] == cli[f"alr_{task}"][f"{metric},none"], (task, metric)
            assert kept[f"alr_{task}"][f"{metric},none"] == cli[f"alr_{task}"][f"{metric},none"], (task, metric)


@pytest.mark.slow
def test_general_nll_equals_the_lm_eval_command_line(tiny_cfg, tiny_model, tiny_data, lora_run, tmp_path):
    """The task `alr tasks --model-dir` writes, scored by the `lm_eval` command line as docs/pipeline.md
    shows, gives eval.json's general NLL of a tuned adapter to 1e-6, and each text's NLL too. The window
    is set below the longest text, so lm-eval's rolling windows are compared as well."""
    from alr.evaluate.records import items_path
    from alr.evaluate.text_nll import NLL_TASK, text_token_ids
    from alr.model.load import load_tokenizer

    tok = load_tokenizer(tiny_model)
    texts = [json.loads(line)["text"] for line in (tiny_data / "general_text" / "test.jsonl").read_text().splitlines()]
    window = 24
    assert max(len(text_token_ids(tok, t)) for t in texts) > 2 * window  # texts span several windows
    cfg = copy.deepcopy(tiny_cfg)
    cfg["eval"]["nll_max_length"] = window
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(cfg))
    write_tasks(config_file, tiny_data, tmp_path / "tasks", "--model-dir", str(tiny_model))
    model_args = (
        f"pretrained={tiny_model},peft={lora_run / 'model'},dtype=float32,max_length={window},add_bos_token=False"
    )
    cli = lm_eval_cli(model_args, NLL_TASK, tmp_path / "tasks", tmp_path / "out", cfg["eval"]["batch_size"])
    weights = ["--weights", str(lora_run / "model")]
    assert main(evaluate_argv(config_file, tiny_model, tiny_data, tmp_path / "eval.json", *weights)) == 0
    general = read_json(tmp_path / "eval.json")["general"]
    assert cli["results"][NLL_TASK]["nll,none"] == pytest.approx(general["nll"], abs=1e-6)
    assert cli["n-samples"][NLL_TASK]["effective"] == general["texts"]
    items = read_items(items_path(tmp_path / "eval.json"))
    ours = {key[1]: r["nll"] for key, r in items.items() if key[0].startswith(text_task(""))}
    (samples,) = (tmp_path / "out").rglob(f"samples_{NLL_TASK}_*.jsonl")
    for line in samples.read_text().splitlines():
        sample = json.loads(line)
        assert sample["nll"] == pytest.approx(ours[sample["doc"]["id"]], abs=1e-6), sample["doc"]["id"]


def test_adapter_changes_predictions(tiny_model, lora_run):
    """The evaluated model is really the tuned one: merged LoRA weights differ from the base."""
    import torch

    from alr.model.load import load_tuned

    base, _ = load_tuned(tiny_model, None)
    tuned, _ = load_tuned(tiny_model, lora_run / "model")
    ids = torch.arange(1, 20)[None]
    with torch.no_grad():
        assert not torch.allclose(base(ids).logits, tuned(ids).logits)


def test_cli_reports_bad_config(tiny_cfg, capsys):
    bad = tiny_cfg
    bad["train"]["lr"] = -1
    assert (
        main(
            [
                "finetune",
                "--config",
                json.dumps(bad),
                "--model-dir",
                "x",
                "--data-dir",
                "y",
                "--domain",
                "science",
                "--run-name",
                "lora",
                "--seed",
                "0",
                "--out",
                "z",
            ]
        )
        == 2
    )
    assert "train.lr" in capsys.readouterr().err


@pytest.mark.slow
def test_snakemake_end_to_end(tiny_cfg, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    # the two baselines with their own config sections (fisher, baselines), on one domain (method_domains)
    cfg = tiny_cfg
    cfg["methods"] += ["ewc_lora", "full_ft"]
    cfg["method_domains"] = {"ewc_lora": ["science"], "full_ft": ["science"]}
    cfg["baselines"]["efficiency_estimators"] = ["si", "fisher"]  # the speed and storage claims, as cpu-decide
    cfg_path = tmp_path / "e2e.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    proc = snakemake(work, cfg_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    table = pd.read_csv(work / "results" / "tables" / "main.csv")
    assert sorted(zip(table.domain, table.method)) == sorted(
        [(d, m) for d in ("medical", "science") for m in ("base", "lora", "alr", "lexical", "majority")]
        + [("science", "ewc_lora"), ("science", "full_ft")]
    )
    full = read_json(work / "results" / "tiny-llama" / "science" / "full_ft" / "seed0" / "train.json")
    assert full["config"]["train"]["lr"] == cfg["baselines"]["full_ft_lr"]
    models = table[~table.method.isin(["lexical", "majority"])]
    assert (
        models[["domain_score", "domain_balanced", "domain_gold_nll", "general_score", "general_nll", "phase1_nll"]]
        .notna()
        .all()
        .all()
    )
    base = table[table.method == "base"]
    for measure in ("forgetting", "forgetting_mc", "forgetting_phase1", "domain_gain", "gold_nll_gain"):
        assert (base[[measure, f"{measure}_lo", f"{measure}_hi"]] == 0).all().all(), measure  # base vs itself
    assert (table[table.method == "lora"].general_nll.values != base.general_nll.values).all()  # tuning did something
    tuned = models[models.method != "base"]
    for measure in ("forgetting", "domain_gain", "gold_nll_gain", "balanced_gain"):
        assert ((tuned[f"{measure}_lo"] <= tuned[measure]) & (tuned[measure] <= tuned[f"{measure}_hi"])).all(), measure
    # equal texts per source: the mean over sources of the paired differences is the difference of the means
    rise = tuned.general_nll - tuned.domain.map(base.set_index("domain").general_nll)
    assert np.allclose(tuned.forgetting, rise, atol=1e-4)  # main.csv keeps 6 significant digits
    lora_rows = table[table.method == "lora"]
    assert lora_rows.d_general.isna().all()  # the reference itself gets no CI
    alr_rows = table[table.method == "alr"]
    assert (alr_rows.d_general_lo <= alr_rows.d_general).all() and (alr_rows.d_general <= alr_rows.d_general_hi).all()
    compared = table[table.method.isin(["alr", "ewc_lora", "full_ft"])]
    assert ((compared.p_domain_holm >= compared.p_domain) & (compared.p_domain_holm <= 1)).all()
    assert (compared[["better_general", "worse_general", "better_domain", "worse_domain"]] >= 0).all().all()
    baselines = table[table.method.isin(["lexical", "majority"])]
    assert baselines.domain_score.between(0, 1).all() and baselines.general_nll.isna().all()
    sources = pd.read_csv(work / "results" / "tables" / "forgetting.csv")
    assert set(sources.source) == set(cfg["data"]["general"]["text"]["sources"])
    # the default's narrative genre (train_size: 0) is no consumer's: phase 1 never saw it, the table says so
    assert set(sources[sources.held_out].source) == {"narrative"}
    assert "narrative (held out)" in (work / "results" / "tables" / "forgetting.md").read_text()
    train = (work / "resources" / "data" / "general_text" / "train.jsonl").read_text().splitlines()
    assert train and not any(json.loads(line)["source"] == "narrative" for line in train)
    power = pd.read_csv(work / "results" / "tables" / "power.csv")
    assert set(power.domain) == {"medical", "science"} and (power.mde >= 0).all()
    assert (power[power.measure == "forgetting"].mde > 0).all()  # every text moved (2 tiny steps flip no answer)
    general = pd.read_csv(work / "results" / "tables" / "general_tasks.csv")
    assert list(general.task) == list(cfg["data"]["general"]["tasks"])
    assert ((general.lo <= general.base) & (general.base <= general.hi) & general.p_chance.between(0, 1)).all()
    eff = pd.read_csv(work / "results" / "tables" / "efficiency.csv")
    assert {"si", "fisher"} <= set(eff.name) and {"lora", "alr"} <= set(eff.name)
    assert (work / "results" / "tables" / "main.tex").read_text().count("\\midrule") == 1
    md = (work / "results" / "tables" / "main.md").read_text()
    assert "| science" in md and "lora" in md
    alr_train = read_json(work / "results" / "tiny-llama" / "science" / "alr" / "seed0" / "train.json")
    assert alr_train["importance"].endswith("results/tiny-llama/importance/si.safetensors")
    assert sum(alr_train["layer_coefficients"].values()) == pytest.approx(1.0)
    for rel in (
        "logs/prepare_data.log",
        "logs/finetune/tiny-llama/science/lora/seed0.log",
        "results/tiny-llama/importance/si.safetensors",
        "results/tiny-llama/importance/si.json",
        "results/tiny-llama/science/lora/seed0/train.json",
        "results/tiny-llama/base/eval.json",
    ):
        assert (work / rel).exists(), rel
    again = snakemake(work, cfg_path, "-n")
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr
    _check_a_change_reruns_only_what_reads_it(work, cfg, tmp_path)
    _check_ablation_figures_report(work, cfg_path, table)


def _planned_jobs(work, cfg, path) -> list[tuple[str, dict]]:
    """(rule, wildcards) of each job `snakemake -n` plans on a finished run with `cfg`."""
    path.write_text(yaml.safe_dump(cfg))
    proc = snakemake(work, path, "-n")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    jobs = []
    for block in re.split(r"^(?:local)?rule ", proc.stdout + proc.stderr, flags=re.M)[1:]:
        found = re.search(r"^\s+wildcards: (.*)$", block, re.M)
        jobs.append(
            (block.split(":", 1)[0], dict(kv.split("=", 1) for kv in found.group(1).split(", ")) if found else {})
        )
    return jobs


def _check_a_change_reruns_only_what_reads_it(work, cfg, tmp_path):
    """Each job is passed exactly the keys it reads (Method.config_keys, Estimator.keys): alr's penalty
    weight reruns alr and not lora; ewc_lora's phase-2 settings rerun ewc_lora and not the Fisher;
    train.report_to reruns nothing."""
    changed = copy.deepcopy(cfg)
    changed["regularize"]["lambda"] = 2 * cfg["regularize"]["lambda"]
    tuned = {j["run"] for rule, j in _planned_jobs(work, changed, tmp_path / "lambda.yaml") if rule == "finetune"}
    assert "alr" in tuned and "lora" not in tuned and "ewc_lora" not in tuned
    changed = copy.deepcopy(cfg)
    changed["fisher"].update(
        {"lambda": 2 * cfg["fisher"]["lambda"], "normalize": "none" if cfg["fisher"]["normalize"] != "none" else "mean"}
    )
    jobs = _planned_jobs(work, changed, tmp_path / "fisher.yaml")
    assert ("finetune", "ewc_lora") in {(rule, j.get("run")) for rule, j in jobs}
    assert not [j for rule, j in jobs if rule == "importance"]  # neither the Fisher nor SI is recorded again
    changed = copy.deepcopy(cfg)
    changed["train"]["report_to"] = "tensorboard"  # where metrics go changes no result: nothing reruns
    assert _planned_jobs(work, changed, tmp_path / "tracking.yaml") == []


def _check_ablation_figures_report(work, cfg_path, main_table):
    """The ablation table, the figures and `snakemake --report` of the end-to-end run."""
    import matplotlib.image

    ablation = pd.read_csv(work / "results" / "tables" / "ablation.csv")
    assert sorted(zip(ablation.domain, ablation.method)) == sorted(
        (d, m) for d in ("medical", "science") for m in ("lora", "alr")
    )
    merged = ablation.merge(main_table, on=["domain", "method"], suffixes=("", "_main"))
    assert (merged.general_score == merged.general_score_main).all()  # the main table's numbers, not new ones
    assert list(ablation.layer_wise) == list(ablation.element_wise) == [False, True, False, True]
    figures = ("tradeoff", "forgetting_heatmap", "efficiency", "layer_coefficients", "importance")
    for name in figures:
        png = matplotlib.image.imread(work / "results" / "figures" / f"{name}.png")
        assert png.shape[1] >= 3.3 * 300 * 0.9 and png.std() > 0, name  # >= one column at 300 dpi, not blank
        assert (work / "results" / "figures" / f"{name}.pdf").read_bytes().startswith(b"%PDF"), name
    assert not (work / "results" / "figures" / "lambda_sweep.png").exists()  # one lambda: no sweep figure
    proc = snakemake(work, cfg_path, "--report", "report.html")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    html = (work / "report.html").read_text(encoding="utf-8")
    assert html.rstrip().endswith("</html>")
    for text in ("Forgetting against adaptation", "Which half of the penalty matters", *figures):
        assert text in html, text


def test_snakemake_refuses_invalid_config_before_any_job(tiny_cfg, tmp_path):
    bad = tiny_cfg
    bad["train"]["nonsense"] = 1
    bad_path = tmp_path / "bad.yaml"
    bad_path.write_text(yaml.safe_dump(bad))
    work = tmp_path / "badwork"
    work.mkdir()
    proc = snakemake(work, bad_path, "-n")
    assert proc.returncode != 0
    assert "'nonsense'" in proc.stdout + proc.stderr
    assert not (work / "results").exists()


@pytest.mark.slow
def test_builtin_lm_eval_task_from_local_files(tiny_cfg, tiny_model, tiny_data, tmp_path):
    """A built-in lm-eval task (sciq: its own prompt, choices and metrics) pointed at local files in
    its own schema, as a cluster without internet would run it."""
    rows = [
        {
            "question": f"What does a {w} need?",
            "distractor1": "rocks",
            "distractor2": "sand",
            "distractor3": "glass",
            "correct_answer": "water",
            "support": f"Every {w} needs water.",
        }
        for w in ("plant", "horse", "king", "queen", "river", "city")
    ]
    (tmp_path / "sciq_test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    local = tiny_cfg
    local["data"]["general"]["tasks"]["sciq_local"] = {
        "source": "lm_eval",
        "task": "sciq",
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(tmp_path / "sciq_test.jsonl")}},
    }
    local["eval"]["task_metrics"] = {"sciq_local": "acc_norm"}
    assert (
        main(
            [
                "evaluate",
                "--config",
                json.dumps(local),
                "--model-dir",
                str(tiny_model),
                "--data-dir",
                str(tiny_data),
                "--domains",
                "science",
                "--out",
                str(tmp_path / "eval.json"),
            ]
        )
        == 0
    )
    ev = read_json(tmp_path / "eval.json")
    sciq = ev["tasks"]["sciq_local"]
    assert sciq["n"] == 6 and sciq["task"] == "alr_sciq_local" and sciq["score"] == sciq["acc_norm"]
    assert "sciq_local" in ev["general"]["tasks"]
    items = [v for (task, _), v in read_items(tmp_path / "eval_items.jsonl.gz").items() if task == "sciq_local"]
    assert len(items) == 6


@pytest.mark.slow
def test_builtin_group_cannot_take_local_files():
    """Slow: indexing lm-eval's task catalogue takes about 9 s."""
    from alr.evaluate.tasks import builtin_task_config

    with pytest.raises(ValueError, match="group"):
        builtin_task_config("mmlu", {"source": "lm_eval", "task": "mmlu", "dataset_path": "json"})


def test_lambda_sweep_and_seeds_expand_into_runs(tiny_cfg, tmp_path):
    """Plan only: a lambda list gives <method>-lambda<value> runs (lora keeps its path), seeds multiply them
    (`selection.sweep_seeds: all`), and the sweep figure joins the targets; with `first`, only the first
    seed of each strength is planned before the selection checkpoint."""
    sweep = tiny_cfg
    sweep["regularize"]["lambda"] = [0.5, 2]
    sweep["seeds"] = [0, 1]
    planned = {}
    for mode in ("all", "first"):
        sweep["selection"]["sweep_seeds"] = mode
        path = tmp_path / f"sweep-{mode}.yaml"
        path.write_text(yaml.safe_dump(sweep))
        work = tmp_path / f"sweepwork-{mode}"
        work.mkdir()
        listed = snakemake(work, path, "--summary")
        assert listed.returncode == 0, listed.stderr[-3000:]
        planned[mode] = {line.split("\t")[0] for line in listed.stdout.splitlines()}
    runs = {p for p in planned["all"] if p.endswith("/train.json")}
    expected = {
        f"results/tiny-llama/{d}/{m}/seed{s}/train.json"
        for d in ("science", "medical")
        for m in ("lora", "alr-lambda0.5", "alr-lambda2")
        for s in (0, 1)
    }
    assert expected <= runs, sorted(runs)[:10]
    assert not any("/alr/" in r for r in runs)
    assert "results/figures/lambda_sweep.png" in planned["all"]
    first = {p for p in planned["first"] if p.endswith("/train.json")}
    assert {f"results/tiny-llama/science/alr-lambda{v}/seed0/train.json" for v in ("0.5", "2")} <= first
    assert not any("alr-lambda" in p and "/seed1/" in p for p in first)  # decided by the select checkpoint
    assert "results/tables/selection.json" in planned["first"]


@pytest.mark.slow
def test_sweep_selects_on_validation_then_runs_the_choice_on_every_seed(tiny_cfg, tmp_path):
    """A real sweep: every strength on seed 0 and the validation split, `select` (a checkpoint) picks one
    per domain, that strength alone runs on seed 1 too; the claims name the selected run. Selection reads
    no test file: after the run, every test evaluation is replaced by garbage and `alr select` on the
    same inputs gives the same choice."""
    cfg = tiny_cfg
    cfg.update(methods=["lora", "alr"], seeds=[0, 1], domains=["science"])
    cfg["regularize"]["lambda"] = [0.5, 50]
    cfg["eval"]["general_tasks_seeds"] = "first"  # seed 1's test passes leave the general tasks to seed 0
    _, work, path = snakemake_on(tmp_path, cfg, "select")
    chosen = read_json(work / "results" / "tables" / "selection.json")["selected"]
    assert set(chosen) == {"science"}
    runs = work / "results" / "tiny-llama"
    for domain, methods in chosen.items():
        for lam in ("0.5", "50"):
            picked = methods["alr"] == f"alr-lambda{lam}"
            seeds = {p.parent.name for p in (runs / domain / f"alr-lambda{lam}").glob("seed*/eval.json")}
            assert seeds == ({"seed0", "seed1"} if picked else {"seed0"}), (domain, lam)
            seed0 = runs / domain / f"alr-lambda{lam}" / "seed0"
            assert (seed0 / "valid.json").exists()
            # a sweep seed's test pass skips the general tasks; the selected point scores them apart
            assert read_json(seed0 / "eval.json")["general"]["tasks"] == []
            assert (seed0 / "eval_general.json").exists() == picked
    _general_tasks_apart_equal_one_pass(work, path, runs / "science" / chosen["science"]["alr"] / "seed0")
    claims = pd.read_csv(work / "results" / "tables" / "claims.csv")
    row = claims[(claims.claim == "alr_vs_lora") & (claims.domain == "science")].iloc[0]
    assert row.run_better == chosen["science"]["alr"] and row.protocol_version == load_protocol().version
    unmatched = read_json(work / "results" / "tables" / "selection.json")["gain_not_reached"]
    edge = read_json(work / "results" / "tables" / "selection.json")["at_edge"]
    assert set(edge.get("science", [])) == {"alr"}  # two strengths: either is an end of the grid
    assert row.verdict == (GAIN_NOT_REACHED if "alr" in unmatched.get("science", []) else AT_EDGE)
    assert f"protocol v{load_protocol().version}" in (work / "results" / "tables" / "claims.md").read_text()
    matched = pd.read_csv(work / "results" / "tables" / "matched.csv")  # alr read at lora's gain along its sweep
    assert sorted(matched.domain) == sorted(chosen) and set(matched.method) == {"alr"} and (matched.points == 2).all()
    for m in matched.itertuples():
        assert m.verdict.startswith("undecided") or m.lo <= m.diff <= m.hi, m
        assert pd.isna(m.forgetting_at_gain) == (not m.gain_lo <= m.reference_gain <= m.gain_hi)
    table = pd.read_csv(work / "results" / "tables" / "main.csv")
    assert set(table[table.base_method == "alr"].strength) == {0.5, 50.0}  # from each eval.json's record
    swept = table[table.base_method == "alr"]
    picked = swept.apply(lambda r: r.method == chosen[r.domain]["alr"], axis=1)
    assert swept[picked].general_score.notna().all() and swept[~picked].general_score.isna().all()
    assert swept[picked].forgetting_mc.notna().all() and swept[~picked].forgetting_mc.isna().all()
    assert (table[table.method.isin(["lora", chosen["science"]["alr"]])].general_seeds == 1).all()
    assert read_json(runs / "science" / "lora" / "seed1" / "eval.json")["general"]["tasks"] == []
    grown = copy.deepcopy(cfg)
    grown["regularize"]["lambda"] = [0.5, 50, 5]  # a new sweep point: no finished point reruns
    tuned = {j["run"] for rule, j in _planned_jobs(work, grown, tmp_path / "grown.yaml") if rule == "finetune"}
    assert tuned == {"alr-lambda5"}, tuned
    selection = pd.read_csv(work / "results" / "tables" / "selection.csv")
    for p in runs.glob("*/*/seed*/eval*"):  # test evaluations, lm-eval's own files too, become unreadable
        for f in p.rglob("*") if p.is_dir() else [p]:
            f.write_bytes(b"not json")
    valid = sorted(str(p) for p in runs.glob("*/*/seed0/valid.json") if "/base/" not in str(p))
    assert (
        main(
            [
                "select",
                "--config",
                str(path),
                "--base-valid",
                str(runs / "base" / "valid.json"),
                "--valid",
                *valid,
                "--out-prefix",
                str(tmp_path / "again"),
            ]
        )
        == 0
    )
    assert read_json(tmp_path / "again.json")["selected"] == chosen
    assert pd.read_csv(tmp_path / "again.csv").equals(selection)


def _general_tasks_apart_equal_one_pass(work, config_file, seed0) -> None:
    """The selected sweep point's eval.json with its eval_general.json, as the reports merge them, equals
    one `alr evaluate` pass that scores everything."""
    from alr.evaluate.records import read_eval, read_eval_items

    model, data = work / "resources" / "models" / "tiny-llama", work / "resources" / "data"
    whole = seed0.parent / "whole" / "eval.json"
    run = ["--weights", str(seed0 / "model"), "--run-name", seed0.parent.name, "--seed", "0", "--threads", "1"]
    argv = [sys.executable, "-m", "alr", *evaluate_argv(config_file, model, data, whole, *run)]
    done = subprocess.run(argv, capture_output=True, text=True)  # one thread in its own process, as the job ran
    assert done.returncode == 0, done.stderr[-2000:]
    merged, one = read_eval(seed0 / "eval.json"), read_json(whole)
    for key in ("tasks", "general", "domains"):
        assert merged[key] == one[key], key
    assert read_eval_items(seed0 / "eval.json") == read_items(whole.with_name("eval_items.jsonl.gz"))


def test_slurm_profile_plans(tiny_config_file, tmp_path):
    pytest.importorskip("snakemake_executor_plugin_slurm", reason="pip install -e . installs the pinned plugin")
    work = tmp_path / "slurmwork"
    work.mkdir()
    proc = snakemake(work, tiny_config_file, "-n", "--profile", str(REPO / "workflow" / "profiles" / "slurm"))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "slurm_partition=<gpu-partition>" in out and "gpu=1" in out


@pytest.mark.slow
def test_workstation_profile_queues_the_gpu_jobs_on_one_gpu(tiny_cfg, tmp_path):
    """The one-GPU workstation profile (docs/gpu-cluster.md) plans the tiny run; every job of a GPU rule
    carries gpu=1 and no other job asks for a GPU, while the profile's global limit, as Snakemake's own
    argument parser reads it, is gpu=1: the GPU jobs run one at a time."""
    from snakemake.cli import parse_args

    from tests.test_profiles import gpu_rules

    profile = REPO / "workflow" / "profiles" / "workstation"
    work = tmp_path / "work"
    work.mkdir()
    tiny_cfg["importance"]["seed"] = "run"  # SI per seed (importance_per_seed), the Fisher by the importance rule
    tiny_cfg["baselines"]["efficiency_estimators"] = ["si", "fisher"]
    cfg_path = tmp_path / "workstation.yaml"
    cfg_path.write_text(yaml.safe_dump(tiny_cfg))
    proc = snakemake(work, cfg_path, "-n", "--cores", "all", "--profile", str(profile))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    jobs = {}  # rule -> the `resources:` line of each of its jobs
    for block in re.split(r"^(?:local)?rule ", out, flags=re.M)[1:]:
        found = re.search(r"^\s+resources: (.*)$", block, re.M)
        jobs.setdefault(block.split(":", 1)[0], []).append(dict(kv.split("=", 1) for kv in found.group(1).split(", ")))
    assert gpu_rules() <= set(jobs), sorted(jobs)
    for rule, resources in jobs.items():
        assert all(r.get("gpu") == ("1" if rule in gpu_rules() else None) for r in resources), (rule, resources)
    _, args = parse_args(["-s", str(REPO / "Snakefile"), "--cores", "all", "--profile", str(profile)])
    assert {name: res.value for name, res in args.resources.items()} == {"gpu": 1}


def test_official_methods_plan_their_own_importance_and_adapter(tiny_cfg, tmp_path):
    """Plan only, with config/hlora-official.yaml's methods: alr_official reads si_official and
    continues si_official's adapter; lora and alr start fresh from si; ewc_lora sweeps fisher.lambda."""
    cfg = tiny_cfg
    official = yaml.safe_load((REPO / "config" / "hlora-official.yaml").read_text())
    cfg.update(methods=official["methods"] + ["lora_phase1"], method_domains={})
    cfg["fisher"]["lambda"] = [0.5, 50]
    out = snakemake_on(tmp_path, cfg, "official", "-n", "-p")[0].out
    commands = {}
    for line in out.splitlines():
        if "alr finetune" in line and f"--domain {cfg['domains'][0]}" in line:
            commands[re.search(r"--run-name (\S+)", line)[1]] = line
    assert set(commands) == {
        "lora",
        "alr",
        "lora_official",
        "alr_official",
        "alr_official_no_layer",
        "lora_phase1",
        "ewc_lora-lambda0.5",
        "ewc_lora-lambda50",
        "ewc_lora_raw-lambda0.5",
        "ewc_lora_raw-lambda50",
    }
    assert "importance/si_official.safetensors" in commands["alr_official"]
    for warm in ("alr_official", "lora_official"):  # the authors' warm start, with and without the penalty
        assert "--init-adapter results/tiny-llama/importance/si_official_adapter" in commands[warm]
    assert "--importance" not in commands["lora_official"]
    assert "--init-adapter results/tiny-llama/importance/si_adapter" in commands["lora_phase1"]
    assert "--init-adapter" not in commands["lora"] and "--init-adapter" not in commands["alr"]
    assert "importance/si.safetensors" in commands["alr"]
    assert "--estimator si_official" in out


def test_seed_run_gives_each_phase2_seed_its_own_phase1(tiny_cfg, tmp_path):
    """importance.seed: run: phase 1 runs once per phase-2 seed (with that seed), and each seed's alr
    run reads its own file, so the importance's own noise enters the intervals over seeds; lora and
    the Fisher (not seeded) are untouched."""
    cfg = tiny_cfg
    cfg.update(seeds=[0, 1], methods=["lora", "alr"])
    cfg["importance"]["seed"] = "run"
    out = snakemake_on(tmp_path, cfg, "tied", "-n", "-p")[0].out
    recorded = sorted(re.findall(r"alr importance --estimator si .*--out (\S+) --seed (\d+)", out))
    assert recorded == [(f"results/tiny-llama/importance/seed{k}/si.safetensors", str(k)) for k in (0, 1)]
    for line in out.splitlines():
        if "alr finetune" in line and "--run-name alr" in line:
            seed = re.search(r"--seed (\d+)", line)[1]
            assert f"--importance results/tiny-llama/importance/seed{seed}/si.safetensors" in line
    assert "importance/si.safetensors" not in out


@pytest.mark.slow
def test_a_complete_config_is_read_alone_as_a_cluster_job_reads_it(tmp_path):
    """Snakemake starts a cluster job with the config files but without --replace-workflow-config. So
    config/paper.yaml says `complete: true`, and plans without the flag; the same file without the key is
    merged over config/config.yaml and refused, with the hint naming the key."""
    import sys

    def plan(config) -> subprocess.CompletedProcess:
        work = tmp_path / config.stem
        work.mkdir()
        argv = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(work), "-n", "--cores", "1"]
        return subprocess.run([*argv, "--configfile", str(config)], capture_output=True, text=True)

    paper = REPO / "config" / "paper.yaml"
    done = plan(paper)
    assert done.returncode == 0, done.stderr[-3000:]
    spec = yaml.safe_load(paper.read_text())
    del spec["complete"]
    (tmp_path / "partial.yaml").write_text(yaml.safe_dump(spec))
    refused = plan(tmp_path / "partial.yaml")
    assert refused.returncode != 0 and "says `complete: true`" in refused.stdout + refused.stderr
