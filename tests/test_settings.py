"""Settings that are accepted must work: every schema key is read by the code, `importance.clamp:
none` gives a usable importance file, and each method records (and resumes only with) every config
section it reads."""

import copy
import re

import pytest
import torch
import yaml
from safetensors.torch import load_file

import alr.model.trainer as trainer_mod
from alr.core.errors import ConfigError
from alr.core.io import read_json
from alr.core.sections import section
from alr.finetune.run import finetune
from alr.importance.estimators import ESTIMATORS
from alr.importance.store import ImportanceMismatchError, load_importance, save_importance
from alr.methods.registry import METHODS, PHASE2_START_KEYS
from alr.methods.runs import resolve_run
from alr.model.checkpoints import CheckpointMismatchError
from tests.tiny import REPO, Killed, kill_at_step, record

# How the code reads a config section besides `[...]["<section>"]["<key>"]`: the variable names it
# binds the section to. A key counts as read when one of them (or the subscript chain) indexes it.
READERS = {
    "importance": ["imp_cfg"],
    "train": ["train_cfg"],
    "eval": ["eval_cfg"],
    "lora": ["lora_cfg"],
    "data": ["data_cfg", "data"],
    "fisher": ["f_cfg"],
    "mas": ["m_cfg"],
    "kl": ["kl_cfg"],
    "regularize": ["reg_cfg"],
    "compare": ["comparison", "compare_cfg"],
    "bigbench": ["bb", "spec"],
    "text": ["text_spec", "spec"],
    "source": ["source", "src", "spec"],
}  # fetch_artifact(spec) reads data.bigbench and model.source
_SUB = r"""(?:\[\s*["']{k}["']\s*\]|\.get\(\s*["']{k}["'])"""


def _schema_leaves(node, path, defs):
    if "$ref" in node:
        node = defs[node["$ref"].split("/")[-1]]
    out = []
    for key, sub in node.get("properties", {}).items():
        out += _schema_leaves(sub, path + [key], defs) or [path + [key]]
    for alt in node.get("oneOf", []):
        out += _schema_leaves(alt, path, defs)
    if isinstance(node.get("additionalProperties"), dict):  # named entries (datasets, per-task metrics)
        out += _schema_leaves(node["additionalProperties"], path + ["*"], defs)
    return out


def test_every_schema_key_is_read_by_the_code():
    """A key the schema accepts but no code reads would be a setting that silently does nothing."""
    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    code = "\n".join(
        p.read_text() for p in [*REPO.glob("alr/**/*.py"), *REPO.glob("workflow/**/*.smk"), REPO / "Snakefile"]
    )
    unread = []
    for path in sorted(set(map(tuple, _schema_leaves(schema, [], schema["$defs"])))):
        key, parent = path[-1], (path[-2] if len(path) > 1 else None)
        if parent in (None, "*"):  # top-level sections and named entries: the key alone
            owner = ""
        else:
            owner = (
                "(?:"
                + "|".join([_SUB.format(k=parent)] + [rf"\b{v}\b" for v in READERS.get(parent, [])])
                + r")(?:\[[^\]\n]+\])*"
            )
        dotted = f'"{".".join(path)}"' in code  # a registry's key: Method(lr_key="baselines.full_ft_lr")
        if not dotted and not re.search(owner + _SUB.format(k=key), code):
            unread.append(".".join(path))
    assert unread == [], f"schema keys no code reads: {unread}"


@pytest.fixture
def tiny(tiny_model, tiny_data, tiny_cfg):
    return tiny_model, tiny_data, tiny_cfg


def test_unclamped_importance_keeps_negatives_and_trains(tiny, tmp_path):
    model, data, cfg = tiny
    files = {}
    for clamp in ("final", "none"):
        c = copy.deepcopy(cfg)
        c["importance"]["clamp"] = clamp
        files[clamp] = tmp_path / f"clamp{clamp}" / "si.safetensors"
        side = record("si", c, model, data, files[clamp])
        assert side["nonnegative"] is (clamp == "final")
    clamped, free = load_file(str(files["final"])), load_file(str(files["none"]))
    assert any((t < 0).any() for t in free.values())  # the tiny run has negative path contributions
    for name, t in free.items():  # the same path integral, only the clamp differs
        assert torch.equal(t.clamp_min(0), clamped[name]), name
    load_importance(files["none"])  # accepted: its sidecar says negatives are intended
    c = copy.deepcopy(cfg)
    c["importance"]["clamp"] = "none"
    c["regularize"].update({"lambda": 10.0, "normalize": "none"})
    rec = finetune(resolve_run(c, "alr"), model, data, "science", 0, tmp_path / "run", files["none"])
    assert rec["final_reg"] is not None and torch.isfinite(torch.tensor(rec["final_reg"]))


def test_negative_importance_in_a_clamped_file_is_refused(tmp_path):
    tensors = {"m": torch.tensor([[1.0, -0.5]])}
    path = save_importance(
        tmp_path / "si.safetensors", tensors, {"estimator": "si", "fingerprint": "f", "nonnegative": True}
    )
    assert path["nonnegative"] is True
    with pytest.raises(ImportanceMismatchError, match="negative values"):
        load_importance(tmp_path / "si.safetensors")


def _holds(cfg: dict, dotted: str) -> bool:
    for part in dotted.split("."):
        if not isinstance(cfg, dict) or part not in cfg:
            return False
        cfg = cfg[part]
    return True


def test_each_training_method_names_every_key_it_reads(tiny, tmp_path):
    """Resolving the run or tuning it refuses, naming the key, a config holding one key fewer than the
    method's `config_keys` (checked before any model loads), unless the method's own settings section
    supplies that key (`Method.effective`: `alr_official` reads `official.regularize` over `regularize`)."""
    model, data, cfg = tiny
    for name, spec in METHODS.items():
        if not spec.trains:
            continue
        for dropped in spec.config_keys:
            if any(dropped.startswith(k + ".") for k in spec.config_keys):
                continue  # inside a section the method reads whole
            if spec.settings and dropped != spec.settings and _holds(cfg[spec.settings], dropped):
                continue
            partial = section(cfg, *(k for k in spec.config_keys if k != dropped))
            with pytest.raises(ConfigError, match=f"has no '{re.escape(dropped)}'"):
                finetune(resolve_run(copy.deepcopy(partial), name), model, data, "science", 0, tmp_path / name)


def test_lora_reads_no_penalty_setting_and_the_fisher_no_phase2_setting():
    assert not any(k.startswith("regularize.") and k not in PHASE2_START_KEYS for k in METHODS["lora"].config_keys)
    assert {"fisher.samples", "fisher.max_length"} <= set(ESTIMATORS["fisher"].keys)
    assert not {"fisher", "fisher.lambda", "fisher.normalize"} & set(ESTIMATORS["fisher"].keys)
    assert {"fisher.lambda", "fisher.normalize"} <= set(METHODS["ewc_lora"].config_keys)


def test_ewc_lora_records_its_fisher_section_and_resumes_only_with_it(tiny, tmp_path, monkeypatch):
    model, data, cfg = tiny
    fisher = tmp_path / "fisher" / "fisher.safetensors"
    record("fisher", cfg, model, data, fisher)
    c = copy.deepcopy(cfg)
    c["train"].update(max_steps=4, checkpoint_steps=2)
    c["fisher"]["lambda"] = 3.0
    args = (model, data, "science", 0, tmp_path / "run", fisher)

    with monkeypatch.context() as mp:
        mp.setattr(trainer_mod, "no_final_checkpoint_callback", kill_at_step(3))
        with pytest.raises(Killed):
            finetune(resolve_run(c, "ewc_lora"), *args)
    assert read_json(tmp_path / "run" / "checkpoints" / "run.json")["config"]["fisher"]["lambda"] == 3.0
    changed = copy.deepcopy(c)
    changed["fisher"]["lambda"] = 0.5
    with pytest.raises(CheckpointMismatchError, match=r"config\.fisher\.lambda: 3\.0 in the checkpoints, 0\.5 now"):
        finetune(resolve_run(changed, "ewc_lora"), *args)
    rec = finetune(resolve_run(c, "ewc_lora"), *args)
    assert rec["resumed_from_step"] == 2
    assert read_json(tmp_path / "run" / "train.json")["config"]["fisher"] == {
        k: c["fisher"][k] for k in ("lambda", "normalize")
    }
    assert set(rec["config"]) == {k.split(".")[0] for k in METHODS["ewc_lora"].config_keys}
