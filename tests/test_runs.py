"""Run names: one run per method, or <method>-lambda<value> for each value of a lambda sweep."""
import pytest

from alr.runs import all_runs, parse_run, run_config


def test_run_names_for_sweeps():
    cfg = {"methods": ["lora", "alr", "ewc_lora"], "regularize": {"lambda": 2.0}}
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
