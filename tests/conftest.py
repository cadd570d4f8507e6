"""Session-wide tiny assets (tests/tiny.py says how they are built), each made once and shared: tests
read them and write into their own tmp_path, so every test runs alone or in any order."""

import os
from pathlib import Path

import pytest
import yaml

# Tests never touch the Hugging Face hub (set before anything can import it).
for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(var, "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from alr.cli import main  # noqa: E402
from alr.plugins import load_plugins  # noqa: E402
from tests.tiny import tiny_config  # noqa: E402

load_plugins()  # the registries, as every entry point loads them


@pytest.fixture(scope="session")
def tiny_config_file(tmp_path_factory) -> Path:
    """tiny_config() as a YAML file, beside the fake BIG-bench archive and the random Llama it names."""
    root = tmp_path_factory.mktemp("tiny")
    path = root / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_config(root), sort_keys=False))
    return path


@pytest.fixture
def tiny_cfg(tiny_config_file) -> dict:
    """The tiny config as the test's own dict, free to change."""
    return yaml.safe_load(tiny_config_file.read_text())


def _cli(*argv) -> None:
    assert main(list(argv)) == 0, argv


@pytest.fixture(scope="session")
def tiny_model(tiny_config_file) -> Path:
    """The prepared checkpoint, as `alr prepare-model` builds it (read-only for tests)."""
    root = tiny_config_file.parent
    _cli(
        "prepare-model",
        "--config",
        str(tiny_config_file),
        "--out",
        str(root / "model"),
        "--downloads",
        str(root / "downloads"),
    )
    return root / "model"


@pytest.fixture(scope="session")
def tiny_data(tiny_config_file) -> Path:
    """The datasets, as `alr prepare-data` builds them from the fake archive (read-only for tests)."""
    root = tiny_config_file.parent
    _cli(
        "prepare-data",
        "--config",
        str(tiny_config_file),
        "--out",
        str(root / "data"),
        "--downloads",
        str(root / "downloads"),
    )
    return root / "data"
