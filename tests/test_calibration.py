"""Calibrated confidence: temperature fitting, the expected calibration error, and the
temperature travelling in the model file to every prediction."""

import numpy as np
import pytest

from digit_recognizer import calibration, evaluation, modelfile, models, nn
from digit_recognizer.errors import DigitsError

SPEC = [{"type": "Flatten"}, {"type": "Dense", "in_features": 784, "out_features": 10}]


def sampled(n, temperature, seed=0, classes=10):
    """Logits, and labels drawn from softmax(logits / temperature): calibrated at that T."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 4, size=(n, classes))
    p = np.exp(logits / temperature - (logits / temperature).max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    labels = (p.cumsum(axis=1) > rng.random((n, 1))).argmax(axis=1)
    return logits, labels


@pytest.mark.parametrize("true_t", [0.5, 1.0, 2.5])
def test_fit_temperature_recovers_the_temperature_labels_were_drawn_with(true_t):
    logits, labels = sampled(20000, true_t)
    fitted = calibration.fit_temperature(logits, labels)
    assert fitted == pytest.approx(true_t, rel=0.08)
    # It is the minimum of the NLL: nearby temperatures do worse.
    best = calibration.nll(logits, labels, fitted)
    assert best <= calibration.nll(logits, labels, fitted * 1.1)
    assert best <= calibration.nll(logits, labels, fitted / 1.1)


def test_temperature_scaling_lowers_the_ece_of_an_overconfident_model():
    logits, labels = sampled(20000, 3.0, seed=1)  # softmax(logits) is far too sure
    raw = calibration.expected_calibration_error(nn.softmax(logits), labels)
    t = calibration.fit_temperature(logits, labels)
    scaled = calibration.expected_calibration_error(nn.softmax(logits / t), labels)
    assert raw > 0.1
    assert scaled < 0.02


def test_ece_by_hand():
    # Four answers: two at confidence 0.9 (one right), two at 0.6 (both right).
    proba = np.array([[0.9, 0.1], [0.9, 0.1], [0.4, 0.6], [0.4, 0.6]])
    labels = np.array([0, 1, 1, 1])
    # bins of width 1/15: 0.9 falls in (0.8667, 0.9333], 0.6 in (0.5333, 0.6]
    # ECE = 2/4 * |0.5 - 0.9| + 2/4 * |1.0 - 0.6| = 0.2 + 0.2
    result = calibration.reliability(proba, labels)
    assert result["ece"] == pytest.approx(0.4)
    counts = [b["count"] for b in result["bins"]]
    assert sum(counts) == 4 and len(counts) == 15
    full = [b for b in result["bins"] if b["count"]]
    assert [(b["confidence"], b["accuracy"]) for b in full] == [(pytest.approx(0.6), 1.0),
                                                                (pytest.approx(0.9), 0.5)]
    assert all(b["confidence"] is None for b in result["bins"] if not b["count"])


def test_ece_extremes():
    sure_right = np.eye(3)[[0, 1, 2]]
    assert calibration.expected_calibration_error(sure_right, np.array([0, 1, 2])) == 0.0
    assert calibration.expected_calibration_error(sure_right, np.array([1, 2, 0])) == 1.0


def test_metrics_carry_ece_and_reliability_bins():
    logits, labels = sampled(500, 1.0)
    metrics = evaluation.metrics_from_predictions(labels, nn.softmax(logits), [str(d) for d in range(10)])
    assert metrics["ece"] == pytest.approx(calibration.expected_calibration_error(nn.softmax(logits), labels))
    assert sum(b["count"] for b in metrics["reliability"]) == 500
    assert "refused" not in metrics


def test_refusals_of_a_model_with_a_not_a_digit_class_count_as_errors():
    classes = [str(d) for d in range(10)] + ["not a digit"]
    proba = np.zeros((4, 11))
    proba[[0, 1, 2, 3], [3, 5, 10, 10]] = 1.0  # two right, two refused
    metrics = evaluation.metrics_from_predictions(np.array([3, 5, 7, 1]), proba, classes)
    assert metrics["accuracy"] == 0.5
    assert metrics["refused"] == 0.5
    assert [c["digit"] for c in metrics["per_class"]] == list(range(10))  # no row for a class never present
    assert metrics["confusion_matrix"][7][10] == 1


def _model(temperature=None, classes=10):
    nn.manual_seed(0)
    spec = [SPEC[0], dict(SPEC[1], out_features=classes)]
    meta = {"spec": spec, "mean": 0.13, "std": 0.31,
            "classes": [str(d) for d in range(10)] + ["not a digit"] * (classes - 10)}
    if temperature is not None:
        meta["temperature"] = temperature
    return modelfile.Model(models.build(spec, n_classes=classes), meta)


def test_predict_proba_applies_the_temperature_from_the_metadata(tmp_path):
    x = np.random.default_rng(0).random((5, 28, 28)).astype(np.float32)
    plain = _model()
    assert plain.temperature == 1.0
    hot = _model(temperature=2.5)
    path = hot.save(tmp_path / "hot.safetensors")
    loaded = modelfile.load(path)
    assert loaded.temperature == 2.5
    np.testing.assert_allclose(loaded.predict_proba(x), nn.softmax(plain.logits(x) / 2.5), rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(loaded.predict(x), plain.predict(x))  # the answers do not change


@pytest.mark.parametrize("bad", [0, -1.0, "2", True, float("inf")])
def test_a_model_file_with_an_invalid_temperature_is_refused(tmp_path, bad):
    model = _model(temperature=bad)
    path = model.save(tmp_path / "bad.safetensors")
    with pytest.raises(DigitsError, match="temperature"):
        modelfile.load(path)


def test_not_a_digit_index_is_the_last_class_only():
    assert _model().not_a_digit_index is None
    assert _model(classes=11).not_a_digit_index == 10


def _biased(favourite: int, temperature=1.0) -> modelfile.Model:
    """An 11-class model that answers ``favourite`` for any image, with "not a digit" second."""
    model = _model(temperature=temperature, classes=11)
    dense = model.net.layers[-1]
    dense.weight.data[...] = 0.0
    dense.bias.data[...] = 0.0
    dense.bias.data[10] = 3.0
    dense.bias.data[favourite] = 5.0
    return model


def test_a_not_a_digit_answer_is_an_error_on_every_prediction_path():
    from digit_recognizer import predict
    from digit_recognizer.serve.inference import run_prediction
    from test_preprocess import drawn

    image = drawn("A")
    refused = predict.predict_image(_biased(10), image)
    assert refused["error"] == "not a digit"
    assert 0.5 < refused["not_a_digit"] <= 1.0
    answered = predict.predict_image(_biased(3), image, top_k=11)
    assert answered["digit"] == 3 and "error" not in answered
    assert [k for k, _ in answered["top_k"]] == [3, 0, 1, 2, 4, 5, 6, 7, 8, 9]  # never class 10
    # calibrated: p(3) = e^5 / (e^5 + e^3 + 9), the rest of the mass on "not a digit" and the others
    assert answered["confidence"] == pytest.approx(np.exp(5) / (np.exp(5) + np.exp(3) + 9), abs=1e-4)
    page = run_prediction(_biased(10, temperature=2.0), image, 3)
    assert page["error"] == "not a digit" and len(page["probabilities"]) == 11
    assert np.argmax(page["probabilities"]) == 10


def test_answers_refuse_only_from_the_threshold_on():
    proba = np.array([[0.30, 0.10, 0.60],    # "not a digit" most probable, below the threshold
                      [0.05, 0.05, 0.90],    # refused
                      [0.70, 0.20, 0.10]])
    np.testing.assert_array_equal(calibration.answers(proba), [2, 2, 0])  # plain argmax
    np.testing.assert_array_equal(calibration.answers(proba, reject=2, threshold=0.5), [2, 2, 0])
    np.testing.assert_array_equal(calibration.answers(proba, reject=2, threshold=0.8), [0, 2, 0])
    # the "not a digit" column need not be last
    np.testing.assert_array_equal(calibration.answers(proba[:, ::-1], reject=0, threshold=0.8), [2, 0, 2])


def test_refusal_threshold_refuses_at_most_the_allowed_share_of_digits():
    p = np.random.default_rng(0).beta(0.3, 8.0, size=5000)  # mostly near 0, a long tail
    tau = calibration.fit_refusal_threshold(p, max_refused=0.002)
    assert (p >= tau).mean() <= 0.002
    assert (p >= np.nextafter(tau, 0) - 1e-9).mean() > 0.002 or tau == 0.5  # the lowest such tau
    p32 = np.float32(0.9) + np.zeros(2000, np.float32)
    p32[0] = np.float32(0.97)
    tau = calibration.fit_refusal_threshold(p32, max_refused=0.0005)  # one of 2000 may be refused
    assert (p32 >= tau).sum() == 1 and (p32.astype(np.float64) >= tau).sum() == 1  # compared in float32 too
    assert calibration.fit_refusal_threshold(np.zeros(100)) == 0.5           # never below 1/2
    assert calibration.fit_refusal_threshold(np.ones(100)) == 0.999          # never above 0.999
    with pytest.raises(ValueError):
        calibration.fit_refusal_threshold(np.array([]))


def test_the_refusal_threshold_from_the_metadata_decides_every_prediction_path(tmp_path):
    from digit_recognizer import predict
    from test_preprocess import drawn

    model = _biased(10)          # p("not a digit") = e^5 / (e^5 + 10) ~ 0.937 for any image
    x = np.zeros((2, 28, 28), np.float32)
    assert model.refusal_threshold == 0.5 and (model.predict(x) == 10).all()
    model.metadata["refusal_threshold"] = 0.95
    loaded = modelfile.load(model.save(tmp_path / "m.safetensors"))
    assert loaded.refusal_threshold == 0.95
    assert (loaded.predict(x) != 10).all()
    assert "error" not in predict.predict_image(loaded, drawn("A"))
    metrics = evaluation.evaluate(loaded, np.zeros((2, 28, 28), np.uint8), np.array([0, 0]))
    assert metrics["refused"] == 0.0
    model.metadata["refusal_threshold"] = 0.3  # below 1/2: a file no reader should trust
    with pytest.raises(DigitsError, match="refusal_threshold"):
        modelfile.load(model.save(tmp_path / "bad.safetensors"))


def test_marks_refused_beside_digits_are_left_out_of_the_reading():
    from digit_recognizer import predict, preprocess
    from digit_recognizer.serve.inference import read_extraction
    from test_preprocess import two_lines

    model = _model(classes=11)
    model.metadata["refusal_threshold"] = 0.6

    def probs_for(ex, refused):
        """Probabilities that read the marks (in reading order) as 7, 7, 3, refusing ``refused``."""
        probs = np.full((len(ex.pool), 11), 0.01, np.float32)
        for position, (i, digit) in enumerate(zip(ex.indices, (7, 7, 3))):
            probs[i, 10 if position in refused else digit] = 0.9
        return probs

    ex = preprocess.extract(two_lines())          # "7" over "73"
    assert predict.read(model, ex, probs=probs_for(ex, {0}))["number"] == "73"  # the top line is gone
    assert ex.line_lengths == [2] and len(ex.digits) == 2
    ex = preprocess.extract(two_lines())
    assert predict.read(model, ex, probs=probs_for(ex, {2}))["lines"] == ["7", "7"]
    ex = preprocess.extract(two_lines())
    assert predict.read(model, ex, probs=probs_for(ex, {0, 1, 2}))["error"] == "not a digit"
    # the page's payload pairs each digit read with its own probabilities
    ex = preprocess.extract(two_lines())
    probs = probs_for(ex, {1})
    model.predict_proba = lambda pool: probs
    page = read_extraction(model, ex, 3)
    assert page["lines"] == ["7", "3"] and [d["probabilities"].index(0.9) for d in page["digits"]] == [7, 3]


def test_digits_predict_answers_not_a_digit_on_stdout_and_exits_0(tmp_path, capsys):
    from digit_recognizer.cli import main
    from test_preprocess import drawn

    model_path = _biased(10).save(tmp_path / "refuses.safetensors")
    drawn("A").save(tmp_path / "letter.png")
    (tmp_path / "broken.png").write_bytes(b"not an image")
    assert main(["predict", "--model", str(model_path), str(tmp_path / "letter.png")]) == 0
    out, err = capsys.readouterr()
    assert out.startswith(f"{tmp_path / 'letter.png'}: not a digit (") and err == ""
    # a file that cannot be read still fails the command
    assert main(["predict", "--model", str(model_path), str(tmp_path / "letter.png"), str(tmp_path / "broken.png")]) == 1
