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
