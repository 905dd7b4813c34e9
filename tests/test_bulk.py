"""Bulk reading on Ray: the table equals `digits predict --json` row by row; --resume; the table files."""

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from digit_recognizer import rowfiles
from digit_recognizer.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ray_data():
    return pytest.importorskip("ray.data", reason="the cluster extra is not installed")


@pytest.fixture(scope="module")
def scans(tmp_path_factory, mnist_test):
    """A folder of 300 generated scans: MNIST test digits enlarged, dark on a light noisy
    page as a scanner gives them (some with two digits side by side), blank pages, and
    broken files (not images, truncated, empty), in subfolders."""
    images, _ = mnist_test
    rng = np.random.default_rng(0)
    root = tmp_path_factory.mktemp("scans")
    for i in range(280):
        digits = images[[i]] if i % 7 else images[[i, i + 1000]]
        ink = np.concatenate(list(digits), axis=1).astype(np.float32)
        page = 235 - ink * (180 / 255) + rng.normal(0, 6, ink.shape)
        picture = Image.fromarray(np.clip(page, 0, 255).astype(np.uint8)).resize(
            (ink.shape[1] * 4, ink.shape[0] * 4), Image.BILINEAR)
        folder = root / f"box{i % 3}"
        folder.mkdir(exist_ok=True)
        picture.save(folder / f"scan{i:04d}.png" if i % 2 else folder / f"scan{i:04d}.jpg")
    for i in range(8):
        Image.fromarray(np.full((100, 100), 235, np.uint8)).save(root / f"blank{i}.png")
    good = io.BytesIO()
    Image.fromarray(images[0]).save(good, "PNG")
    for i in range(12):
        broken = [b"not an image at all", good.getvalue()[:60], b""][i % 3]
        (root / f"broken{i}.png").write_bytes(broken)
    return root


def _two_cpus():
    """Run the child on two cores: its local Ray then has 2 CPUs, whatever the machine."""
    os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:2])


def _bulk(*args):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    env.pop("RAY_ADDRESS", None)
    return subprocess.run([sys.executable, "-m", "digit_recognizer", "predict", *map(str, args), "--cluster", "ray"],
                          capture_output=True, text=True, timeout=600, env=env, preexec_fn=_two_cpus)


@pytest.fixture(scope="module")
def expected(scans):
    """What `digits predict --json` prints for the folder, as table rows."""
    out = io.StringIO()
    from contextlib import redirect_stdout

    with redirect_stdout(out):
        assert main(["predict", "--json", str(scans)]) == 1  # some inputs are broken
    return [rowfiles.to_row(result) for result in json.loads(out.getvalue())]


def _assert_same_rows(rows, expected):
    assert [r["path"] for r in rows] == [e["path"] for e in expected]
    for row, want in zip(rows, expected):
        for column in ("path", "digit", "number", "lines", "low_confidence", "error"):
            assert row[column] == want[column], (row, want)
        if want["error"] is None:
            # float32 forward passes of other batch sizes may differ in the last bits: probabilities
            # within a tolerance, and the ranking where it is not a near-tie
            assert row["confidence"] == pytest.approx(want["confidence"], abs=2e-4)
            probabilities = [p for _, p in want["top_k"]]
            np.testing.assert_allclose([p for _, p in row["top_k"]], probabilities, atol=2e-4)
            for i, ((digit, p), (wanted, _)) in enumerate(zip(row["top_k"], want["top_k"])):
                near = [q for j, q in enumerate(probabilities) if j != i and abs(q - p) <= 4e-4]
                assert digit == wanted or near, (row, want)


@pytest.mark.slow
def test_ray_table_equals_digits_predict_json(ray_data, scans, expected, tmp_path):
    assert len(expected) == 300
    # the 20 blank and broken files; a digit or two the model refuses as "not a digit"
    errors = [row for row in expected if row["error"] and row["error"] != "not a digit"]
    assert len(errors) == 20 and sum(row["number"] is not None for row in expected) >= 30
    out = tmp_path / "predictions.parquet"
    result = _bulk(scans, "--out", out)
    assert result.returncode == 1, result.stderr  # as digits predict: some inputs could not be read
    assert "Traceback" not in result.stderr
    assert f"300 files read" in result.stderr and "on 2 Ray workers" in result.stderr
    assert "20 could not be read" in result.stderr and "file/s" in result.stderr  # the progress bar's rate
    _assert_same_rows(rowfiles.read_rows(out), expected)
    again = _bulk(scans, "--out", out)  # a table is never overwritten without --resume
    assert again.returncode == 1 and again.stderr.strip().endswith("exists: add --resume to read only the "
                                                                   "inputs it lacks, or remove it")


@pytest.mark.slow
def test_resume_reads_only_what_the_table_lacks(ray_data, scans, expected, tmp_path):
    out = tmp_path / "predictions.csv"
    with rowfiles.RowWriter(out) as writer:  # an earlier run that stopped after 120 inputs
        writer.write(expected[:120])
    result = _bulk(str(scans / "**" / "*.*"), "--out", out, "--resume")  # a glob, as quoted on a shell
    assert result.returncode == 1, result.stderr
    assert "180 files read" in result.stderr and "120 already in it" in result.stderr
    _assert_same_rows(rowfiles.read_rows(out), expected)
    assert _bulk(scans, "--out", out, "--resume").returncode == 0  # nothing left to read: Ray not even started
    assert len(rowfiles.read_rows(out)) == 300


@pytest.mark.parametrize("name", ["t.parquet", "t.csv", "t.jsonl"])
def test_tables_round_trip(tmp_path, name):
    if name.endswith(".parquet"):
        pytest.importorskip("pyarrow", reason="the cluster extra is not installed")
    rows = [
        rowfiles.to_row({"path": "a.png", "digit": 7, "confidence": 0.9981, "low_confidence": False,
                         "top_k": [[7, 0.9981], [1, 0.001]]}),
        rowfiles.to_row({"path": "b, \"c\".png", "digit": 2, "number": "2026", "lines": ["2026", "12"],
                         "confidence": 0.5, "low_confidence": True, "top_k": [[2, 0.6]]}),
        rowfiles.to_row({"path": "broken.png", "error": "not an image"}),
    ]
    with rowfiles.RowWriter(tmp_path / name) as writer:
        writer.write(rows[:2])
        writer.write(rows[2:])
    assert rowfiles.read_rows(tmp_path / name) == rows
    assert [p.name for p in tmp_path.iterdir()] == [name]  # the partial file was renamed into place


def test_a_failed_run_keeps_its_rows(tmp_path):
    out = tmp_path / "t.jsonl"
    with pytest.raises(KeyboardInterrupt):
        with rowfiles.RowWriter(out) as writer:
            writer.write([rowfiles.to_row({"path": "a.png", "error": "x"})])
            raise KeyboardInterrupt
    assert rowfiles.read_rows(out) == [rowfiles.to_row({"path": "a.png", "error": "x"})]


@pytest.mark.parametrize("args, message", [
    (["--out", "t.parquet"], "--out goes with --cluster ray"),
    (["--resume"], "--resume goes with --cluster ray"),
    (["--cluster", "ray"], "--cluster ray needs --out FILE.parquet"),
    (["--cluster", "ray", "--out", "t.parquet", "--json"], "--json does not go with --cluster ray"),
    (["--cluster", "ray", "--out", "t.txt"], "--out t.txt: name a .parquet, .csv or .jsonl file"),
    (["--cluster", "ray", "--out", "t.csv", "--workers", "0"], "--workers must be at least 1"),
])
def test_option_mistakes_are_one_line(tmp_path, capsys, args, message):
    image = tmp_path / "seven.png"
    Image.new("L", (28, 28)).save(image)
    assert main(["predict", str(image), *args]) != 0
    err = capsys.readouterr().err
    assert err.startswith("digits: error: ") and message in err and err.count("\n") == 1


def test_damaged_table_on_resume(tmp_path, capsys):
    pytest.importorskip("pyarrow", reason="the cluster extra is not installed")
    image = tmp_path / "seven.png"
    Image.new("L", (28, 28)).save(image)
    (tmp_path / "t.parquet").write_bytes(b"PAR1 and then nothing")
    assert main(["predict", str(image), "--cluster", "ray", "--out", str(tmp_path / "t.parquet"), "--resume"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"digits: error: cannot read {tmp_path / 't.parquet'} as a parquet table") and \
        err.count("\n") == 1


@pytest.mark.slow
def test_without_the_cluster_extra(tmp_path):
    """A Python without Ray gets one line naming the extra; digits predict itself still works."""
    shadow = tmp_path / "shadow" / "ray"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'ray'\", name='ray')\n")
    image = tmp_path / "seven.png"
    Image.new("L", (28, 28)).save(image)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "shadow"), str(ROOT / "src")])}
    command = [sys.executable, "-m", "digit_recognizer", "predict", str(image)]
    result = subprocess.run([*command, "--cluster", "ray", "--out", str(tmp_path / "t.jsonl")],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 1 and result.stderr.count("\n") == 1
    assert result.stderr.startswith("digits: error: --cluster ray needs the cluster extra (ray is missing)")
    assert 'pip install -e ".[cluster]"' in result.stderr
    plain = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert plain.stderr.strip() == f"digits: error: {image}: no digit found"


def test_unreadable_folders_are_rows(tmp_path, monkeypatch, capsys):
    """A folder that cannot be listed is an error row, last, as in digits predict's list (here
    the only input, so Ray is not even started)."""
    from digit_recognizer import predict

    error = {"path": str(tmp_path / "locked"), "error": "cannot read this folder: Permission denied"}
    monkeypatch.setattr(predict, "_expand", lambda paths: ([], [dict(error)]))
    out = tmp_path / "t.jsonl"
    assert main(["predict", str(tmp_path / "locked"), "--cluster", "ray", "--out", str(out)]) == 1
    assert rowfiles.read_rows(out) == [rowfiles.to_row(error)]
    assert "1 could not be read" in capsys.readouterr().err
