"""Classification metrics for a trained model: accuracy, loss, per-class scores, confusions.

Everything is computed from two arrays with vectorised NumPy:

    C[i, j] = #{samples with true class i predicted as class j}     (confusion matrix)
    precision_k = C[k, k] / sum_i C[i, k]     recall_k = C[k, k] / sum_j C[k, j]
    f1_k = 2 p r / (p + r)                    support_k = sum_j C[k, j]

A ratio whose denominator is zero (a class that is never predicted, or never present)
is defined as 0, as scikit-learn does with ``zero_division=0``, and raises no warning.
"""

from __future__ import annotations

import numpy as np

from digit_recognizer import calibration
from digit_recognizer.errors import DigitsError

NOT_A_DIGIT = "not a digit"  # as modelfile.NOT_A_DIGIT (this module needs no model files)

# Probabilities are clipped here before the log so a confident mistake costs a large
# but finite loss instead of inf.
_LOG_FLOOR = 1e-12


def confusion_matrix(y_true, y_pred, n_classes: int) -> np.ndarray:
    """Counts C (n_classes, n_classes) int64; rows are true classes, columns predictions."""
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    if y_true.shape != y_pred.shape or y_true.ndim != 1:
        raise ValueError(f"y_true and y_pred must be 1-D and equal length, got {y_true.shape} and {y_pred.shape}")
    for name, y in (("y_true", y_true), ("y_pred", y_pred)):
        if y.size and (y.min() < 0 or y.max() >= n_classes):
            raise ValueError(f"{name} holds labels outside 0..{n_classes - 1}")
    # Each (true, pred) pair maps to one cell of the flattened matrix.
    flat = np.bincount(y_true * n_classes + y_pred, minlength=n_classes * n_classes)
    return flat.reshape(n_classes, n_classes)


def _safe_divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator elementwise, 0.0 where the denominator is 0."""
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    out = np.zeros(np.broadcast(numerator, denominator).shape)
    np.divide(numerator, denominator, out=out, where=denominator != 0)
    return out


def normalize_rows(cm: np.ndarray) -> np.ndarray:
    """Row-normalised confusion matrix: entry (i, j) = P(predicted j | true i); empty rows stay 0."""
    cm = np.asarray(cm)
    return _safe_divide(cm, cm.sum(axis=1, keepdims=True))


def scores_from_confusion(cm: np.ndarray) -> dict[str, np.ndarray]:
    """Per-class precision, recall, f1 (float64 arrays) and support (int64) from counts."""
    cm = np.asarray(cm)
    true_positive = np.diag(cm)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    precision = _safe_divide(true_positive, predicted)
    recall = _safe_divide(true_positive, support)
    f1 = _safe_divide(2 * precision * recall, precision + recall)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support.astype(np.int64)}


def metrics_from_predictions(labels, proba: np.ndarray, classes: list[str],
                             refusal_threshold: float = 0.5) -> dict:
    """All metrics from true labels (N,) and predicted probabilities (N, K).

    Returns a JSON-ready dict: ``n``, ``accuracy``, ``loss`` (mean cross-entropy
    -log p[true]), ``macro_avg`` and ``weighted_avg`` ({precision, recall, f1}),
    ``per_class`` ([{digit, class, precision, recall, f1, support}], one per class in order;
    ``class`` is the class's name, ``digit`` its value, present only when every class is a digit),
    ``confusion_matrix`` (counts) and ``confusion_matrix_normalized`` (rows sum to 1),
    ``ece`` (expected calibration error, 15 bins) and ``reliability`` (its bins),
    ``classes`` and ``misclassified`` ([{index, true, predicted, confidence}] with class
    indices, most confident mistakes first; ``confidence`` is p[predicted]).

    A model with a "not a digit" class, measured on digits only, also gets ``refused``
    (the share of digits answered "not a digit"; they count as errors in ``accuracy``),
    and ``per_class`` leaves out the class that no sample has.
    """
    labels = np.asarray(labels, dtype=np.int64)
    proba = np.asarray(proba, dtype=np.float64)
    n_classes = len(classes)
    if proba.ndim != 2 or proba.shape != (labels.shape[0], n_classes):
        raise ValueError(f"expected probabilities of shape ({labels.shape[0]}, {n_classes}), got {proba.shape}")
    if labels.size == 0:
        raise ValueError("cannot evaluate on zero samples")

    rows = np.arange(labels.size)
    reject = list(classes).index(NOT_A_DIGIT) if NOT_A_DIGIT in classes else None
    predicted = calibration.answers(proba, reject, refusal_threshold)
    confidence = proba[rows, predicted]
    cm = confusion_matrix(labels, predicted, n_classes)
    scores = scores_from_confusion(cm)
    loss = float(-np.log(np.clip(proba[rows, labels], _LOG_FLOOR, 1.0)).mean())

    weights = scores["support"] / labels.size
    names = ("precision", "recall", "f1")
    reported = [k for k in range(n_classes) if k != reject or scores["support"][k]]
    # "digit" only where the classes are digits (besides "not a digit")
    digit_classes = all(str(classes[k]).isdigit() for k in range(n_classes) if k != reject)
    wrong = np.flatnonzero(predicted != labels)
    # Most confident mistakes first: those are the interesting ones to look at.
    wrong = wrong[np.argsort(-confidence[wrong], kind="stable")]

    calibrated = calibration.reliability(proba, labels)
    extra = {}
    if reject is not None:
        extra["refused"] = float((predicted == reject).mean())
    return {
        "n": int(labels.size),
        "accuracy": float(np.trace(cm) / labels.size),
        **extra,
        "loss": loss,
        "ece": calibrated["ece"],
        "macro_avg": {k: float(scores[k][reported].mean()) for k in names},
        "weighted_avg": {k: float((scores[k] * weights).sum()) for k in names},
        "per_class": [
            {
                **({"digit": int(name)} if digit_classes and k != reject else {}),
                "class": str(name),
                "precision": float(scores["precision"][k]),
                "recall": float(scores["recall"][k]),
                "f1": float(scores["f1"][k]),
                "support": int(scores["support"][k]),
            }
            for k, name in enumerate(classes) if k in reported
        ],
        "classes": [str(c) for c in classes],
        "confusion_matrix": cm.tolist(),
        "confusion_matrix_normalized": normalize_rows(cm).round(6).tolist(),
        "reliability": calibrated["bins"],
        "misclassified": [
            {
                "index": int(i),
                "true": int(labels[i]),
                "predicted": int(predicted[i]),
                "confidence": round(float(confidence[i]), 6),
            }
            for i in wrong
        ],
    }


def predict_proba_batched(model, images_uint8: np.ndarray, batch_size: int = 1000) -> np.ndarray:
    """Class probabilities (N, K) float32 for uint8 images (N, 28, 28), converted to [0, 1] per batch.

    Converting batch by batch keeps memory at one float32 batch instead of the whole split.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    images_uint8 = np.asarray(images_uint8)
    batches = [
        np.asarray(model.predict_proba(images_uint8[start : start + batch_size].astype(np.float32) / 255.0))
        for start in range(0, len(images_uint8), batch_size)
    ]
    return np.concatenate(batches).astype(np.float32, copy=False)


def evaluate(model, images_uint8, labels, batch_size: int = 1000) -> dict:
    """Evaluate ``model`` (anything with ``predict_proba`` and ``classes``) on uint8 images.

    ``images_uint8`` (N, 28, 28) uint8, ``labels`` (N,) ints in 0..K-1. Returns the dict
    of :func:`metrics_from_predictions`.
    """
    images_uint8 = np.asarray(images_uint8)
    labels = np.asarray(labels)
    if len(images_uint8) != len(labels):
        raise ValueError(f"{len(images_uint8)} images but {len(labels)} labels")
    proba = predict_proba_batched(model, images_uint8, batch_size)
    if not np.isfinite(proba).all():  # NaN weights: refuse rather than print invalid JSON
        raise DigitsError("the model produced non-finite probabilities (NaN or infinite weights?)")
    return metrics_from_predictions(labels, proba, list(model.classes), getattr(model, "refusal_threshold", 0.5))
