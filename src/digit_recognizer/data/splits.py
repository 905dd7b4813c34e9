"""A seeded, stratified train/validation split (the test split is never touched)."""

from __future__ import annotations

import numpy as np

from digit_recognizer.errors import DigitsError


def train_val_split(labels: np.ndarray, val_size: int | float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Split sample indices into (train_idx, val_idx), both sorted, with every class in proportion.

    ``val_size`` is a count (int) or a fraction in (0, 1). Class c gets
    ``floor(n_c * V / N)`` validation samples, and the remaining few go to the
    classes with the largest remainders, so the total is exactly V. Which
    samples are picked is random but fixed by ``seed``.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {labels.shape}")
    n = len(labels)
    if 0 < val_size < 1:
        val_size = round(float(val_size) * n)
    elif val_size != int(val_size):
        raise DigitsError(f"validation size must be a count or a fraction between 0 and 1, got {val_size}")
    val_size = int(val_size)
    if not 0 <= val_size < n:
        raise DigitsError(f"validation size must be between 0 and {n - 1} (the number of samples minus 1), got {val_size}")

    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    exact = counts * (val_size / n)
    quota = np.floor(exact).astype(np.int64)
    short = val_size - quota.sum()
    # largest remainders first; ties go to the lower class (stable sort)
    quota[np.argsort(-(exact - quota), kind="stable")[:short]] += 1

    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    order = order[np.argsort(inverse[order], kind="stable")]   # grouped by class, random within class
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.arange(n) - np.repeat(starts, counts)             # position within its class group
    in_val = rank < np.repeat(quota, counts)
    return np.sort(order[~in_val]), np.sort(order[in_val])
