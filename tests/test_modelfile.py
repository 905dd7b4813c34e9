"""Model files: round trip, Model.predict_proba, and refusal of every kind of bad file."""

import json
import pickle
import struct

import numpy as np
import pytest
from safetensors.numpy import save_file

from digit_recognizer import models, modelfile, nn
from digit_recognizer.errors import DigitsError

SPEC = [
    {"type": "Conv2D", "in_channels": 1, "out_channels": 4, "kernel_size": 3, "padding": 1},
    {"type": "MaxPool2D", "kernel_size": 2},
    {"type": "BatchNorm2D", "num_features": 4},
    {"type": "ReLU"},
    {"type": "Flatten"},
    {"type": "Dense", "in_features": 784, "out_features": 10},
]
META = {"spec": SPEC, "mean": 0.13, "std": 0.31, "classes": [str(d) for d in range(10)],
        "dataset": "mnist", "metrics": {"accuracy": 0.5}, "version": "1.0.0",
        "command": "digits train", "input_shape": [1, 28, 28]}


@pytest.fixture
def saved(tmp_path):
    nn.manual_seed(0)
    net = models.build(SPEC)
    net[2].running_mean[:] = np.arange(4)  # a buffer must survive the round trip too
    path = modelfile.save(tmp_path / "m.safetensors", net, META)
    return path, net


def test_round_trip_keeps_weights_buffers_and_metadata(saved):
    path, net = saved
    model = modelfile.load(path)
    for key, value in net.state_dict().items():
        assert np.array_equal(model.net.state_dict()[key], value)
    assert model.metadata == META
    assert model.classes == META["classes"]


def test_predict_proba_normalises_and_accepts_the_usual_shapes(saved):
    path, net = saved
    model = modelfile.load(path)
    images = np.random.default_rng(0).random((5, 28, 28), dtype=np.float32)
    proba = model.predict_proba(images)
    assert proba.shape == (5, 10) and proba.dtype == np.float32
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    expected = nn.softmax(net.forward(((images - 0.13) / 0.31)[:, None]))
    np.testing.assert_allclose(proba, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.predict_proba(images[:, None]), proba, atol=1e-6)
    np.testing.assert_allclose(model.predict_proba(images[0]), proba[:1], atol=1e-6)
    np.testing.assert_allclose(model.predict_proba((images * 255).round().astype(np.uint8)), proba, atol=2e-2)
    np.testing.assert_array_equal(model.predict(images), proba.argmax(axis=1))
    with pytest.raises(DigitsError, match="expected images of shape"):
        model.predict_proba(np.zeros((2, 32, 32), np.float32))


def test_the_writer_is_atomic(saved, tmp_path):
    path, _ = saved
    assert not list(tmp_path.glob(".*.tmp"))


def _bad_files(tmp_path, good: bytes):
    n = struct.unpack("<Q", good[:8])[0]
    header = json.loads(good[8:8 + n])

    def with_header(h):
        raw = json.dumps(h).encode()
        return struct.pack("<Q", len(raw)) + raw + good[8 + n:]

    no_meta = dict(header)
    del no_meta["__metadata__"]
    partial_meta = json.loads(json.dumps(header))
    del partial_meta["__metadata__"]["spec"]
    wrong_shape_path = tmp_path / "wrong_shape.safetensors"
    tensors = {k: v for k, v in modelfile.read(tmp_path / "m.safetensors")[0].items()}
    tensors["5.weight"] = np.zeros((10, 100), np.float32)
    save_file(tensors, str(wrong_shape_path), metadata=header["__metadata__"])
    missing_path = tmp_path / "missing_tensor.safetensors"
    del tensors["5.weight"]
    save_file(tensors, str(missing_path), metadata=header["__metadata__"])
    return {
        "truncated": (good[: len(good) // 2], "truncated"),
        "tiny": (good[:5], "truncated"),
        "empty": (b"", "truncated"),
        "wrong header": (struct.pack("<Q", 40) + b"{this is not json at all......}" + b" " * 9 + good[48:],
                         "corrupt safetensors header"),
        "random bytes": (b"\x13\x37" * 500, "not a safetensors model file"),
        "no metadata": (with_header(no_meta), "no digit-recognizer metadata"),
        "partial metadata": (with_header(partial_meta), "lacks model metadata: spec"),
        "pickle": (pickle.dumps({"0.weight": np.zeros(3)}), "is a Python pickle"),
        "torch zip": (b"PK\x03\x04" + b"\x00" * 100, "zip archive"),
        "wrong shape": (wrong_shape_path.read_bytes(), "has shape (10, 100) but the architecture needs (10, 784)"),
        "missing tensor": (missing_path.read_bytes(), "lacks tensor '5.weight'"),
    }


def test_every_bad_file_is_refused_with_one_clear_line(saved, tmp_path):
    path, _ = saved
    for case, (content, message) in _bad_files(tmp_path, path.read_bytes()).items():
        bad = tmp_path / "bad.safetensors"
        bad.write_bytes(content)
        with pytest.raises(DigitsError) as info:
            modelfile.load(bad)
        assert message in str(info.value), case
        assert "\n" not in str(info.value), case
    with pytest.raises(DigitsError, match="no such model file"):
        modelfile.load(tmp_path / "nope.safetensors")
    with pytest.raises(DigitsError, match="is a directory"):
        modelfile.load(tmp_path)


def test_a_checkpoint_loads_as_a_model(saved, tmp_path):
    path, net = saved
    extra = {"trainer/optimizer/exp_avg.0": np.ones(3, np.float32)}
    ckpt = modelfile.save(tmp_path / "last.safetensors", net, META, extra_tensors=extra)
    tensors, _ = modelfile.read(ckpt)
    assert "checkpoint/trainer/optimizer/exp_avg.0" in tensors
    assert modelfile.load(ckpt).predict(np.zeros((1, 28, 28), np.float32)).shape == (1,)


def test_every_bad_file_is_refused_by_the_cli_in_one_line(saved, tmp_path, capsys):
    from digit_recognizer.cli import main

    path, _ = saved
    for case, (content, message) in _bad_files(tmp_path, path.read_bytes()).items():
        bad = tmp_path / f"{case.replace(' ', '_')}.safetensors"
        bad.write_bytes(content)
        assert main(["evaluate", str(bad), "--json"]) == 1, case
        out, err = capsys.readouterr()
        assert out == "", case
        assert err.startswith("digits: error: ") and message in err, (case, err)
        assert len(err.strip().splitlines()) == 1, (case, err)


@pytest.mark.slow
def test_a_renamed_pickle_fails_cleanly_in_a_real_process(tmp_path):
    import subprocess
    import sys

    bad = tmp_path / "model.safetensors"
    bad.write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    result = subprocess.run([sys.executable, "-m", "digit_recognizer", "evaluate", str(bad)],
                            capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.strip() == (f"digits: error: {bad} is a Python pickle, not a safetensors model; "
                                     "pickles are never loaded because they can run arbitrary code")
