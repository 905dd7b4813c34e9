"""The page: what is paper and what is ink, whatever the light.

``paper_only`` paints a table around a sheet like the sheet; ``max_pool``
brings the page to the analysis resolution keeping thin strokes; ``ink_map``
removes the uneven light and thresholds what is left.
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from scipy import ndimage

WORK_SIDE = 320               # analysis resolution (long side), enough for a 5-digit number
MIN_CONTRAST = 0.08           # weakest ink (fraction of full scale) that still counts as ink


def hist_percentile(hist: np.ndarray, q: float) -> float:
    """The q-th percentile (0 <= q <= 100) of the values a histogram over [0, 1] counts."""
    cdf = np.cumsum(hist)
    return float(np.searchsorted(cdf, max(q / 100 * cdf[-1], 0.5))) / (len(hist) - 1)


def otsu_threshold(hist: np.ndarray) -> float:
    """Otsu's threshold in [0, 1] from a histogram over [0, 1]: argmax_t w0 w1 (mu0 - mu1)^2."""
    p = hist / max(hist.sum(), 1)
    omega = np.cumsum(p)
    mu = np.cumsum(p * np.arange(len(p)))
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (mu[-1] * omega - mu) ** 2 / (omega * (1 - omega))
    between[~np.isfinite(between)] = 0
    return (int(np.argmax(between)) + 0.5) / (len(p) - 1)


def paper_only(gray: np.ndarray) -> np.ndarray:
    """Paint what lies around a sheet of paper (a table, a floor) like the paper.

    On a ~64-px sample, the sheet is the largest bright region under Otsu's
    threshold when it is compact (it fills 65 % of its bounding box even turned
    by 15 degrees; a digit's strokes do not), covers 25-92 % of the photo (more
    than strokes ever do), is much brighter than the rest, leaves at least one
    border of the photo to the rest (two, unless it is as much brighter as paper
    is than a table) and has no ink around it (so it is not the lit part of a
    half-shadowed page).
    Without this, a dark frame around the paper decides the polarity or passes
    for ink. ``gray``: uint8, 255 = white; returned unchanged otherwise.
    """
    step = max(1, max(gray.shape) // 64)
    small = gray[step // 2 :: step, step // 2 :: step]  # a sample is enough for a sheet's outline
    bright = small > otsu_threshold(np.bincount(small.ravel(), minlength=256)) * 255
    if np.count_nonzero(bright) < 0.25 * small.size:
        return gray  # no bright region can be a sheet (light ink on a dark canvas): skip labelling
    labels, n = ndimage.label(bright)
    if n == 0:
        return gray
    area = np.bincount(labels.ravel())[1:]
    largest = int(np.argmax(area))
    if not 0.25 <= area[largest] / small.size <= 0.92:
        return gray  # the usual case: the paper fills the photo
    sheet = labels == largest + 1
    rows, cols = np.flatnonzero(sheet.any(axis=1)), np.flatnonzero(sheet.any(axis=0))
    box = (rows[-1] - rows[0] + 1) * (cols[-1] - cols[0] + 1)
    borders = sum(int(edge) for edge in (rows[0] == 0, cols[0] == 0, rows[-1] == sheet.shape[0] - 1,
                                           cols[-1] == sheet.shape[1] - 1))
    contrast = small[sheet].mean() - small[~sheet].mean()
    # (the lit part of a page beside a shadow touches three or four borders, but is
    # not as much brighter than the shadow as paper is than a table)
    if not (area[largest] >= 0.65 * box and (contrast > 60 and borders <= 2 or contrast > 110 and borders == 3)):
        return gray
    sheet = ndimage.binary_fill_holes(sheet)  # with the ink on it
    outside = small[~sheet]
    if np.median(outside) - np.percentile(outside, 2) > 40:
        return gray  # ink out there: a shadowed part of the page, not a table
    # The sheet, a little inside its edge, at full size; around it, the paper's own
    # brightness carried outwards from the nearest point of the sheet (a constant would
    # leave a step where the light on the paper varies).
    sheet = ndimage.binary_erosion(sheet, iterations=1)
    if not sheet.any():
        return gray
    nearest = ndimage.distance_transform_edt(~sheet, return_distances=False, return_indices=True)
    paper = ndimage.median_filter(small, 3)[nearest[0], nearest[1]]  # (the ink on it filtered out)
    size = gray.shape[::-1]
    full = np.asarray(Image.fromarray(sheet.astype(np.uint8) * 255).resize(size, Image.Resampling.BILINEAR)) > 127
    return np.where(full, gray, np.asarray(Image.fromarray(paper).resize(size, Image.Resampling.BILINEAR)))


def pool(x: np.ndarray, k: int, op=np.maximum) -> np.ndarray:
    """(H, W) -> (H // k, W // k): ``op`` (np.maximum or np.minimum) over each k x k block.

    Separable: first over the k rows of each block (whole contiguous rows), then
    over the k columns of that 1/k-high result: 2k whole-array ops instead of k*k
    strided ones, the same result. An image smaller than k keeps its one block.
    """
    h, w = max(1, x.shape[0] // k) * k, max(1, x.shape[1] // k) * k
    rows = x[0:h:k, :w].copy()
    for i in range(1, k):
        part = x[i:h:k, :w]
        op(rows[: len(part)], part, out=rows[: len(part)])
    out = rows[:, 0:w:k].copy()
    for j in range(1, k):
        part = rows[:, j:w:k]
        op(out[:, : part.shape[1]], part, out=out[:, : part.shape[1]])
    return out


def max_pool(x: np.ndarray, max_side: int) -> np.ndarray:
    """Shrink by an integer factor so the long side is at most ``max_side``, keeping the
    brightest pixel of each block: a 1-px stroke survives any reduction at full contrast."""
    k = -(-max(x.shape) // max_side)
    return x if k == 1 else pool(x, k, np.maximum)


def estimate_background(x: np.ndarray) -> np.ndarray:
    """Large-scale background of ``x`` (uint8, bright ink on a darker, uneven ground).

    A morphological opening (min filter, then max filter) with a window of a
    quarter of the short side erases every stroke narrower than that and keeps
    the variation of the lighting, even a shadow's edge. Computed on a
    ~64-px-high grid of block minima, brought back up to full size bilinearly.
    """
    h, w = x.shape
    coarse = pool(x, max(1, min(h, w) // 64), np.minimum)
    hb, wb = coarse.shape
    window = max(3, int(0.25 * min(hb, wb)) | 1)
    coarse = ndimage.minimum_filter(coarse, window, mode="nearest")
    low = coarse.min()
    if low == coarse.max():
        # Evenly lit (a canvas, a scan): the opening is this constant, so the max
        # filter and the upsampling, half the cost of this function, can be skipped.
        return np.full((h, w), low, np.uint8)
    coarse = ndimage.maximum_filter(coarse, window, mode="nearest")
    return np.asarray(Image.fromarray(coarse).resize((w, h), Image.Resampling.BILINEAR))


def ink_map(x: np.ndarray):
    """(ink, mask) from ``x`` (uint8, bright ink): background removed, Otsu threshold.

    ink: uint8 (255 = full contrast); mask: ink above the threshold.
    """
    background = estimate_background(x)
    ink = np.maximum(x, background) - background  # x - background, floored at 0, in uint8
    # (Pillow's C histogram: np.bincount would first widen every pixel to int64)
    hist = np.array(Image.fromarray(ink).histogram())
    threshold = max(otsu_threshold(hist), 0.5 * MIN_CONTRAST)
    return ink, ink > threshold * 255


def noise_floor(ink: np.ndarray) -> float:
    """Weakest mean ink (in [0, 1]) a real stroke has: paper level + 4 robust sigmas of
    the paper noise. ``ink``: uint8."""
    step = max(1, int(np.sqrt(ink.size / 5_000)))
    sample = ink[::step, ::step].ravel()
    median = hist_percentile(np.bincount(sample, minlength=256), 50)
    deviation = np.abs(sample.astype(np.int16) - round(median * 255)).astype(np.uint8)
    mad = hist_percentile(np.bincount(deviation, minlength=256), 50)
    return max(MIN_CONTRAST, median + 4 * 1.4826 * mad)


def dark_ink(gray: np.ndarray) -> bool:
    """True for dark ink on light paper (``gray``: uint8, 255 = white).

    The ink is the histogram tail farther from the median: most pixels are
    paper, so the median is the paper. Judged on ~20k samples.
    """
    step = max(1, int(np.sqrt(gray.size / 20_000)))
    hist = np.bincount(gray[::step, ::step].ravel(), minlength=256)
    mid = hist_percentile(hist, 50)
    for q in (0.5, 0.01):  # a tiny digit hides below the 0.5 % tail: look further out
        lo, hi = hist_percentile(hist, q), hist_percentile(hist, 100 - q)
        if lo != mid or hi != mid:
            return (mid - lo) > (hi - mid)
    return (mid - gray.min() / 255) > (gray.max() / 255 - mid)  # so tiny the samples missed it
