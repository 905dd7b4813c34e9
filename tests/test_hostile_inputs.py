"""Hostile files and folders given to the commands: devices, FIFOs, bad model metadata,
unwritable outputs, odd file names. Each gets one clear line and a non-zero exit, never a
traceback or a hang."""

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from digit_recognizer import cli, modelfile, models, nn
from digit_recognizer.errors import DigitsError
from digit_recognizer.files import read_regular_file

SPEC = [{"type": "Flatten"}, {"type": "Dense", "in_features": 784, "out_features": 10}]
METADATA = {"spec": SPEC, "mean": 0.13, "std": 0.31, "classes": [str(d) for d in range(10)], "dataset": "mnist"}

posix_only = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs and /dev are POSIX")


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    nn.manual_seed(0)
    return modelfile.save(tmp_path_factory.mktemp("model") / "tiny.safetensors", models.build(SPEC), METADATA)


@pytest.fixture
def seven(tmp_path):
    image = Image.new("L", (56, 56), 0)
    image.paste(255, (20, 8, 36, 48))
    path = tmp_path / "seven.png"
    image.save(path)
    return path


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


# ---------------------------------------------------------------- devices and FIFOs

@posix_only
def test_read_regular_file_refuses_devices_and_fifos_and_bounds_the_read(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    link = tmp_path / "zero.png"
    link.symlink_to("/dev/zero")
    for path in (fifo, link, Path("/dev/urandom"), Path("/dev/null")):
        with pytest.raises(DigitsError, match="not a regular file"):
            read_regular_file(path, 1024)
    small = tmp_path / "small"
    small.write_bytes(b"x" * 1025)
    with pytest.raises(DigitsError, match="larger than 1024 bytes"):
        read_regular_file(small, 1024)
    assert read_regular_file(small, 1025) == b"x" * 1025
    with pytest.raises(IsADirectoryError):
        read_regular_file(tmp_path, 1024)


@posix_only
def test_predict_refuses_devices_and_fifos_as_images_and_as_model(tmp_path, capsys, model_file, seven):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    link = tmp_path / "z.png"
    link.symlink_to("/dev/zero")
    code, out, err = run_cli(capsys, "predict", "--model", model_file, fifo, link, "/dev/urandom", seven)
    assert code == 1
    assert err.count("not a regular file") == 3
    assert out.startswith(f"{seven}: ")  # the good one is still read
    code, _, err = run_cli(capsys, "predict", "--model", fifo, seven)
    assert code == 1 and err.startswith(f"digits: error: cannot read model file {fifo}: not a regular file")


@posix_only
def test_evaluate_refuses_a_fifo_as_model(tmp_path, capsys):
    fifo = tmp_path / "model.safetensors"
    os.mkfifo(fifo)
    code, _, err = run_cli(capsys, "evaluate", fifo)
    assert code == 1 and "not a regular file" in err and err.count("\n") == 1


# ---------------------------------------------------------------- model metadata

def _with_metadata(path: Path, **changes) -> Path:
    """A copy of a valid model file with metadata values replaced by the given JSON texts."""
    from safetensors.numpy import save

    tensors, metadata = modelfile.read(path)
    header = {"format": modelfile.FORMAT, **{k: json.dumps(v) for k, v in metadata.items()}, **changes}
    out = path.parent / f"bad-{len(list(path.parent.iterdir()))}.safetensors"
    out.write_bytes(save(tensors, metadata=header))
    return out


BAD_METADATA = {
    "mean as text": ({"mean": '"abc"'}, "mean must be a number"),
    "mean as list": ({"mean": "[0.1, 0.2]"}, "mean must be a number"),
    "mean NaN": ({"mean": "NaN"}, "mean must be finite"),
    "std zero": ({"std": "0"}, "std must be in (0, 1000]"),
    "std infinite": ({"std": "Infinity"}, "std must be finite"),
    "std boolean": ({"std": "true"}, "std must be a number"),
    "temperature negative": ({"temperature": "-1"}, "temperature must be in (0"),
    "classes as text": ({"classes": '"0123456789"'}, "classes must be a list"),
    "classes repeated": ({"classes": json.dumps(["0"] * 10)}, "must not repeat"),
    "spec as text": ({"spec": '"cnn"'}, "spec must be a list"),
    "spec huge layer": ({"spec": json.dumps([{"type": "Flatten"},
                                             {"type": "Dense", "in_features": 784, "out_features": 10**12}])},
                        "out of range"),
    "deep nesting": ({"metrics": "[" * 100_000 + "]" * 100_000}, "invalid metadata"),
    "nesting past the limit": ({"training": "[" * 40 + "]" * 40}, "nests deeper than 32"),
    "dataset as number": ({"dataset": "7"}, "dataset must be a string"),
    "missing spec": ({"spec": None}, "lacks model metadata: spec"),
}


@pytest.mark.parametrize("case", list(BAD_METADATA))
def test_bad_metadata_is_refused_when_the_file_is_opened(model_file, case):
    changes, message = BAD_METADATA[case]
    present = {k: v for k, v in changes.items() if v is not None}
    bad = _with_metadata(model_file, **present)
    if None in changes.values():  # a key removed
        from safetensors.numpy import save

        tensors, metadata = modelfile.read(model_file)
        header = {"format": modelfile.FORMAT, **{k: json.dumps(v) for k, v in metadata.items() if k not in changes}}
        bad.write_bytes(save(tensors, metadata=header))
    with pytest.raises(DigitsError, match=message.replace("(", r"\(").replace("[", r"\[")) as error:
        modelfile.load(bad)
    assert str(error.value).startswith(str(bad)) and "\n" not in str(error.value)


def test_newer_metadata_keys_are_accepted(model_file):
    newer = _with_metadata(model_file, temperature="1.5", class_names=json.dumps({"0": "zero"}),
                           calibration=json.dumps({"ece": 0.01}))
    assert modelfile.load(newer).temperature == 1.5


def test_nan_weights_are_refused(tmp_path):
    net = models.build(SPEC)
    net.layers[1].weight.data[0, 0] = np.nan
    path = modelfile.save(tmp_path / "nan.safetensors", net, METADATA)
    with pytest.raises(DigitsError, match="NaN or infinite"):
        modelfile.load(path)


@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_commands_refuse_bad_metadata_in_one_line(model_file, capsys, seven, command):
    bad = _with_metadata(model_file, mean='"abc"')
    argv = ["predict", "--model", bad, seven] if command == "predict" else ["evaluate", bad]
    code, out, err = run_cli(capsys, *argv)
    assert code == 1 and out == ""
    assert err == f"digits: error: {bad} has invalid metadata: mean must be a number (got \"abc\")\n"


@pytest.mark.slow
def test_serve_refuses_bad_metadata_before_it_starts(model_file):
    pytest.importorskip("fastapi")
    from digit_recognizer.serve.process import serving

    bad = _with_metadata(model_file, std="0")
    with pytest.raises(DigitsError, match="std must be in"):
        with serving(bad, workers=0, timeout=60):
            pass


# ---------------------------------------------------------------- training output

TRAIN = ["train", "--model", "mlp", "--epochs", "1", "--limit", "200", "--val-size", "50", "--quiet"]


def _train_argv(mnist_data_dir, *more):
    return [*TRAIN, "--data-dir", mnist_data_dir, *more]


def test_train_into_proc_is_one_line(mnist_data_dir, capsys):
    code, _, err = run_cli(capsys, *_train_argv(mnist_data_dir, "--out", "/proc/digits-run/x"))
    assert code == 1 and err.startswith("digits: error: cannot write /proc/digits-run") and err.count("\n") == 1


def test_train_into_a_read_only_folder_is_one_line(mnist_data_dir, tmp_path, capsys, monkeypatch):
    # As root a read-only folder is writable all the same, so the refusal is simulated where it happens.
    real_mkdir = Path.mkdir

    def refuse(self, *args, **kwargs):
        if tmp_path in self.parents or self == tmp_path:
            raise PermissionError(13, "Permission denied", str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", refuse)
    code, _, err = run_cli(capsys, *_train_argv(mnist_data_dir, "--out", tmp_path / "ro" / "run"))
    assert code == 1 and err == f"digits: error: cannot write {tmp_path / 'ro' / 'run'}: Permission denied\n"


def test_a_full_disk_while_training_is_one_line_naming_the_file(mnist_data_dir, tmp_path, capsys, monkeypatch):
    import errno

    from digit_recognizer import files

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(files.os, "fsync", full)
    code, _, err = run_cli(capsys, *_train_argv(mnist_data_dir, "--out", tmp_path / "run"))
    assert code == 1
    assert err == f"digits: error: cannot write {tmp_path / 'run' / 'config.json'}: No space left on device\n"


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_FSIZE is POSIX")
@pytest.mark.slow
def test_a_file_size_limit_while_training_is_one_line(mnist_data_dir, tmp_path):
    import resource
    import subprocess

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))

    run = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "digit_recognizer", *_train_argv(mnist_data_dir, "--out", run)],
                          capture_output=True, text=True, timeout=300, preexec_fn=limit,
                          env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    assert done.returncode == 1, done.stderr
    last = done.stderr.splitlines()[-1]
    assert last.startswith(f"digits: error: cannot write {run}") and last.endswith(": File too large")
    assert "Traceback" not in done.stderr


def _killed_before_the_first_epoch(mnist_data_dir, run: Path) -> None:
    """What a run killed before its first epoch ends leaves: its settings, a history without
    rows, a temporary file of an interrupted write."""
    assert cli.main([str(a) for a in _train_argv(mnist_data_dir, "--out", run)]) == 0
    for path in run.iterdir():
        if path.name not in ("config.json", "history.csv"):
            path.unlink()
    (run / "history.csv").write_text((run / "history.csv").read_text().splitlines()[0] + "\n")
    (run / ".last.safetensors.123.tmp").write_bytes(b"half a checkpoint")


@pytest.mark.slow
def test_resume_starts_over_a_run_killed_before_its_first_epoch(mnist_data_dir, tmp_path, capsys):
    run = tmp_path / "run"
    _killed_before_the_first_epoch(mnist_data_dir, run)
    capsys.readouterr()
    code, out, err = run_cli(capsys, "train", "--resume", run)
    assert code == 0 and "no epoch of" in err and "starting that run over" in err
    assert (run / "model.safetensors").is_file() and not list(run.glob(".*.tmp"))


@pytest.mark.slow
def test_out_reuses_a_folder_whose_run_never_finished_an_epoch(mnist_data_dir, tmp_path, capsys):
    run = tmp_path / "run"
    _killed_before_the_first_epoch(mnist_data_dir, run)
    capsys.readouterr()
    code, _, err = run_cli(capsys, *_train_argv(mnist_data_dir, "--out", run))
    assert code == 0 and "never finished an epoch; starting over" in err
    # a folder with anything else in it is still refused
    (run / "notes.txt").write_text("mine")
    code, _, err = run_cli(capsys, *_train_argv(mnist_data_dir, "--out", run))
    assert code == 1 and "already holds files" in err and (run / "notes.txt").exists()


# ---------------------------------------------------------------- predict: names, folders, sizes

@pytest.mark.skipif(sys.platform in ("win32", "darwin"), reason="needs a file system taking any bytes in names")
def test_predict_csv_with_a_file_name_that_is_not_utf8(tmp_path, capsys, model_file, seven):
    odd = Path(os.fsdecode(bytes(tmp_path) + b"/caf\xe9-\xff.png"))
    odd.write_bytes(seven.read_bytes())
    table = tmp_path / "out.csv"
    code, out, _ = run_cli(capsys, "predict", "--model", model_file, "--csv", table, odd, seven)
    assert code == 0 and out.startswith(str(tmp_path) + "/caf\\xe9-\\xff.png: ")
    rows = table.read_bytes().splitlines()
    assert len(rows) == 3 and rows[1].startswith(bytes(tmp_path) + b"/caf\xe9-\xff.png,")  # its own bytes
    code, out, _ = run_cli(capsys, "predict", "--model", model_file, "--json", odd)
    assert code == 0 and json.loads(out)[0]["path"] == str(odd)


def test_unreadable_folders_are_errors_not_silence(tmp_path, capsys, model_file, seven, monkeypatch):
    top = tmp_path / "photos"
    (top / "locked").mkdir(parents=True)
    (top / "a.png").write_bytes(seven.read_bytes())
    real_scandir = os.scandir

    def scandir(path="."):  # as chmod 000 would for anyone but root
        if Path(path).name in ("locked", "shut"):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    code, out, err = run_cli(capsys, "predict", "--model", model_file, top)
    assert code == 1 and out.startswith(f"{top / 'a.png'}: ")
    assert err == f"digits: error: {top / 'locked'}: cannot read this folder: Permission denied\n"
    (tmp_path / "shut").mkdir()
    code, out, err = run_cli(capsys, "predict", "--model", model_file, tmp_path / "shut")
    assert code == 1 and "shut: cannot read this folder: Permission denied" in err and "no image files" not in err


def _png_header(width: int, height: int, bit_depth: int, colour_type: int) -> bytes:
    """A PNG that declares its size and pixel format, with no pixel data after."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_the_decoded_size_is_bounded_in_bytes_not_only_pixels(tmp_path):
    from digit_recognizer import preprocess

    # 39.7 megapixels, under the pixel limit, of 16-bit RGBA: Pillow would hold 159 MB
    with pytest.raises(DigitsError, match=r"7000x5671 RGBA pixels \(151 MiB decoded\), above the limit of 96 MiB"):
        preprocess.load_image(_png_header(7000, 5671, 16, 6))
    with pytest.raises(DigitsError, match="truncated or corrupt"):  # the same size in gray: allowed, then decoded
        preprocess.load_image(_png_header(7000, 5671, 8, 0))


def test_json_booleans_are_not_pixels():
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from digit_recognizer.serve import create_app

    net = models.build(SPEC)
    app = create_app(modelfile.Model(net, dict(METADATA)))
    rows = [[0] * 28 for _ in range(28)]
    rows[3][4] = True
    with TestClient(app) as client:
        answer = client.post("/api/predict", json={"pixels": rows})
    assert answer.status_code == 422 and answer.json()["error"] == \
        "bad JSON pixels at pixels.3.4: Input should be a valid number"
