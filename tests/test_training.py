"""Training on real MNIST (a few thousand images, small nets): files, resume, determinism, errors."""

import csv
import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from digit_recognizer import data, models, modelfile, nn
from digit_recognizer.errors import DigitsError
from digit_recognizer.training import (
    Checkpoint, EarlyStopping, LearningRateScheduler, TrainConfig, Trainer, splits, train,
)

ROOT = Path(__file__).resolve().parents[1]
RUN_FILES = ("config.json", "history.csv", "model.safetensors", "last.safetensors", "metrics.json",
             "curves.png", "confusion_matrix.png", "misclassified.png", "report.html")
SMALL_SPEC = """
[[layers]]
type = "Conv2D"
out_channels = 8
kernel_size = 3
padding = 1
[[layers]]
type = "MaxPool2D"
kernel_size = 2
[[layers]]
type = "BatchNorm2D"
[[layers]]
type = "ReLU"
[[layers]]
type = "Flatten"
[[layers]]
type = "Dropout"
p = 0.25
[[layers]]
type = "Dense"
out_features = 10
"""


@pytest.fixture
def small_spec(tmp_path):
    path = tmp_path / "small.toml"
    path.write_text(SMALL_SPEC)
    return path


def _env():
    return dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", PYTHONUNBUFFERED="1")


def _digits(*args):
    return [sys.executable, "-m", "digit_recognizer", *map(str, args)]


def _history(run_dir):
    with open(run_dir / "history.csv") as f:
        rows = list(csv.DictReader(f))
    return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]


def _weights(path):
    return modelfile.load(path).net.state_dict()


def _assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


@pytest.mark.slow
def test_short_real_training_leaves_a_complete_run_dir(mnist_data_dir, tmp_path):
    config = TrainConfig(model="lenet5", epochs=2, limit=3000, batch_size=32, learning_rate=3e-3,
                         data_dir=str(mnist_data_dir))
    summary = train(config, tmp_path / "run", command="test", progress=False)
    for name in RUN_FILES:
        assert (tmp_path / "run" / name).is_file(), name
    assert summary["test_accuracy"] > 0.90  # 2700 images, 2 epochs: a sane LeNet-5
    rows = _history(tmp_path / "run")
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert all(r["val_accuracy"] and r["lr"] for r in rows)
    model = modelfile.load(tmp_path / "run" / "model.safetensors")
    assert model.metadata["metrics"]["accuracy"] == summary["test_accuracy"]
    assert model.metadata["dataset"] == "mnist" and model.metadata["command"] == "test"
    assert model.metadata["training"]["limit"] == 3000


@pytest.mark.slow
def test_kill_and_resume_ends_with_the_uninterrupted_weights(mnist_data_dir, small_spec, tmp_path):
    flags = ["--model", small_spec, "--epochs", 3, "--limit", 4000, "--batch-size", 32,
             "--data-dir", mnist_data_dir, "--quiet"]
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    subprocess.run(_digits("train", *flags, "--out", reference), check=True, env=_env(),
                   capture_output=True)

    proc = subprocess.Popen(_digits("train", *flags, "--out", killed), env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # The event: epoch 1's checkpoint is renamed into place (the last thing an epoch
        # writes), so the run is now in epoch 2, a whole epoch of training from its end.
        deadline = time.time() + 120
        while not (killed / "last.safetensors").exists():
            assert proc.poll() is None and time.time() < deadline, "no checkpoint appeared"
            time.sleep(0.001)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert len(_history(killed)) == 1, "the kill did not land in epoch 2"
    assert not (killed / "report.html").exists()

    subprocess.run(_digits("train", "--resume", killed, "--quiet"), check=True, env=_env(),
                   capture_output=True)
    assert _history(killed) == _history(reference)
    _assert_same_weights(_weights(killed / "last.safetensors"), _weights(reference / "last.safetensors"))
    _assert_same_weights(_weights(killed / "model.safetensors"), _weights(reference / "model.safetensors"))
    for name in RUN_FILES:
        assert (killed / name).is_file(), name


def _small_trainer(seed, callbacks=(), spec=None):
    nn.manual_seed(seed)
    net = models.build(spec or models.parse_spec(SMALL_SPEC))
    return Trainer(net, nn.Adam(net.parameters(), lr=2e-3), mean=0.13, std=0.31, batch_size=64,
                   augmentation=data.augment.Augmentation(elastic_alpha=1.0), seed=seed,
                   callbacks=callbacks, progress=False)


@pytest.fixture(scope="module")
def few(mnist_train):
    images, labels = mnist_train
    return images[:1500], labels[:1500], images[1500:1800], labels[1500:1800]


@pytest.mark.slow
def test_same_seed_same_history_and_weights(few):
    x, y, xv, yv = few
    runs = []
    for seed in (7, 7, 8):
        trainer = _small_trainer(seed)
        history = trainer.fit(x, y, 2, (xv, yv))
        runs.append(([{k: v for k, v in r.items() if k != "seconds"} for r in history],
                     trainer.net.state_dict()))
    assert runs[0][0] == runs[1][0]
    _assert_same_weights(runs[0][1], runs[1][1])
    assert runs[0][0] != runs[2][0]


@pytest.mark.slow
def test_nan_loss_stops_with_a_clear_message_and_keeps_the_last_checkpoint(few, tmp_path):
    x, y, xv, yv = few
    steps = len(x) // 64
    best = EarlyStopping("val_loss")
    meta = {"spec": models.resolve(models.parse_spec(SMALL_SPEC)), "mean": 0.13, "std": 0.31,
            "classes": [str(d) for d in range(10)]}
    blow_up = LearningRateScheduler(lambda step: 1e-3 if step < steps else 1e30)
    trainer = _small_trainer(0, [blow_up, best, Checkpoint(tmp_path, meta, best)])
    with pytest.raises(DigitsError, match=r"loss became (nan|inf) at epoch 2"):
        trainer.fit(x, y, 3, (xv, yv))
    tensors, metadata = modelfile.read(tmp_path / "last.safetensors")
    assert metadata["checkpoint"]["epoch"] == 1
    assert all(np.isfinite(v).all() for v in tensors.values())


@pytest.mark.slow
def test_cli_refuses_bad_settings_in_one_line(tmp_path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x").write_text("keep me")
    cases = [
        (["train", "--out", tmp_path / "busy"], "already holds files"),
        (["train", "--resume", tmp_path / "busy", "--epochs", 3], "drop --epochs"),
        (["train", "--resume", tmp_path / "nothing"], "cannot resume"),
        (["train", "--epochs", 0, "--out", tmp_path / "e"], "--epochs must be at least 1"),
        (["train", "--model", "resnet", "--out", tmp_path / "m", "--limit", 100], "unknown model"),
    ]
    for args, message in cases:
        result = subprocess.run(_digits(*args), env=_env(), capture_output=True, text=True)
        assert result.returncode == 1, args
        assert message in result.stderr and "Traceback" not in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert (tmp_path / "busy" / "x").read_text() == "keep me"


def _classic_parser():
    spec = importlib.util.spec_from_file_location("classic_train", ROOT / "src" / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build_parser()


def test_classic_train_script_accepts_both_flag_spellings():
    parser = _classic_parser()
    for sep in "_-":
        args = parser.parse_args(["--epochs", "20", f"--batch{sep}size", "64", f"--learning{sep}rate", "0.001",
                                  f"--val{sep}size", "100", "--no-augment"])
        assert (args.epochs, args.batch_size, args.learning_rate, args.val_size, args.augment) == (20, 64, 0.001, 100, False)


@pytest.mark.slow
def test_classic_train_script_trains(mnist_data_dir, tmp_path):
    out = tmp_path / "classic"
    result = subprocess.run(
        [sys.executable, ROOT / "src" / "train.py", "--epochs", "1", "--batch_size", "64",
         "--learning_rate", "0.001", "--model", "mlp", "--limit", "1000", "--data_dir",
         mnist_data_dir, "--out", out],
        env=_env(), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    config = modelfile.load(out / "model.safetensors").metadata["training"]
    assert (config["batch_size"], config["learning_rate"], config["epochs"]) == (64, 0.001, 1)
    assert f"1 epoch -> {out}" in result.stderr
    assert (result.stdout + result.stderr).count(str(out / "report.html")) == 1  # the report is named once


@pytest.mark.slow
def test_classic_train_script_reports_errors_in_one_line(tmp_path):
    result = subprocess.run([sys.executable, ROOT / "src" / "train.py", "--batch_size", "0",
                             "--out", tmp_path / "x"], env=_env(), capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.startswith("python src/train.py: error: --batch-size must be at least 1")


@pytest.mark.slow
def test_training_with_negatives_learns_a_not_a_digit_class_and_a_temperature(mnist_data_dir, tmp_path):
    config = TrainConfig(model="lenet5", epochs=1, limit=2000, negatives=300, batch_size=32,
                         data_dir=str(mnist_data_dir))
    summary = train(config, tmp_path / "run", command="test", progress=False)
    model = modelfile.load(tmp_path / "run" / "model.safetensors")
    assert model.classes == [str(d) for d in range(10)] + ["not a digit"]
    assert model.not_a_digit_index == 10
    record = model.metadata["calibration"]
    # a tenth of each held out: 200 MNIST digits, 30 non-digits, 8 of the 75 printed digits
    assert record["split"] == "validation" and record["n"] == 200 + 30 + 8
    assert model.temperature == record["temperature"] == summary["temperature"]
    assert record["nll_after"] <= record["nll_before"] + 1e-12  # the fitted T minimises the NLL
    metrics = model.metadata["metrics"]
    assert 0.0 <= metrics["refused"] < 0.5 and 0.0 <= metrics["ece"] <= 1.0
    # the refusal threshold refuses at most one validation digit in a thousand (none of 200),
    # unless that takes a threshold above its ceiling, 0.999
    threshold = model.refusal_threshold
    assert 0.5 <= threshold == record["refusal_threshold"] <= 0.999
    _, (x_train, y_train), (x_val, y_val), _ = splits(config)
    assert len(y_train) == 1800 + 270 + 67 and (y_train[-67:] < 10).all()  # printed digits are digits
    refused = model.predict_proba(x_val)[:, 10] >= threshold
    assert record["digits_refused"] == pytest.approx(refused[y_val != 10].mean())
    assert record["non_digits_refused"] == pytest.approx(refused[y_val == 10].mean())
    assert record["digits_refused"] == 0.0 or threshold == 0.999


def _train_config(*argv):
    from digit_recognizer.cli import build_parser
    from digit_recognizer.cli.train import config_from_args

    return config_from_args(build_parser().parse_args(["train", *map(str, argv)]))


def test_digits_train_with_no_flags_follows_the_shipped_recipe():
    recipe = models.tomllib.loads((ROOT / "models" / "digits.toml").read_text())
    config = _train_config()
    assert config.model == "digits"
    for name, value in recipe["training"].items():
        expected = dict(TrainConfig().augmentation, **value) if name == "augmentation" else value
        assert getattr(config, name) == expected, name
    # ... and repeats the shipped model: the settings it was trained with
    shipped = modelfile.load(None).metadata["training"]
    assert {name: getattr(config, name) for name in shipped} == shipped
    assert models.get_spec("digits")[1] == recipe["layers"]
    assert models.resolve(recipe["layers"], n_classes=11)[-1]["out_features"] == 11
    # flags override the recipe; another model leaves the library's defaults
    assert _train_config("--epochs", 3, "--elastic", 0).epochs == 3
    assert _train_config("--elastic", 0).augmentation["elastic_alpha"] == 0.0
    assert _train_config("--model", "cnn").negatives == 0 and _train_config("--model", "cnn").epochs == 12


def test_a_spec_with_an_unknown_training_setting_is_refused(tmp_path):
    spec = tmp_path / "net.toml"
    spec.write_text('[training]\nepoch = 3\n\n[[layers]]\ntype = "Flatten"\n\n'
                    '[[layers]]\ntype = "Dense"\nout_features = 10\n')
    with pytest.raises(DigitsError, match="unknown training setting 'epoch'"):
        _train_config("--model", spec)
    spec.write_text(spec.read_text().replace("epoch = 3", "epochs = 3"))
    assert _train_config("--model", spec).epochs == 3
