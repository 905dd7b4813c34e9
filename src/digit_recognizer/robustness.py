"""Robustness sweeps: accuracy as test digits are rotated, scaled, thickened, noised, blurred.

Each sweep changes one thing by a series of fixed amounts, on the same test images,
and measures the model at every level (``digits evaluate --sweeps``):

    rotation    degrees, about the image centre
    scale       factor, about the image centre (1 = unchanged)
    thickness   change of stroke width in pixels (negative: thinner), by grey-level
                dilation or erosion on a 4x finer grid
    noise       standard deviation of Gaussian pixel noise (pixels in [0, 1], clipped)
    blur        standard deviation in pixels of a Gaussian blur

At every level: ``accuracy`` (a "not a digit" answer counts as an error), ``refused``
(the share answered "not a digit", for a model with that class) and
``confidence`` (mean top probability).
"""

from __future__ import annotations

import numpy as np

from digit_recognizer import calibration
from digit_recognizer.data.augment import affine_maps, bilinear_sample

SWEEP_LEVELS = {
    "rotation": (-60, -45, -30, -15, 0, 15, 30, 45, 60),
    "scale": (0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3),
    "thickness": (-1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0, 3.0),
    "noise": (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6),
    "blur": (0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0),
}
SWEEP_UNITS = {"rotation": "degrees", "scale": "factor", "thickness": "stroke width change, pixels",
               "noise": "noise sigma", "blur": "blur sigma, pixels"}
_FINE = 4  # thickness is changed on a grid this many times finer than 28x28


def _disk(radius: int) -> np.ndarray:
    r = np.arange(-radius, radius + 1)
    return (r[:, None] ** 2 + r[None, :] ** 2) <= radius**2


def transform(images: np.ndarray, sweep: str, level: float, rng: np.random.Generator | None = None) -> np.ndarray:
    """``images`` (N, 28, 28) float32 in [0, 1] changed by one sweep's ``level``; same shape and range.
    ``rng`` draws the noise (the other sweeps are deterministic)."""
    x = np.asarray(images, dtype=np.float32)
    n, h, w = x.shape
    if sweep in ("rotation", "scale"):
        theta = np.deg2rad(level) if sweep == "rotation" else 0.0
        s = level if sweep == "scale" else 1.0
        ys, xs = affine_maps(np.full(n, theta), np.full(n, s), np.zeros(n), np.zeros(n), h, w)
        return np.clip(bilinear_sample(x, ys, xs), 0.0, 1.0)
    if sweep == "thickness":
        radius = int(round(abs(level) * _FINE / 2))  # a disk of radius r changes the width by 2r fine pixels
        if radius == 0:
            return x.copy()
        import cv2

        fine = x.repeat(_FINE, axis=1).repeat(_FINE, axis=2)  # averaged back below: level 0 is exact
        disk = _disk(radius).astype(np.uint8)
        grow = cv2.dilate if level > 0 else cv2.erode  # grey-level: max / min over the disk
        fine = np.stack([grow(image, disk) for image in fine])
        return np.clip(fine.reshape(n, h, _FINE, w, _FINE).mean(axis=(2, 4)), 0.0, 1.0).astype(np.float32)
    if sweep == "noise":
        rng = rng if rng is not None else np.random.default_rng(0)
        return np.clip(x + rng.normal(0.0, level, size=x.shape).astype(np.float32), 0.0, 1.0)
    if sweep == "blur":
        if level == 0:
            return x.copy()
        from scipy import ndimage

        return np.clip(ndimage.gaussian_filter(x, (0, level, level)), 0.0, 1.0).astype(np.float32)
    raise ValueError(f"unknown sweep {sweep!r}; choose from {', '.join(SWEEP_LEVELS)}")


def _measure(model, x: np.ndarray, labels: np.ndarray) -> dict:
    proba = np.asarray(model.predict_proba(x))
    reject = getattr(model, "not_a_digit_index", None)
    predicted = calibration.answers(proba, reject, getattr(model, "refusal_threshold", 0.5))
    row = {"accuracy": float((predicted == labels).mean()), "confidence": float(proba.max(axis=1).mean())}
    if reject is not None:
        row["refused"] = float((predicted == reject).mean())
    return row


def sweeps(model, images_uint8: np.ndarray, labels: np.ndarray, levels: dict | None = None,
           seed: int = 0) -> dict:
    """Every sweep at every level: {sweep: {"unit", "levels": [{"level", "accuracy", ...}]}}."""
    x = np.asarray(images_uint8, dtype=np.float32) / np.float32(255.0)
    labels = np.asarray(labels, dtype=np.int64)
    out = {}
    for sweep, values in (levels or SWEEP_LEVELS).items():
        rng = np.random.default_rng(seed)
        rows = [{"level": float(level), **_measure(model, transform(x, sweep, level, rng), labels)}
                for level in values]
        out[sweep] = {"unit": SWEEP_UNITS[sweep], "levels": rows}
    return out


def subset(labels: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of a seeded random subset of n samples (all, if n >= len(labels))."""
    if n >= len(labels):
        return np.arange(len(labels))
    return np.sort(np.random.default_rng(seed).choice(len(labels), size=n, replace=False))
