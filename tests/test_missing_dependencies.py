"""A Python without a dependency gets one line saying what to install, never a traceback."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(args, env_extra=None, **kw):
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run(args, capture_output=True, text=True, cwd=ROOT, env=env, timeout=300, **kw)


def _one_line_error(result):
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.slow
@pytest.mark.parametrize("script, args", [("train.py", ["--epochs", "1"]),
                                          ("inference.py", ["--image_path", "seven.png"])])
def test_classic_entry_points_with_a_bare_python(script, args):
    # -S: no site-packages, so numpy and the rest are missing while the package, next to
    # the script, is found: what `python3 src/train.py` does outside the project's .venv.
    line = _one_line_error(_run([sys.executable, "-S", f"src/{script}", *args]))
    assert line.startswith(f"python src/{script}: error: this Python (")
    assert "`make install`, then `.venv/bin/python src/" in line and "`pip install -e .`" in line


def _shadow(tmp_path, module):
    """A folder that, first on PYTHONPATH, makes ``import module`` fail as if it were not installed."""
    package = tmp_path / "shadow" / module
    package.mkdir(parents=True)
    message = f"No module named {module!r}"
    (package / "__init__.py").write_text(f"raise ModuleNotFoundError({message!r}, name={module!r})\n")
    return {"PYTHONPATH": os.pathsep.join([str(tmp_path / "shadow"), str(ROOT / "src")])}


@pytest.mark.slow
@pytest.mark.parametrize("module, args, extra", [
    ("onnx", ["-m", "digit_recognizer", "export", "--format", "onnx", "--out", "{tmp}/m.onnx"], "export"),
    ("uvicorn", ["-m", "digit_recognizer", "serve", "--port", "0"], "serve"),
    ("torch", ["benchmarks/engine.py", "--reps", "1"], "torch"),
])
def test_every_extra_hint_is_a_clone_install(tmp_path, module, args, extra):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    line = _one_line_error(_run([sys.executable, *args], _shadow(tmp_path, module)))
    assert f'pip install -e ".[{extra}]"' in line


@pytest.mark.slow
def test_peak_rss_help_and_errors(tmp_path):
    shown = _run([sys.executable, "benchmarks/peak_rss.py", "--help"])
    assert shown.returncode == 0 and "usage: python benchmarks/peak_rss.py" in shown.stdout
    assert _one_line_error(_run([sys.executable, "benchmarks/peak_rss.py", "--", "no-such-command-x"])) == \
        "peak_rss.py: error: no such command: no-such-command-x"


@pytest.mark.slow
def test_peak_rss_measures_a_command_and_writes_its_table(tmp_path):
    out = tmp_path / "peak.json"
    grow = "b = bytearray(200 * 2**20); b[::4096] = b'x' * len(b[::4096])"  # touch 200 MiB
    result = _run([sys.executable, "benchmarks/peak_rss.py", "--json", str(out), "--", sys.executable, "-c", grow])
    assert result.returncode == 0, result.stderr
    peak = json.loads(out.read_text())
    assert peak["benchmark"] == "peak_rss" and peak["columns"][1] == "peak RSS (MB)"
    assert 200 <= peak["rows"][0][1] < 400
    assert result.stdout.startswith(f"peak RSS {peak['rows'][0][1]} MB")
