import copy
import json
import re

import pytest

from alr.config import load_config, validate_config
from alr.errors import ConfigError
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
    from alr.runs import domain_runs

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
    from alr.methods import METHODS

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
