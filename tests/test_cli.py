"""Command-line conventions: `python -m alr` is `alr`, and `--version` reports the installed version."""
import subprocess
import sys
import tomllib

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
