"""Losses: each returns (mean loss as a float, gradient w.r.t. its first argument)."""

import numpy as np


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    """p = e^(z - max z) / sum e^(z - max z): subtracting the max avoids overflow."""
    z = logits - logits.max(axis=axis, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=axis, keepdims=True)
    return z


def log_softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    """log p = z - logsumexp(z), with logsumexp(z) = m + log sum e^(z - m), m = max z."""
    z = logits - logits.max(axis=axis, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=axis, keepdims=True))


def softmax_cross_entropy(logits: np.ndarray, y, label_smoothing: float = 0.0):
    """Mean cross-entropy of softmax(logits) against integer labels, with label smoothing.

    target q = (1 - eps) * onehot(y) + eps / K;   L = -(1/N) sum_n sum_k q_nk log p_nk
    dL/dlogits = (p - q) / N.       logits (N, K), y (N,) ints in [0, K).
    """
    if not isinstance(logits, np.ndarray) or logits.ndim != 2 or logits.dtype not in (np.float32, np.float64):
        got = getattr(logits, "shape", type(logits).__name__)
        raise ValueError(f"softmax_cross_entropy expected float logits of shape (N, K), got {got}")
    n, k = logits.shape
    if n == 0:
        raise ValueError("softmax_cross_entropy got an empty batch")
    y = np.asarray(y)
    if y.shape != (n,) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"softmax_cross_entropy expected integer labels of shape ({n},), got {y.dtype} {y.shape}")
    if y.min() < 0 or y.max() >= k:
        raise ValueError(f"softmax_cross_entropy: labels must be in [0, {k}), got range [{y.min()}, {y.max()}]")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing}")

    logp = log_softmax(logits, axis=1)
    rows = np.arange(n)
    eps = label_smoothing
    loss = -(1.0 - eps) * logp[rows, y].sum()
    if eps:
        loss -= eps / k * logp.sum()
    grad = np.exp(logp)
    grad[rows, y] -= 1.0 - eps
    if eps:
        grad -= eps / k
    grad /= n
    return float(loss / n), grad


def mse_loss(pred: np.ndarray, target: np.ndarray):
    """Mean squared error over all elements: L = mean((pred - target)^2), dL/dpred = 2 (pred - target) / size."""
    target = np.asarray(target)
    if not isinstance(pred, np.ndarray) or pred.dtype not in (np.float32, np.float64) or target.shape != pred.shape:
        raise ValueError(f"mse_loss expected float pred and target of the same shape, got "
                         f"{getattr(pred, 'shape', type(pred).__name__)} and {target.shape}")
    diff = pred - target.astype(pred.dtype, copy=False)
    loss = float(np.mean(np.square(diff)))
    diff *= 2.0 / diff.size
    return loss, diff
