"""Command-line conventions: `python -m alr` is `alr`, and `--version` reports the installed version."""
import subprocess
import sys
import tomllib

from tests.tiny import REPO


def test_python_m_alr_reports_the_projects_version():
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    proc = subprocess.run([sys.executable, "-m", "alr", "--version"], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0 and proc.stdout.strip() == f"alr {version}", proc.stdout + proc.stderr
