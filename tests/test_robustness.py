"""Robustness sweeps: the transforms do what they say, and `digits evaluate --sweeps` reports them."""

import json

import numpy as np
import pytest

from digit_recognizer import cli, modelfile, models, nn, report, robustness


def _bar() -> np.ndarray:
    x = np.zeros((2, 28, 28), np.float32)
    x[:, 6:22, 13:15] = 1.0  # a vertical stroke, 2 px wide
    return x


@pytest.mark.parametrize("sweep, identity", [("rotation", 0), ("scale", 1.0), ("thickness", 0.0),
                                             ("noise", 0.0), ("blur", 0.0)])
def test_the_neutral_level_changes_nothing(sweep, identity):
    x = _bar()
    np.testing.assert_allclose(robustness.transform(x, sweep, identity), x, atol=1e-6)


def test_rotation_by_90_degrees_turns_the_stroke_sideways():
    turned = robustness.transform(_bar(), "rotation", 90)[0]
    rows, cols = np.nonzero(turned > 0.5)
    assert np.ptp(cols) > 12 and np.ptp(rows) <= 3


def test_thickness_and_scale_change_the_amount_of_ink_in_order():
    x = _bar()
    ink = [robustness.transform(x, "thickness", level).sum() for level in (-0.5, 0.0, 1.0, 2.0)]
    assert ink == sorted(ink) and ink[0] < ink[1] < ink[-1]
    assert robustness.transform(x, "thickness", 1.0)[0, 14].sum() == pytest.approx(3.0, abs=0.1)  # 2 px wide -> 3 px
    small = [robustness.transform(x, "scale", s).sum() for s in (0.5, 1.0, 1.3)]
    assert small == sorted(small)


def test_noise_and_blur_keep_the_pixel_range():
    x = _bar()
    noisy = robustness.transform(x, "noise", 0.5, np.random.default_rng(1))
    blurred = robustness.transform(x, "blur", 1.5)
    for y in (noisy, blurred):
        assert y.dtype == np.float32 and y.min() >= 0.0 and y.max() <= 1.0
    assert blurred.max() < 1.0 and blurred.sum() == pytest.approx(x.sum(), rel=0.02)
    with pytest.raises(ValueError, match="unknown sweep"):
        robustness.transform(x, "shear", 1.0)


def _tiny_model(tmp_path, classes=11):
    spec = [{"type": "Flatten"}, {"type": "Dense", "in_features": 784, "out_features": classes}]
    nn.manual_seed(0)
    meta = {"spec": spec, "mean": 0.13, "std": 0.31, "dataset": "mnist", "temperature": 1.5,
            "classes": [str(d) for d in range(10)] + ["not a digit"] * (classes - 10)}
    return modelfile.save(tmp_path / "tiny.safetensors", models.build(spec, n_classes=classes), meta)


def test_sweeps_measure_every_level(tmp_path, mnist_test):
    model = modelfile.load(_tiny_model(tmp_path))
    images, labels = mnist_test
    levels = {"rotation": (0, 30), "noise": (0.0, 0.2)}
    result = robustness.sweeps(model, images[:50], labels[:50], levels)
    assert list(result) == ["rotation", "noise"]
    rows = result["rotation"]["levels"]
    assert [r["level"] for r in rows] == [0.0, 30.0]
    proba = model.predict_proba(images[:50])
    assert rows[0]["accuracy"] == pytest.approx(float((proba.argmax(1) == labels[:50]).mean()))
    assert rows[0]["refused"] == pytest.approx(float((proba.argmax(1) == 10).mean()))
    assert all(0.0 <= r["confidence"] <= 1.0 for r in rows)
    assert result == robustness.sweeps(model, images[:50], labels[:50], levels)  # seeded: repeatable


@pytest.mark.slow
def test_evaluate_sweeps_json_and_report(tmp_path, mnist_data_dir, capsys):
    path = _tiny_model(tmp_path)
    code = cli.main(["evaluate", str(path), "--data-dir", str(mnist_data_dir), "--json", "--sweeps",
                     "--sweep-size", "40", "--out", str(tmp_path / "report")])
    assert code == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["sweep_n"] == 40 and set(metrics["sweeps"]) == set(robustness.SWEEP_LEVELS)
    assert 0.0 <= metrics["ece"] <= 1.0 and "refused" in metrics
    html = (tmp_path / "report" / "report.html").read_text()
    assert "Robustness sweeps" in html and "Reliability diagram" in html and "T = 1.500" in html
    assert (tmp_path / "report" / "sweeps.png").is_file() and (tmp_path / "report" / "reliability.png").is_file()
    assert cli.main(["evaluate", str(path), "--sweeps", "--sweep-size", "0"]) == 1
    assert "--sweep-size must be at least 1" in capsys.readouterr().err
