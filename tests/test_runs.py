"""Run names: one run per method, or <method>-<tag><value> for each value of a strength sweep."""

import re

import pytest

from alr.methods.registry import get_method
from alr.methods.runs import all_runs, parse_run, recorded_strength, resolve_run, run_order
from tests.tiny import snakemake_on


def test_run_names_for_sweeps():
    cfg = {"methods": ["lora", "alr", "ewc_lora"], "regularize": {"lambda": 2.0}, "fisher": {"lambda": 0.5}}
    assert all_runs(cfg) == ["lora", "alr", "ewc_lora"]  # one lambda: today's paths
    cfg["regularize"]["lambda"] = [0.5, 2, 1e-5]
    assert all_runs(cfg) == ["lora", "alr-lambda0.5", "alr-lambda2", "alr-lambda1e-05", "ewc_lora"]
    assert parse_run("alr_no_layer-lambda1e-05") == ("alr_no_layer", 1e-5)
    assert resolve_run(cfg, "alr-lambda0.5").config["regularize"]["lambda"] == 0.5
    assert cfg["regularize"]["lambda"] == [0.5, 2, 1e-5]  # not modified in place
    with pytest.raises(ValueError, match="name the run"):
        resolve_run(cfg, "alr")
    with pytest.raises(ValueError, match="unknown method"):
        parse_run("magic-lambda1")


def test_a_run_name_is_checked_against_its_methods_tag_and_the_configured_grid():
    """The name's value must be one of the configured values (the run trains with that exact value,
    not a rounded one); the tag must be the method's own; two values may not name the same run."""
    cfg = {"methods": ["alr", "kl_lora"], "regularize": {"lambda": [0.5, 0.1234567891]}, "kl": {"weight": [1, 10]}}
    assert all_runs(cfg) == ["alr-lambda0.5", "alr-lambda0.123457", "kl_lora-w1", "kl_lora-w10"]
    assert resolve_run(cfg, "alr-lambda0.123457").strength == ("regularize.lambda", 0.1234567891)
    assert resolve_run(cfg, "alr-lambda0.123457").config["regularize"]["lambda"] == 0.1234567891
    with pytest.raises(ValueError, match=r"3 is not a configured value of kl.weight \(1, 10\)"):
        resolve_run(cfg, "kl_lora-w3")
    with pytest.raises(ValueError, match="named kl_lora-w<value>, not -lambda"):
        parse_run("kl_lora-lambda1")
    cfg["regularize"]["lambda"] = [0.1234567891, 0.1234567892]
    with pytest.raises(ValueError, match="name the same run"):
        all_runs(cfg)


def test_reports_take_the_strength_from_the_record():
    """eval.json's run record carries method and strength; a record without one (an older alr) falls back
    to its name."""
    record = {
        "method": "alr",
        "run": "alr-lambda0.123457",
        "strength": {"key": "regularize.lambda", "value": 0.12345678},
    }
    assert recorded_strength(record) == ("alr", 0.12345678)
    assert recorded_strength({"method": "lora", "run": "lora", "strength": None}) == ("lora", None)
    assert recorded_strength({"method": "alr", "run": "alr-lambda2"}) == ("alr", 2.0)


def test_each_method_sweeps_its_own_strength_key():
    """fisher.lambda sweeps ewc_lora (not alr); official.regularize.lambda sweeps alr_official only."""
    cfg = {
        "methods": ["alr", "ewc_lora", "alr_official"],
        "regularize": {"lambda": 2.0},
        "fisher": {"lambda": [0.5, 50]},
        "official": {"regularize": {"lambda": 1e-3}},
    }
    assert all_runs(cfg) == ["alr", "ewc_lora-lambda0.5", "ewc_lora-lambda50", "alr_official"]
    assert resolve_run(cfg, "ewc_lora-lambda50").config["fisher"]["lambda"] == 50
    official = resolve_run(cfg, "alr_official").config
    assert official["regularize"]["lambda"] == 1e-3 and resolve_run(cfg, "alr").config["regularize"]["lambda"] == 2.0
    cfg["official"]["regularize"]["lambda"] = [1e-3, 1e-2]
    assert all_runs(cfg)[-2:] == ["alr_official-lambda0.001", "alr_official-lambda0.01"]
    swept = resolve_run(cfg, "alr_official-lambda0.01").config
    assert swept["regularize"]["lambda"] == 0.01
    assert get_method("alr_official").strength(swept) == 0.01  # merging `official` again keeps the run's value


def test_table_rows_follow_the_configured_methods_and_increasing_strength():
    runs = {"ewc_lora-lambda50", "alr-lambda2", "lora", "alr-lambda0.5", "ewc_lora-lambda0.5"}
    assert run_order(["lora", "alr", "ewc_lora"], runs) == [
        "lora",
        "alr-lambda0.5",
        "alr-lambda2",
        "ewc_lora-lambda0.5",
        "ewc_lora-lambda50",
    ]


def test_every_method_with_a_strength_sweeps_it():
    """kl.weight, baselines.replay_fraction and baselines.wise_ft_beta sweep kl_lora, replay and wise_ft
    like any lambda; each run's config holds its own value; methods without a strength never sweep."""
    cfg = {
        "methods": ["lora", "kl_lora", "replay", "wise_ft", "full_ft"],
        "regularize": {"lambda": [1, 2]},
        "kl": {"weight": [0.5, 10]},
        "baselines": {"replay_fraction": [0.1, 0.25], "wise_ft_beta": [0.25, 0.5, 1]},
    }
    assert all_runs(cfg) == [
        "lora",
        "kl_lora-w0.5",
        "kl_lora-w10",
        "replay-frac0.1",
        "replay-frac0.25",
        "wise_ft-beta0.25",
        "wise_ft-beta0.5",
        "wise_ft-beta1",
        "full_ft",
    ]
    assert resolve_run(cfg, "kl_lora-w10").config["kl"]["weight"] == 10
    replay, wise = get_method("replay"), get_method("wise_ft")
    assert replay.replay_fraction(resolve_run(cfg, "replay-frac0.25").config) == 0.25
    assert wise.delta_scale(resolve_run(cfg, "wise_ft-beta0.25").config) == 0.25
    assert cfg["baselines"]["wise_ft_beta"] == [0.25, 0.5, 1]  # not modified in place
    with pytest.raises(ValueError, match="name the run"):
        resolve_run(cfg, "wise_ft")
    with pytest.raises(ValueError, match="no strength to sweep"):
        resolve_run(cfg, "lora-lambda2")
    keys = [get_method(m).strength_key for m in ("lora", "full_ft", "alr", "ewc_lora", "kl_lora", "replay", "wise_ft")]
    assert keys == [
        None,
        None,
        "regularize.lambda",
        "fisher.lambda",
        "kl.weight",
        "baselines.replay_fraction",
        "baselines.wise_ft_beta",
    ]
    cfg["kl"]["weight"], cfg["baselines"] = 1.0, {"replay_fraction": 0.1, "wise_ft_beta": 0.5}
    assert all_runs(cfg) == ["lora", "kl_lora", "replay", "wise_ft", "full_ft"]
    assert get_method("wise_ft").delta_scale(resolve_run(cfg, "wise_ft").config) == 0.5
    assert run_order(["lora", "wise_ft"], {"wise_ft-beta1", "lora", "wise_ft-beta0.25"}) == [
        "lora",
        "wise_ft-beta0.25",
        "wise_ft-beta1",
    ]


def test_snakemake_plans_the_sweeps_and_kl_loras_general_text(tiny_cfg, tmp_path):
    """Plan only: one finetune per kl.weight and replay_fraction, none for wise_ft, whose evaluations
    rescale lora's weights by their own beta; kl_lora's finetune jobs read general_text's train split."""
    cfg = tiny_cfg
    cfg.update(methods=["lora", "kl_lora", "replay", "wise_ft"], domains=["science"])
    cfg["kl"]["weight"] = [1, 10]
    cfg["baselines"].update(replay_fraction=[0.1, 0.2], wise_ft_beta=[0.25, 0.5])
    out = snakemake_on(tmp_path, cfg, "sweeps", "-n", "-p")[0].out
    finetunes = set(re.findall(r"alr finetune .*--run-name (\S+)", out))
    assert finetunes == {"lora", "kl_lora-w1", "kl_lora-w10", "replay-frac0.1", "replay-frac0.2"}
    evals = {run: scale for scale, run in re.findall(r"--delta-scale (\S+) --run-name (\S+)", out)}
    assert {run: evals[run] for run in ("wise_ft-beta0.25", "wise_ft-beta0.5", "lora")} == {
        "wise_ft-beta0.25": "0.25",
        "wise_ft-beta0.5": "0.5",
        "lora": "1.0",
    }
    assert re.search(r"--weights results/tiny-llama/science/lora/seed0/model --delta-scale 0.25", out)
    jobs = out.split("\nrule ")
    kl_jobs = [j for j in jobs if j.startswith("finetune") and "/kl_lora-w" in j]
    other = [j for j in jobs if j.startswith("finetune") and "/kl_lora-w" not in j]
    assert len(kl_jobs) == 2 and all("resources/data/general_text/train.jsonl" in j for j in kl_jobs)
    assert other and not any("general_text" in j for j in other)
