"""Command-line conventions: `python -m alr` is `alr`, `--version` reports the installed version, a
mistake in the input is one line and exit 2 (its traceback with --debug), and any other error keeps
its traceback."""

import subprocess
import sys
import tomllib

import pytest

import alr.cli
from alr.assets.sources.fetch import FetchError
from alr.config import ConfigError
from alr.core.examples import DataError
from tests.tiny import REPO


def test_python_m_alr_reports_the_projects_version():
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    proc = subprocess.run([sys.executable, "-m", "alr", "--version"], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0 and proc.stdout.strip() == f"alr {version}", proc.stdout + proc.stderr


def test_the_conda_env_pins_exactly_what_pyproject_pins():
    """envs/alr.yaml (`snakemake --sdm conda`) and pyproject.toml name the same packages at the same versions."""
    import yaml

    pins = set(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"])
    env = yaml.safe_load((REPO / "envs" / "alr.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert {p for p in pip if "==" in p} == pins


def _ablation(tmp_path, *flags):
    """`alr ablation`: a command that reads no config, so a patched command function is all it runs."""
    return [*flags, "ablation", "--main-table", str(tmp_path / "main.csv"), "--out-prefix", str(tmp_path / "ab")]


def _raising(exc):
    def command(args, cfg):
        raise exc

    return command


@pytest.mark.parametrize(
    "exc",
    [
        ConfigError("config key 'x': bad"),
        DataError("main.csv:3: bad row"),
        FetchError("pkg==1.0 is not served"),
        FileNotFoundError("main.csv does not exist"),
    ],
)
def test_a_user_error_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys, exc):
    monkeypatch.setattr(alr.cli, "cmd_ablation", _raising(exc))
    assert alr.cli.main(_ablation(tmp_path)) == 2
    err = capsys.readouterr().err
    assert err == f"alr ablation: error: {exc}\n"


def test_a_missing_input_file_is_a_user_error(tmp_path, capsys):
    assert alr.cli.main(_ablation(tmp_path)) == 2
    err = capsys.readouterr().err
    assert "main.csv" in err and len(err.splitlines()) == 1 and "Traceback" not in err


@pytest.mark.parametrize(
    "exc",
    [
        RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        RuntimeError("MPS backend out of memory (MPS allocated: 8 GB)"),
    ],
)
def test_out_of_memory_suggests_a_smaller_batch(tmp_path, monkeypatch, capsys, exc):
    monkeypatch.setattr(alr.cli, "cmd_ablation", _raising(exc))
    assert alr.cli.main(_ablation(tmp_path)) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and str(exc) in err and "smaller batch size: train.batch_size" in err


def test_torchs_out_of_memory_error_is_a_user_error(tmp_path, monkeypatch, capsys):
    import torch

    monkeypatch.setattr(alr.cli, "cmd_ablation", _raising(torch.cuda.OutOfMemoryError("CUDA out of memory.")))
    assert alr.cli.main(_ablation(tmp_path)) == 2
    assert "smaller batch size" in capsys.readouterr().err


@pytest.mark.parametrize("exc", [ValueError("boom"), KeyError("boom"), TypeError("boom"), RuntimeError("boom")])
def test_a_bug_keeps_its_traceback(tmp_path, monkeypatch, capsys, exc):
    """An error that is not a mistake in the input is not turned into exit 2: it propagates."""
    monkeypatch.setattr(alr.cli, "cmd_ablation", _raising(exc))
    with pytest.raises(type(exc), match="boom"):
        alr.cli.main(_ablation(tmp_path))
    assert "error" not in capsys.readouterr().err


def test_a_bug_exits_1_with_a_traceback(tmp_path):
    code = (
        "import sys, alr.cli\n"
        "def bug(args, cfg):\n    raise ValueError('boom')\n"
        "alr.cli.cmd_ablation = bug\n"
        "sys.exit(alr.cli.main(sys.argv[1:]))"
    )
    proc = subprocess.run([sys.executable, "-c", code, *_ablation(tmp_path)], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" in proc.stderr and "ValueError: boom" in proc.stderr


def test_debug_shows_the_traceback_of_a_user_error(tmp_path):
    argv = ["check-config", str(tmp_path / "nope.yaml")]
    proc = subprocess.run([sys.executable, "-m", "alr", *argv], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and len(proc.stderr.splitlines()) == 1, proc.stderr
    proc = subprocess.run([sys.executable, "-m", "alr", "--debug", *argv], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" in proc.stderr and "ConfigError" in proc.stderr and "nope.yaml does not exist" in proc.stderr
    with pytest.raises(ConfigError, match="nope.yaml does not exist"):
        alr.cli.main(["--debug", *argv])
