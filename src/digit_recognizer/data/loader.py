"""Loading a split into memory (uint8, as stored) and normalising it batch by batch."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from digit_recognizer.data.fetching import fetch
from digit_recognizer.data.idx import read_idx
from digit_recognizer.data.registry import SPLITS, Dataset, get_dataset
from digit_recognizer.errors import DigitsError


def load(dataset: str | Dataset = "mnist", split: str = "train",
         data_dir: str | Path | None = None, *, quiet: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(images, labels)``: uint8 arrays of shape (N, 28, 28) and (N,). Fetches if needed.

    Images stay uint8 (47 MB for MNIST's train split rather than 188 MB as
    float32); convert a batch at a time with ``normalize``.
    """
    ds = get_dataset(dataset)
    if split not in SPLITS:
        raise DigitsError(f"unknown split {split!r}; choose from {', '.join(SPLITS)}")
    folder = fetch(ds, data_dir, quiet=quiet)
    images_name, labels_name = ds.splits[split]
    images, labels = read_idx(folder / images_name), read_idx(folder / labels_name)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DigitsError(f"{folder / images_name}: expected uint8 images (N, H, W), got {images.dtype} {images.shape}")
    if labels.ndim != 1 or labels.dtype != np.uint8:
        raise DigitsError(f"{folder / labels_name}: expected uint8 labels (N,), got {labels.dtype} {labels.shape}")
    check_pair(images, labels, f"{ds.name} {split}")
    if labels.size and labels.max() >= len(ds.classes):
        raise DigitsError(f"{folder / labels_name}: label {labels.max()} out of range for {len(ds.classes)} classes")
    return images, labels


def check_pair(images: np.ndarray, labels: np.ndarray, what: str) -> None:
    """Refuse images and labels of different lengths."""
    if len(images) != len(labels):
        raise DigitsError(f"{what}: {len(images)} images but {len(labels)} labels")


def normalize(images: np.ndarray, mean: float, std: float) -> np.ndarray:
    """uint8 (N, H, W) or (N, 1, H, W) -> float32 (N, 1, H, W) = (x / 255 - mean) / std.

    Meant for one batch at a time, so the whole set never exists as float32.
    """
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[:, None]
    if images.ndim != 4 or images.shape[1] != 1:
        raise ValueError(f"normalize expects (N, H, W) or (N, 1, H, W) images, got shape {images.shape}")
    out = images.astype(np.float32)
    # one multiply and one subtract over the batch: x * (1 / (255 std)) - mean / std
    out *= np.float32(1.0 / (255.0 * std))
    out -= np.float32(mean / std)
    return out


def pixel_stats(images: np.ndarray) -> dict[str, float]:
    """Mean, std, min and max of pixels/255, exact, from a 256-bin histogram (no float copy)."""
    counts = np.bincount(np.asarray(images, dtype=np.uint8).ravel(), minlength=256).astype(np.float64)
    values = np.arange(256) / 255.0
    n = counts.sum()
    if n == 0:
        raise DigitsError("no pixels to describe")
    mean = float(counts @ values / n)
    std = float(np.sqrt(counts @ (values - mean) ** 2 / n))
    present = np.flatnonzero(counts)
    return {"mean": mean, "std": std, "min": float(values[present[0]]), "max": float(values[present[-1]])}
