"""One digit's ink -> the 28x28 input MNIST's own recipe would have made of it.

LeCun et al.: "normalized to fit in a 20x20 box preserving their aspect ratio
... centered in a 28x28 image by computing the center of mass of the pixels".
Before that, the stroke width is brought towards MNIST's.
"""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image
from scipy import ndimage

from digit_recognizer.preprocess.segmentation import grow, member_mask

DETAIL_SIDE = 80              # a digit is normalised at this size, then reduced to 20x20
# Stroke width of MNIST digits at DETAIL_SIDE (= 4x the 20x20 box), measured on
# 2000 MNIST test digits with `stroke_width`: median 10.0, 10th-90th percentile 7.4-14.0.
MNIST_STROKE = 10.0
# ``unblur``: the local peak is taken over UNBLUR_PEAK strokes (wider than a blurred stroke,
# narrower than the gap to a fainter one), never below UNBLUR_FLOOR of the digit's contrast
# (the halo far from any stroke is not raised); the half level is raised through UNBLUR_LEVELS
# (above 0.8 a blurred stroke's faint end is lost).
UNBLUR_PEAK = 3.0
UNBLUR_FLOOR = 0.25
UNBLUR_LEVELS = (0.6, 0.7, 0.8)


def resize(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize an (H, W) float array to (width, height) = size: area average when shrinking."""
    h, w = array.shape
    filt = Image.Resampling.BOX if size[0] <= w and size[1] <= h else Image.Resampling.BILINEAR
    return np.asarray(Image.fromarray(array.astype(np.float32), "F").resize(size, filt))


def digit_crop(ink, labels, box, members, x_full):
    """The ink of one digit, cropped; from the full-resolution image when it is small there.

    ``ink``/``labels`` are at work resolution, ``x_full`` is the full-resolution
    image (uint8, bright ink); pixels of other digits inside the box are left out.
    """
    t, l, b, r = box
    keep = member_mask(labels[t:b, l:r], members)
    keep = grow(keep)  # with the anti-aliased rim
    k = x_full.shape[0] // ink.shape[0]
    if k == 1 or max(b - t, r - l) >= DETAIL_SIDE:
        return np.where(keep, ink[t:b, l:r] * np.float32(1 / 255), np.float32(0))
    # Small at work resolution: take the digit's own pixels at full resolution,
    # less the paper level around it (light varies little over a small box).
    fine = x_full[t * k : b * k, l * k : r * k].astype(np.float32) * np.float32(1 / 255)
    keep = np.repeat(np.repeat(keep, k, axis=0), k, axis=1)[: fine.shape[0], : fine.shape[1]]
    paper = np.median(fine[~keep]) if (~keep).any() else 0.0
    return np.where(keep, np.clip(fine - paper, 0.0, 1.0), np.float32(0))


def stroke_width(mask: np.ndarray) -> float:
    """Mean stroke width of a binary drawing: area / (half the boundary length)."""
    area = mask.sum()
    if area == 0:
        return 0.0
    # pixels that stay after a 4-neighbour erosion (border pixels never do), by slicing:
    # the same count as ndimage.binary_erosion(mask).sum(), without its per-call overhead
    inner = mask[1:-1, 1:-1] & mask[:-2, 1:-1] & mask[2:, 1:-1] & mask[1:-1, :-2] & mask[1:-1, 2:]
    boundary = area - inner.sum()
    return 2.0 * area / max(boundary, 1)


def to_28x28(crop: np.ndarray, deskew: bool = False) -> np.ndarray:
    """Crop of one digit (ink in [0, 1]) -> (28, 28) MNIST-style float32.

    Scaled so its long side is DETAIL_SIDE (4x the 20-px box); contrast set so
    the stroke core is 1; strokes much thinner or thicker than MNIST's are
    dilated or eroded towards MNIST's width; reduced to fit 20x20 keeping the
    aspect ratio; placed so its centre of mass is the centre of the 28x28 image.
    """
    h, w = crop.shape
    f = DETAIL_SIDE / max(h, w)
    big = resize(crop, (max(1, round(w * f)), max(1, round(h * f))))
    strong = big[big > 0.25 * big.max()] if big.size else big
    if strong.size:
        big = np.clip(big / max(percentile(strong, 75), 1e-3), 0.0, 1.0)

    width = stroke_width(big > 0.5)
    if width > 1.4 * MNIST_STROKE:
        big = unblur(big)
        width = stroke_width(big > 0.5)
    if width < 0.75 * MNIST_STROKE:
        size = int(round(0.9 * MNIST_STROKE - width)) | 1
        big = np.pad(big, size)  # room to grow
        big = ndimage.grey_dilation(big, footprint=disk(size))
    elif width > 1.4 * MNIST_STROKE:
        size = int(round(width - 1.2 * MNIST_STROKE)) | 1
        if size < width / 2:  # never erase a stroke
            big = ndimage.grey_erosion(big, footprint=disk(size))
    rows, cols = np.flatnonzero(big.max(axis=1) > 0.05), np.flatnonzero(big.max(axis=0) > 0.05)
    if len(rows) and len(cols):
        big = big[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]

    h, w = big.shape
    f = 20.0 / max(h, w)
    small = resize(big, (max(1, round(w * f)), max(1, round(h * f))))
    out = np.zeros((28, 28), np.float32)
    sh, sw = small.shape
    total = small.sum()
    if total <= 0:
        return out
    cy = (small.sum(axis=1) @ np.arange(sh)) / total
    cx = (small.sum(axis=0) @ np.arange(sw)) / total
    top = int(np.clip(round(13.5 - cy), 0, 28 - sh))
    left = int(np.clip(round(13.5 - cx), 0, 28 - sw))
    out[top : top + sh, left : left + sw] = small
    return deskew_digit(out) if deskew else np.clip(out, 0.0, 1.0)


def unblur(big: np.ndarray) -> np.ndarray:
    """Strokes a blur has spread (a small digit a camera or an app blurred), brought back
    towards MNIST's width: the ink divided by its local peak (within UNBLUR_PEAK strokes: a
    faint stroke's core counts as much as a dark one's), then the lowest of UNBLUR_LEVELS at
    which the strokes are at most 1.2 MNIST strokes wide is made the new half level. A
    marker's sharp-edged strokes keep their width at any level (and are eroded later)."""
    size = int(UNBLUR_PEAK * MNIST_STROKE) | 1
    peak = cv2.dilate(big.astype(np.float32), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size)))
    big = np.clip(big / np.maximum(peak, UNBLUR_FLOOR), 0.0, 1.0)
    for level in UNBLUR_LEVELS:
        if stroke_width(big > level) <= 1.2 * MNIST_STROKE:
            break
    # a linear ramp taking ``level`` to 0.5 and 1 to 1
    return np.clip((big - (2 * level - 1)) / (2 * (1 - level)), 0.0, 1.0)


def percentile(values: np.ndarray, q: float) -> float:
    """``np.percentile(values, q)`` (linear interpolation) of a 1-D array by one
    partial sort: the same value, without np.percentile's generic-path overhead."""
    pos = q / 100 * (values.size - 1)
    lo = int(pos)
    hi = min(lo + 1, values.size - 1)
    part = np.partition(values, (lo, hi))
    a, b, t = float(part[lo]), float(part[hi]), pos - lo
    return a + (b - a) * t if t < 0.5 else b - (b - a) * (1 - t)  # np.percentile's lerp


def disk(size: int) -> np.ndarray:
    r = (size - 1) / 2
    yy, xx = np.mgrid[:size, :size]
    return (yy - r) ** 2 + (xx - r) ** 2 <= r * r + 0.5


def deskew_digit(digit: np.ndarray) -> np.ndarray:
    """Undo the slant of a (28, 28) digit: shear x by -cov(x, y) / var(y) about its centre."""
    total = digit.sum()
    if total <= 0:
        return digit
    yy, xx = np.mgrid[:28, :28].astype(np.float32)
    cy, cx = (digit * yy).sum() / total, (digit * xx).sum() / total
    var_y = (digit * (yy - cy) ** 2).sum() / total
    cov = (digit * (yy - cy) * (xx - cx)).sum() / total
    alpha = cov / max(var_y, 1e-6)
    # output (y, x) samples input (y, x + alpha (y - cy)); centre of mass moved to (13.5, 13.5)
    matrix = np.array([[1.0, 0.0], [alpha, 1.0]])
    offset = np.array([cy, cx]) - matrix @ np.array([13.5, 13.5])
    out = ndimage.affine_transform(digit, matrix, offset=offset, order=1, mode="constant")
    return np.clip(out, 0.0, 1.0).astype(np.float32)
