import copy
import json
import re

import pytest

from alr.config import load_config, validate_config
from alr.core.errors import ConfigError
from tests.tiny import REPO


@pytest.fixture(scope="module")
def default_cfg():
    return load_config(REPO / "config" / "config.yaml")


def _errors(cfg):
    with pytest.raises(ConfigError) as info:
        validate_config(cfg)
    return str(info.value)


def test_default_config_is_valid(default_cfg):
    assert default_cfg["model"]["name"] == "smollm2-135m-instruct"


def test_unknown_key_is_named_with_allowed_keys(default_cfg):
    cfg = copy.deepcopy(default_cfg)
    cfg["train"]["learning_rate"] = 1e-4
    msg = _errors(cfg)
    assert "'train'" in msg and "'learning_rate'" in msg and "allowed:" in msg and "lr" in msg


def test_bad_values_are_all_reported(default_cfg):
    cfg = copy.deepcopy(default_cfg)
    cfg["eval"]["metric"] = "f1"
    cfg["lora"]["r"] = 0
    cfg["methods"] = ["lora", "magic"]
    msg = _errors(cfg)
    assert "eval.metric" in msg and "'f1'" in msg
    assert "lora.r" in msg
    assert "methods.1" in msg and "'magic'" in msg


def test_domain_without_dataset_is_refused(default_cfg):
    cfg = copy.deepcopy(default_cfg)
    cfg["domains"] = ["science", "biology"]
    assert "'biology' has no dataset under data.domains" in _errors(cfg)


def test_method_domains_restrict_runs_and_refuse_typos(default_cfg):
    from alr.methods.runs import domain_runs

    cfg = copy.deepcopy(default_cfg)
    cfg.update(
        domains=["science", "medical"], methods=["lora", "alr"], method_domains={"alr": ["medical", "chemistry"]}
    )
    validate_config(cfg)  # chemistry is a known dataset, just not configured: it restricts nothing
    assert domain_runs(cfg) == [("science", "lora"), ("medical", "lora"), ("medical", "alr")]
    cfg["method_domains"] = {"alr_typo": ["science"], "alr": ["biology"]}
    msg = _errors(cfg)
    assert "method_domains.alr_typo" in msg and "method_domains.alr': 'biology'" in msg


def test_inline_json_partial_config(default_cfg):
    cfg = load_config(json.dumps({"train": default_cfg["train"]}), partial=True)
    assert cfg["train"]["lr"] == default_cfg["train"]["lr"]
    with pytest.raises(ConfigError, match="required"):
        load_config(json.dumps({"train": default_cfg["train"]}))


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")


def test_readme_key_table_documents_every_schema_key():
    """Each config section and each key directly under it has an entry in config/README.md's key list
    (`- <keys> (default: ...): meaning`); an entry may name several keys (`lora.r`, `lora.alpha`) or one
    deeper down (`model.source.type`)."""
    from alr.config import _schema

    rows = [
        re.split(r" \((?:default: |no default\))", line, maxsplit=1)[0]
        for line in (REPO / "config" / "README.md").read_text().splitlines()
        if line.startswith("- `")
    ]
    assert len(rows) > 40, "config/README.md lost its key list"
    documented = {key for row in rows for key in re.findall(r"`([^`]+)`", row)}
    for section, spec in _schema()["properties"].items():
        for key in [section, *(f"{section}.{k}" for k in spec.get("properties", {}))]:
            assert any(d == key or d.startswith(key + ".") for d in documented), key


def test_schema_methods_match_registry():
    from alr.config import _schema
    from alr.methods.registry import METHODS

    assert set(_schema()["properties"]["methods"]["items"]["enum"]) == set(METHODS)


def test_builtin_lm_eval_tasks_are_general_only(default_cfg):
    cfg = copy.deepcopy(default_cfg)
    cfg["data"]["general"]["tasks"]["arc_easy"] = {"source": "lm_eval", "task": "arc_easy"}
    validate_config(cfg)
    cfg["data"]["domains"]["sciq"] = {"source": "lm_eval", "task": "sciq"}
    assert "a domain needs training data" in _errors(cfg)


@pytest.mark.parametrize("name", ["../../x.whl", "/etc/passwd", "sub/x.whl", ".hidden.whl"])
def test_an_artifact_file_name_cannot_leave_the_download_cache(default_cfg, name):
    """`filename` names a file inside the download cache; a path (a folder, '..', an absolute path) is
    refused when the config is checked, naming the key and the fix."""
    cfg = copy.deepcopy(default_cfg)
    cfg["data"]["artifacts"]["olmo"]["filename"] = name
    with pytest.raises(ConfigError, match=r"data\.artifacts\.olmo\.filename.*not a plain file name"):
        validate_config(cfg)


def test_a_domain_that_is_also_a_general_task_is_refused_when_checked(default_cfg):
    """`physical` (PIQA) as a domain while the general task `piqa` reads the same file: refused by the config
    check (alr.assets.rules), not first inside the prepare_data job."""
    cfg = copy.deepcopy(default_cfg)
    cfg["domains"] = ["science", "physical"]
    message = _errors(cfg)
    assert "general task 'piqa' reads the same file as domain 'physical'" in message
    assert "set data.general.tasks.piqa: null, or leave 'physical' out of `domains`" in message
    cfg["data"]["general"]["tasks"]["piqa"] = None
    validate_config(cfg)


def test_every_general_text_source_off_is_refused_when_checked(default_cfg):
    cfg = copy.deepcopy(default_cfg)
    for name in cfg["data"]["general"]["text"]["sources"]:
        cfg["data"]["general"]["text"]["sources"][name] = None
    assert "every source is switched off (null)" in _errors(cfg)


def test_prepare_data_applies_the_same_rules_and_leaves_the_old_folder(tiny_cfg, tiny_data, tmp_path, capsys):
    """The job itself refuses what the check refuses (one list of rules, alr.assets.rules), before reading
    anything, and a data folder it built before stays byte for byte."""
    import shutil

    from alr.assets.catalogue import data_in_use
    from alr.cli import main

    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    before = {p.relative_to(data): p.read_bytes() for p in data.rglob("*") if p.is_file()}
    cfg = copy.deepcopy(tiny_cfg)
    for name in cfg["data"]["general"]["text"]["sources"]:
        cfg["data"]["general"]["text"]["sources"][name] = None
    job = {"data": data_in_use(cfg)}  # what the prepare_data rule passes: its section alone, no `domains`
    assert main(["prepare-data", "--config", json.dumps(job), "--out", str(data)]) == 2
    assert "every source is switched off (null)" in capsys.readouterr().err
    assert {p.relative_to(data): p.read_bytes() for p in data.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize(
    "section, key, value, expected",
    [
        ("regularize", "lambda", -1, "config key 'regularize.lambda': -1 is less than the minimum of 0"),
        ("regularize", "lambda", [1, -2], "config key 'regularize.lambda.1': -2 is less than the minimum of 0"),
        ("fisher", "lambda", "strong", "config key 'fisher.lambda': 'strong' matches no allowed form"),
    ],
)
def test_a_value_of_the_wrong_form_names_what_is_wrong(default_cfg, section, key, value, expected):
    """A strength is a number or a list (oneOf): the message reads the alternative of the value's type,
    never jsonschema's "not valid under any of the given schemas"."""
    cfg = copy.deepcopy(default_cfg)
    cfg[section][key] = value
    message = _errors(cfg)
    assert expected in message and "any of the given schemas" not in message, message


def test_an_overlay_changing_a_source_type_names_the_inherited_keys(default_cfg):
    """`model.source: {type: local, path: ...}` merged over the default's registry source keeps that source's
    keys; the message names them and the fix, not "matches no allowed form"."""
    from alr.core.sections import merge_config

    cfg = merge_config(default_cfg, {"model": {"source": {"type": "local", "path": "/models/mine"}}})
    message = _errors(cfg)
    assert "config key 'model.source': unknown key(s) 'filename', 'member', 'package', 'sha256', 'version'" in message
    assert "(allowed: path, type)" in message and "give a complete config (`complete: true`)" in message
