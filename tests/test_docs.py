"""The README and the documentation site: short, buildable, and in step with the benchmarks."""

import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import publish  # noqa: E402


def test_readme_is_short_and_starts_with_the_two_commands():
    readme = (ROOT / "README.md").read_text()
    assert len(readme) <= 10_000
    first_screen = "\n".join(readme.splitlines()[:25])
    assert "make demo" in first_screen and "make test" in first_screen
    assert ".venv/bin/activate" in readme and ".venv/bin/digits" in readme


@pytest.mark.slow
def test_readme_gives_the_shipped_models_accuracy():
    from digit_recognizer import modelfile

    accuracy = modelfile.load().metadata["metrics"]["accuracy"]
    shipped_row = next(line for line in (ROOT / "README.md").read_text().splitlines() if "**shipped**" in line)
    assert f"**{100 * accuracy:.2f}%**" in shipped_row


@pytest.mark.slow
def test_site_builds_strict(tmp_path):
    if importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("mkdocstrings") is None:
        pytest.skip('the docs extra is not installed (pip install -e ".[docs]")')
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                            cwd=ROOT, capture_output=True, text=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    reference = (tmp_path / "site" / "reference" / "index.html").read_text()
    # the API reference is generated from the docstrings
    assert 'id="digit_recognizer.nn.Conv2D"' in reference and "cross-correlation" in reference


def test_every_nav_page_exists():
    yaml = pytest.importorskip("yaml")

    config = yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=yaml.BaseLoader)
    pages = [next(iter(entry.values())) for entry in config["nav"]]
    for page in pages:
        assert (ROOT / "docs" / page).is_file(), page


def test_performance_page_is_up_to_date():
    assert publish.main(["--check"]) == 0, "run python benchmarks/publish.py and commit docs/performance.md"


def _document(**changes):
    document = {"benchmark": "demo", "date": "2026-12-03", "command": "python benchmarks/demo.py --json x.json",
                "machine": {"cpu": "Some CPU", "cores": 2, "memory_gib": 7.7, "python": "3.11.2", "numpy": "2.3.1"},
                "blas": "openblas 0.3.29 Haswell, 2 threads", "columns": ["net", "img/s", "ratio"],
                "rows": [["mlp", 42353.4, 2.031], ["cnn", 946.0, None]], "notes": "higher is better"}
    document.update(changes)
    return document


def test_publish_renders_one_dated_table_per_benchmark(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    (results / "b.json").write_text(json.dumps(_document()))
    (results / "a.json").write_text(json.dumps(_document(benchmark="alpha", columns=["x"], rows=[["a|b"]])))
    out = tmp_path / "performance.md"
    assert publish.main(["--results", str(results), "--out", str(out)]) == 0
    page = out.read_text()
    assert page.index("## alpha (a)") < page.index("## demo (b)")
    assert "Measured on 2026-12-03 with `python benchmarks/demo.py --json x.json`." in page
    assert "- Machine: Some CPU, 2 cores, 7.7 GiB; Python 3.11.2, NumPy 2.3.1" in page
    assert "- BLAS: openblas 0.3.29 Haswell, 2 threads" in page
    assert "| net | img/s | ratio |\n|---|---:|---:|\n| mlp | 42353 | 2.031 |\n| cnn | 946 | - |" in page
    assert "| a\\|b |" in page
    assert publish.main(["--check", "--results", str(results), "--out", str(out)]) == 0
    (results / "b.json").write_text(json.dumps(_document(date="2026-12-04")))
    assert publish.main(["--check", "--results", str(results), "--out", str(out)]) == 1


def test_publish_refuses_a_malformed_result(tmp_path, capsys):
    results = tmp_path / "results"
    results.mkdir()
    (results / "bad.json").write_text(json.dumps(_document(rows=[["mlp", 1.0]])))
    assert publish.main(["--results", str(results), "--out", str(tmp_path / "p.md")]) == 2
    assert "a row has 2 cells for 3 columns" in capsys.readouterr().err
    (results / "bad.json").write_text("{not json")
    assert publish.main(["--results", str(results), "--out", str(tmp_path / "p.md")]) == 2
    assert not (tmp_path / "p.md").exists()


# --------------------------------------------------------------------------- getting started


def test_make_docs_and_notebooks_targets(tmp_path):
    def dry_run(target):
        run = subprocess.run(["make", "-n", "-f", str(ROOT / "Makefile"), f"VENV={tmp_path}/venv", target],
                             cwd=ROOT, capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
        return run.stdout

    docs = dry_run("docs")
    assert "-m pip install" in docs and '-e ".[docs]"' in docs and "-m mkdocs build --strict" in docs
    notebooks = dry_run("notebooks")
    assert '-e ".[notebooks]" jupyterlab' in notebooks and "bin/jupyter lab notebooks/" in notebooks


def documented_commands(page):
    """The command lines of a page's ```sh blocks, without their comments, in order."""
    commands, in_block = [], False
    for line in page.splitlines():
        if line.startswith("```"):
            in_block = line.strip() == "```sh" if not in_block else False
            continue
        if in_block:
            command = line.split("  #")[0].split(" # ")[0].strip()
            if command and not command.startswith("#"):
                commands.append(command)
    return commands


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve_until_healthy(command, cwd, env):
    """Start ``command`` (digits serve) on a free port, wait for /api/health, stop it."""
    port = _free_port()
    server = subprocess.Popen(["bash", "-c", f"exec {command} --port {port}"], cwd=cwd, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert server.poll() is None, f"{command} exited: {server.stderr.read()[-2000:]}"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2) as answer:
                    assert json.loads(answer.read())["status"] == "ok"
                    return
            except OSError:
                time.sleep(0.2)
        raise AssertionError(f"{command} did not answer /api/health within 120 s")
    finally:
        server.terminate()
        server.wait(timeout=60)


@pytest.mark.slow
def test_every_getting_started_command_runs(tmp_path):
    """Runs the page's commands in order in a scratch folder, with the environment that runs
    the tests as `.venv`. `make demo` runs for real with a shorter training (DEMO_TRAIN);
    `make test` is what CI itself runs, so here it is only expanded (make -n)."""
    venv = Path(sys.prefix)
    if not (venv / "bin" / "digits").exists():
        pytest.skip(f"the digits command is not installed in {venv}")
    commands = documented_commands((ROOT / "docs" / "getting-started.md").read_text())
    assert commands[:2] == ["make demo", "make test"]
    (tmp_path / "models").symlink_to(ROOT / "models")
    env = {**os.environ, "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": str(ROOT / "src"), "NO_COLOR": "1"}
    # -o: take the environment as installed (it is the one running these tests)
    make = ["make", "-f", str(ROOT / "Makefile"), f"VENV={venv}",
            "-o", f"{venv}/.installed", "-o", f"{venv}/.installed-dev"]
    for command in commands:
        if command == "make demo":
            run = subprocess.run(make + ["demo", "DEMO_TRAIN=--model mlp --epochs 1 --limit 3000 --seed 0"],
                                 cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
            assert run.returncode == 0, run.stderr[-3000:]
            assert "training report: runs/demo/run/report.html" in run.stdout
            assert f"source {venv}/bin/activate" in run.stdout
        elif command == "make test":
            run = subprocess.run(make + ["-n", "test"], cwd=tmp_path, env=env, capture_output=True, text=True)
            assert run.returncode == 0 and "-m pytest" in run.stdout, run.stderr
        elif command == "digits serve":
            _serve_until_healthy(command, tmp_path, env)
        else:
            line = command.replace(".venv/", f"{venv}/")
            run = subprocess.run(["bash", "-c", f"set -e; {line}"], cwd=tmp_path, env=env,
                                 capture_output=True, text=True, timeout=600)
            assert run.returncode == 0, f"{command}: {run.stderr[-3000:]}"
            assert "Traceback" not in run.stderr, command
    assert (tmp_path / "explain.png").is_file() and (tmp_path / "runs" / "quick" / "report.html").is_file()
    # the training page's run-directory table names every file a run leaves
    training_page = (ROOT / "docs" / "training.md").read_text()
    for path in (tmp_path / "runs" / "quick").iterdir():
        assert f"| `{path.name}` |" in training_page, f"docs/training.md does not describe {path.name}"
    assert json.loads((tmp_path / "metrics.json").read_text())["n"] == 10_000


def test_api_reference_keeps_docstring_lines_and_math():
    pytest.importorskip("griffe")
    spec = importlib.util.spec_from_file_location("plain_docstrings", ROOT / "docs" / "_ext" / "plain_docstrings.py")
    plain = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(plain)
    text = ("Dense.\n\nforward:  y = x W^T + b\nbackward: dx = dy * m, ``a * b``\n\n"
            "A dict::\n\n    {\"a\": 1}\n\nEnd <b>.")
    assert plain.plain_to_markdown(text) == (
        "Dense.\n\nforward:  y = x W^T + b  \nbackward: dx = dy \\* m, ``a * b``\n\nA dict:\n\n    {\"a\": 1}\n\n"
        "End &lt;b>.")


# --------------------------------------------------------------------------- every page


def test_training_page_names_every_training_option():
    from digit_recognizer import cli

    page = (ROOT / "docs" / "training.md").read_text()
    train = cli.build_parser()._subparsers._group_actions[0].choices["train"]
    options = [o for action in train._actions for o in action.option_strings if o.startswith("--") and o != "--help"]
    missing = [o for o in options if f"`{o}" not in page and f"/{o}`" not in page]  # `--augment/--no-augment`
    assert not missing, f"docs/training.md does not mention {missing}"


def shell_lines(text):
    """The command lines of every sh/bash/console block of a Markdown text (console: the `$ ` lines)."""
    lines, kind = [], None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("```"):
            kind = stripped[3:].strip() if kind is None else None
            continue
        if kind in ("sh", "bash", "shell"):
            lines.append(stripped)
        elif kind == "console" and stripped.startswith("$ "):
            lines.append(stripped[2:])
    return lines


def documented_digits_commands():
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    for page in pages:
        for line in shell_lines(page.read_text()):
            command = line.split(" #")[0].split(" | ")[0].split(" > ")[0].split(" && ")[0].strip()
            if command.startswith(("digits ", "python src/train.py", "python src/inference.py")) \
                    and "..." not in command:
                yield page.name, command


@pytest.mark.parametrize("page, command", list(documented_digits_commands()))
def test_documented_commands_use_existing_options(page, command, capsys):
    """Each `digits ...` line shown in the README and the docs parses with the real CLI."""
    import shlex

    from digit_recognizer import cli

    words = shlex.split(command)
    if words[0] == "python":
        spec = importlib.util.spec_from_file_location("entry", ROOT / words[1])
        entry = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(entry)
        parser, argv = entry.build_parser(), words[2:]
    else:
        parser, argv = cli.build_parser(), words[1:]
    if argv in (["--help"], ["--version"]):
        return
    try:
        parser.parse_args(argv)
    except SystemExit:
        pytest.fail(f"{page}: {command}: {capsys.readouterr().err.strip()}")


def python_blocks(text):
    """The ```python blocks of a Markdown text."""
    blocks, current = [], None
    for line in text.splitlines():
        if line.strip() == "```python" and current is None:
            current = []
        elif line.strip() == "```" and current is not None:
            blocks.append("\n".join(current))
            current = None
        elif current is not None:
            current.append(line)
    return blocks


def test_onnx_page_commands_and_python_run(tmp_path, monkeypatch, capsys):
    """The ONNX page's export of the shipped model, then its Python example, as printed."""
    pytest.importorskip("onnxruntime")
    from digit_recognizer import cli
    from test_preprocess import drawn

    page = (ROOT / "docs" / "onnx.md").read_text()
    monkeypatch.chdir(tmp_path)
    (export_shipped,) = [c for c in shell_lines(page) if c.startswith("digits export --format onnx --out model.onnx")]
    assert cli.main(export_shipped.split("#")[0].split()[1:]) == 0
    drawn("7").save("seven.png")
    capsys.readouterr()
    (example,) = python_blocks(page)
    exec(compile(example, "docs/onnx.md", "exec"), {})
    assert capsys.readouterr().out.strip() == "7"


def test_data_page_python_runs_as_its_comments_say(mnist_data_dir):
    import numpy as np

    (example,) = python_blocks((ROOT / "docs" / "data.md").read_text())
    namespace = {}
    exec(compile(example, "docs/data.md", "exec"), namespace)
    assert namespace["images"].shape == (60000, 28, 28) and namespace["images"].dtype == np.uint8
    assert len(namespace["val_idx"]) == 5000 and len(namespace["train_idx"]) == 55000
    assert namespace["x"].shape == (64, 1, 28, 28) and namespace["x"].dtype == np.float32


def test_training_page_python_runs(mnist_data_dir, capsys):
    (example,) = python_blocks((ROOT / "docs" / "training.md").read_text())
    namespace = {}
    exec(compile(example, "docs/training.md", "exec"), namespace)
    assert namespace["probabilities"].shape[0] == 8 and namespace["predicted"].shape == (8,)
    assert (namespace["predicted"] == namespace["labels"][:8]).mean() >= 0.75  # the shipped model reads MNIST
    assert capsys.readouterr().out.startswith("['")


def test_readme_line_count_of_the_reference_engine_is_current():
    engine = [p for p in sorted((ROOT / "src/digit_recognizer/nn").glob("*.py")) if p.name != "thread_policy.py"]
    lines = sum(len(p.read_text().splitlines()) for p in engine)
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert f"{lines:,} lines" in readme
    assert f"{lines:,} lines" in " ".join((ROOT / "docs/engine.md").read_text().split())
