"""Run names: one run per method, or <method>-lambda<value> for each value of a lambda sweep."""
import pytest

from alr.methods import get_method
from alr.runs import all_runs, parse_run, run_config, run_order


def test_run_names_for_sweeps():
    cfg = {"methods": ["lora", "alr", "ewc_lora"], "regularize": {"lambda": 2.0}, "fisher": {"lambda": 0.5}}
    assert all_runs(cfg) == ["lora", "alr", "ewc_lora"]  # one lambda: today's paths
    cfg["regularize"]["lambda"] = [0.5, 2, 1e-5]
    assert all_runs(cfg) == ["lora", "alr-lambda0.5", "alr-lambda2", "alr-lambda1e-05", "ewc_lora"]
    assert parse_run("alr_no_layer-lambda1e-05") == ("alr_no_layer", 1e-5)
    assert run_config(cfg, "alr-lambda0.5")["regularize"]["lambda"] == 0.5
    assert cfg["regularize"]["lambda"] == [0.5, 2, 1e-5]  # not modified in place
    with pytest.raises(ValueError, match="name the run"):
        run_config(cfg, "alr")
    with pytest.raises(ValueError, match="unknown method"):
        parse_run("magic-lambda1")


def test_each_method_sweeps_its_own_strength_key():
    """fisher.lambda sweeps ewc_lora (not alr); official.regularize.lambda sweeps alr_official only."""
    cfg = {"methods": ["alr", "ewc_lora", "alr_official"], "regularize": {"lambda": 2.0},
           "fisher": {"lambda": [0.5, 50]}, "official": {"regularize": {"lambda": 1e-3}}}
    assert all_runs(cfg) == ["alr", "ewc_lora-lambda0.5", "ewc_lora-lambda50", "alr_official"]
    assert run_config(cfg, "ewc_lora-lambda50")["fisher"]["lambda"] == 50
    official = run_config(cfg, "alr_official")
    assert official["regularize"]["lambda"] == 1e-3 and run_config(cfg, "alr")["regularize"]["lambda"] == 2.0
    cfg["official"]["regularize"]["lambda"] = [1e-3, 1e-2]
    assert all_runs(cfg)[-2:] == ["alr_official-lambda0.001", "alr_official-lambda0.01"]
    swept = run_config(cfg, "alr_official-lambda0.01")
    assert swept["regularize"]["lambda"] == 0.01
    assert get_method("alr_official").strength(swept) == 0.01  # merging `official` again keeps the run's value


def test_table_rows_follow_the_configured_methods_and_increasing_strength():
    runs = {"ewc_lora-lambda50", "alr-lambda2", "lora", "alr-lambda0.5", "ewc_lora-lambda0.5"}
    assert run_order(["lora", "alr", "ewc_lora"], runs) == [
        "lora", "alr-lambda0.5", "alr-lambda2", "ewc_lora-lambda0.5", "ewc_lora-lambda50"]
