"""The package installs and runs the way the README says."""

import re
import subprocess
import sys
try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_requirements_txt_matches_pyproject():
    lines = [line.strip() for line in (ROOT / "requirements.txt").read_text().splitlines()]
    requirements = [line for line in lines if line and not line.startswith("#")]
    assert requirements == _pyproject()["project"]["dependencies"]


def test_torch_is_pinned_everywhere():
    project = _pyproject()["project"]
    pins = [r for extra in project["optional-dependencies"].values() for r in extra if r.startswith("torch")]
    assert pins == ["torch==2.13.0"]
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^TORCH\s*\?=\s*torch==2\.13\.0$", makefile, re.M)
    assert "torch" not in " ".join(project["dependencies"])


@pytest.mark.slow
def test_console_script_and_module_entry_point():
    assert _pyproject()["project"]["scripts"] == {"digits": "digit_recognizer.cli:main"}
    result = subprocess.run([sys.executable, "-m", "digit_recognizer", "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.startswith("digits ")
    help_text = subprocess.run([sys.executable, "-m", "digit_recognizer", "data", "--help"],
                               capture_output=True, text=True).stdout
    assert all(action in help_text for action in ("fetch", "info", "show"))


def test_ci_runs_make_test_under_ci_true():
    script = (ROOT / ".ci" / "run").read_text()
    assert script.startswith("#!/usr/bin/env bash") and "set -euo pipefail" in script
    assert "CI=true exec make test" in script
    assert (ROOT / ".ci" / "run").stat().st_mode & 0o111


def test_readme_shows_both_commands():
    readme = (ROOT / "README.md").read_text()
    assert "make demo" in readme and "make test" in readme
