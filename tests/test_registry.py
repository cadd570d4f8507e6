"""The method and estimator registries are the one place a method or an estimator is defined: a
plugin adds both, and the workflow, the CLI, the schema and the tables take them up unchanged."""

import contextlib
import copy
import os
import subprocess
import sys

import pandas as pd
import pytest
import yaml
from safetensors.torch import load_file

from alr.core.io import read_json
from alr.finetune.run import finetune
from alr.importance.estimators import ESTIMATORS
from alr.methods.registry import METHODS, Method, register
from alr.methods.runs import resolve_run
from tests.tiny import REPO, snakemake

PLUGIN = {"ALR_PLUGINS": "tests.plugin_example", "PYTHONPATH": str(REPO)}


@contextlib.contextmanager
def registered(method: Method):
    register(method)
    try:
        yield method
    finally:
        METHODS.pop(method.name)


def test_loss_hook_sees_every_micro_batch_and_moves_the_weights(tiny_model, tiny_data, tiny_cfg, tmp_path):
    """A method's loss-hook factory is called once with the run's HookContext; the hook it returns
    receives each micro-batch's inputs and outputs, once per micro-batch (10 train items in batches of
    2, 2 accumulated per step: 3 steps, the last one of a single micro-batch), and its term changes
    what is learnt."""
    calls, contexts = [], []

    def factory(ctx):
        contexts.append(ctx)

        def hook(model, inputs, outputs):
            calls.append(inputs["input_ids"].shape[0])
            return 1e4 * outputs.logits.float().square().mean()

        return hook

    cfg = copy.deepcopy(tiny_cfg)
    cfg["train"].update(batch_size=2, grad_accum=2, max_steps=3)
    plain = finetune(resolve_run(cfg, "lora"), tiny_model, tiny_data, "science", 0, tmp_path / "lora")
    with registered(Method("hooked_lora", "LoRA + a logit penalty (test)", loss_hook=factory)):
        hooked = finetune(resolve_run(cfg, "hooked_lora"), tiny_model, tiny_data, "science", 0, tmp_path / "hooked")
    assert calls == [2] * 5 and hooked["steps"] == 3
    # same seed, same batches: the hook's term alone moves the logged cross-entropy
    assert hooked["run"] == "hooked_lora" and abs(hooked["first_ce"] - plain["first_ce"]) > 1e-6
    (ctx,) = contexts  # the factory runs once per run, with what a hook may need
    assert ctx.seed == 0 and ctx.data_dir == tiny_data and ctx.tok is not None and hasattr(ctx.model, "disable_adapter")
    assert ctx.cfg["train"]["max_steps"] == 3
    a = load_file(str(tmp_path / "lora" / "model" / "adapter_model.safetensors"))
    b = load_file(str(tmp_path / "hooked" / "model" / "adapter_model.safetensors"))
    assert any(not (a[k] == b[k]).all() for k in a)


def test_schema_and_cli_take_their_names_from_the_registries():
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "from alr.plugins import load_plugins; load_plugins(); from alr.config import _schema; s = _schema(); "
            "print(s['properties']['methods']['items']['enum']); "
            "print(s['properties']['baselines']['properties']['efficiency_estimators']['items']['enum'])",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, **PLUGIN},
        check=True,
    )
    methods, estimators = out.stdout.splitlines()
    assert "'ones_lora'" in methods and all(f"'{m}'" in methods for m in METHODS)
    assert "'ones'" in estimators and all(f"'{e}'" in estimators for e in ESTIMATORS)
    helped = subprocess.run(
        [sys.executable, "-m", "alr.cli", "finetune", "--help"],
        capture_output=True,
        text=True,
        env={**os.environ, **PLUGIN},
        check=True,
    ).stdout
    assert "ones_lora" in helped and "a test plugin" in helped


def test_registration_checks_the_names_an_entry_gives():
    """A misspelt estimator or config key fails when the method is registered, not mid-run."""
    with pytest.raises(ValueError, match="importance='sii' is no registered estimator.*did you mean 'si'"):
        register(Method("typo_lora", "a typo", importance="sii"))
    with pytest.raises(ValueError, match="strength_key='kl.wieght' is no config key"):
        register(Method("typo_lora", "a typo", strength_key="kl.wieght"))
    with pytest.raises(ValueError, match="hook_sections\\[0\\]='kll' is no config key"):
        register(Method("typo_lora", "a typo", hook_sections=("kll",)))
    assert "typo_lora" not in METHODS


def test_config_without_loaded_registries_says_what_to_call():
    out = subprocess.run(
        [sys.executable, "-c", "from alr.config import load_config; load_config('config/config.yaml')"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert out.returncode != 0 and "call alr.plugins.load_plugins()" in out.stderr


@pytest.mark.slow
def test_a_plugin_method_and_estimator_run_through_snakemake(tiny_cfg, tmp_path):
    cfg = copy.deepcopy(tiny_cfg)
    cfg.update(domains=["science"], methods=["lora", "ones_lora"])
    cfg["baselines"]["efficiency_estimators"] = ["ones"]
    path = tmp_path / "plugin.yaml"
    path.write_text(yaml.safe_dump(cfg))
    work = tmp_path / "work"
    work.mkdir()
    proc = snakemake(work, path, env=PLUGIN)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    table = pd.read_csv(work / "results" / "tables" / "main.csv")
    assert sorted(table.method) == ["base", "lexical", "lora", "majority", "ones_lora"]
    run = work / "results" / "tiny-llama" / "science" / "ones_lora" / "seed0"
    train = read_json(run / "train.json")
    assert train["importance"].endswith("results/tiny-llama/importance/ones.safetensors") and train["final_reg"] > 0
    assert read_json(run / "eval.json")["run"] == {
        "domain": "science",
        "method": "ones_lora",
        "run": "ones_lora",
        "seed": 0,
        "strength": {"key": "regularize.lambda", "value": 2.0},
    }
    eff = pd.read_csv(work / "results" / "tables" / "efficiency.csv")
    assert "ones" in set(eff.name)
