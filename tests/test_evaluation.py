"""Metrics against hand-computed cases, a loop-based reference, and edge cases."""

import json
import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from digit_recognizer import evaluation
from digit_recognizer.errors import DigitsError

DIGITS = [str(d) for d in range(10)]


def one_hot_proba(pred, confidence, n_classes):
    """Probabilities with ``confidence`` on the predicted class and the rest spread evenly."""
    pred = np.asarray(pred)
    confidence = np.broadcast_to(np.asarray(confidence, dtype=np.float64), pred.shape)
    proba = np.repeat(((1 - confidence) / (n_classes - 1))[:, None], n_classes, axis=1)
    proba[np.arange(len(pred)), pred] = confidence
    return proba


class FakeModel:
    """Predicts class = (top-left pixel * 255) mod K with confidence 0.8; records its inputs."""

    def __init__(self, classes):
        self.classes = classes
        self.calls = []

    def predict_proba(self, images):
        self.calls.append((images.dtype, images.shape, float(images.min()), float(images.max())))
        pred = np.rint(images[:, 0, 0] * 255).astype(int) % len(self.classes)
        return one_hot_proba(pred, 0.8, len(self.classes)).astype(np.float32)


def test_hand_computed_three_classes():
    y_true = [0, 0, 0, 1, 1, 2]
    y_pred = [0, 0, 1, 1, 1, 1]
    conf = [0.7, 0.7, 0.6, 0.7, 0.7, 0.9]
    m = evaluation.metrics_from_predictions(y_true, one_hot_proba(y_pred, conf, 3), ["0", "1", "2"])

    assert m["confusion_matrix"] == [[2, 1, 0], [0, 2, 0], [0, 1, 0]]
    assert m["n"] == 6
    assert m["accuracy"] == pytest.approx(4 / 6)
    precision = [1.0, 0.5, 0.0]  # class 2 is never predicted: 0, not NaN
    recall = [2 / 3, 1.0, 0.0]
    f1 = [0.8, 2 / 3, 0.0]
    for k, row in enumerate(m["per_class"]):
        assert row["digit"] == k and isinstance(row["digit"], int)
        assert row["precision"] == pytest.approx(precision[k])
        assert row["recall"] == pytest.approx(recall[k])
        assert row["f1"] == pytest.approx(f1[k])
    assert [r["support"] for r in m["per_class"]] == [3, 2, 1]
    assert m["macro_avg"]["f1"] == pytest.approx((0.8 + 2 / 3) / 3)
    assert m["weighted_avg"]["recall"] == pytest.approx(m["accuracy"])  # always true for weighted recall
    assert m["weighted_avg"]["f1"] == pytest.approx((3 * 0.8 + 2 * 2 / 3) / 6)

    # p[true]: 0.7 for the four correct ones; 0.2 for the sample 2 (1 - 0.6 over 2 others), 0.05 for sample 5.
    expected_loss = -(4 * math.log(0.7) + math.log(0.2) + math.log(0.05)) / 6
    assert m["loss"] == pytest.approx(expected_loss)

    np.testing.assert_allclose(m["confusion_matrix_normalized"], [[2 / 3, 1 / 3, 0], [0, 1, 0], [0, 1, 0]], atol=1e-6)
    # Most confident mistake first.
    assert m["misclassified"] == [
        {"index": 5, "true": 2, "predicted": 1, "confidence": 0.9},
        {"index": 2, "true": 0, "predicted": 1, "confidence": 0.6},
    ]
    json.dumps(m)  # JSON-ready: plain Python types only


def test_edge_cases_give_zeros_without_warnings():
    # Class 1 never predicted, class 2 never present: precision, recall and f1 are 0, no warning.
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        m = evaluation.metrics_from_predictions([0, 0, 1], one_hot_proba([0, 0, 0], 0.9, 3), ["0", "1", "2"])
    assert [r["precision"] for r in m["per_class"]] == [pytest.approx(2 / 3), 0.0, 0.0]
    assert [r["recall"] for r in m["per_class"]] == [1.0, 0.0, 0.0]
    assert m["per_class"][2]["f1"] == 0.0 and m["per_class"][2]["support"] == 0
    assert m["confusion_matrix_normalized"][2] == [0.0, 0.0, 0.0]


def test_perfect_predictions_and_zero_probability_loss_is_finite():
    labels = np.arange(10)
    m = evaluation.metrics_from_predictions(labels, np.eye(10), DIGITS)
    assert m["accuracy"] == 1.0 and m["misclassified"] == []
    assert m["macro_avg"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0}
    assert m["loss"] == pytest.approx(0.0, abs=1e-9)
    # All mass on a wrong class: p[true] = 0 costs -log(1e-12), not inf.
    wrong = evaluation.metrics_from_predictions(labels, np.roll(np.eye(10), 1, axis=1), DIGITS)
    assert wrong["accuracy"] == 0.0 and math.isfinite(wrong["loss"]) and wrong["loss"] > 20


def test_class_names_are_reported_for_non_digit_classes():
    classes = ["T-shirt/top", "Trouser", "Pullover"]
    m = evaluation.metrics_from_predictions([0, 1, 2], np.eye(3), classes)
    assert [r["class"] for r in m["per_class"]] == classes
    assert not any("digit" in r for r in m["per_class"])  # Fashion-MNIST's classes are not digits
    assert m["classes"] == classes


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 6).flatmap(lambda k: st.tuples(
    st.just(k), st.lists(st.tuples(st.integers(0, k - 1), st.integers(0, k - 1)), min_size=1, max_size=60))))
def test_matches_loop_reference(case):
    n_classes, pairs = case
    y_true = np.array([t for t, _ in pairs])
    y_pred = np.array([p for _, p in pairs])
    m = evaluation.metrics_from_predictions(y_true, one_hot_proba(y_pred, 0.75, n_classes), [str(k) for k in range(n_classes)])
    cm = np.zeros((n_classes, n_classes), int)
    for t, p in pairs:
        cm[t, p] += 1
    assert m["confusion_matrix"] == cm.tolist()
    for k in range(n_classes):
        tp = sum(1 for t, p in pairs if t == k and p == k)
        n_pred = sum(1 for _, p in pairs if p == k)
        n_true = sum(1 for t, _ in pairs if t == k)
        precision = tp / n_pred if n_pred else 0.0
        recall = tp / n_true if n_true else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        row = m["per_class"][k]
        assert (row["precision"], row["recall"], row["support"]) == (pytest.approx(precision), pytest.approx(recall), n_true)
        assert row["f1"] == pytest.approx(f1)
    assert m["accuracy"] == pytest.approx(np.mean(y_true == y_pred))
    assert sorted(x["index"] for x in m["misclassified"]) == [i for i, (t, p) in enumerate(pairs) if t != p]


def test_evaluate_batches_and_scales_uint8_input():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(25, 28, 28), dtype=np.uint8)
    labels = images[:, 0, 0] % 10
    labels[:5] = (labels[:5] + 1) % 10  # five mistakes
    model = FakeModel(DIGITS)
    m = evaluation.evaluate(model, images, labels, batch_size=10)
    assert [c[1] for c in model.calls] == [(10, 28, 28), (10, 28, 28), (5, 28, 28)]
    assert all(dtype == np.float32 and 0.0 <= lo and hi <= 1.0 for dtype, _, lo, hi in model.calls)
    assert m["n"] == 25 and m["accuracy"] == pytest.approx(20 / 25)
    assert sorted(x["index"] for x in m["misclassified"]) == [0, 1, 2, 3, 4]
    assert m == evaluation.evaluate(FakeModel(DIGITS), images, labels, batch_size=1000)


@pytest.mark.parametrize("labels, proba, message", [
    ([0, 1], np.eye(3)[:1], "shape"),
    ([0, 5], np.eye(3)[:2], "outside"),
    ([], np.zeros((0, 3)), "zero samples"),
])
def test_bad_inputs_raise_value_error(labels, proba, message):
    with pytest.raises(ValueError, match=message):
        evaluation.metrics_from_predictions(labels, proba, ["0", "1", "2"])


def test_evaluate_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="labels"):
        evaluation.evaluate(FakeModel(DIGITS), np.zeros((3, 28, 28), np.uint8), [0, 1])


def test_non_finite_probabilities_are_refused():
    class NaNModel(FakeModel):
        def predict_proba(self, images):
            return np.full((len(images), 10), np.nan, np.float32)

    with pytest.raises(DigitsError, match="non-finite"):
        evaluation.evaluate(NaNModel(DIGITS), np.zeros((2, 28, 28), np.uint8), [0, 1])
