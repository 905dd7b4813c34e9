"""The page: what is paper and what is ink, whatever the light.

``paper_only`` paints a table around a sheet like the sheet; ``max_pool``
brings the page to the analysis resolution keeping thin strokes; ``ink_map``
removes the uneven light and thresholds what is left.
"""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image
from scipy import ndimage

# Analysis resolution (long side): enough for a 5-digit number. A ruled page, or one with
# small digits, is read at DETAIL_WORK_SIDE: rules 15 px apart in a 1600-px photo are still
# 6 px apart there, and a digit 10 px high in a 640-px photo keeps its size.
WORK_SIDE = 320
DETAIL_WORK_SIDE = 640
MIN_CONTRAST = 0.08           # weakest ink (fraction of full scale) that still counts as ink
# The background is estimated on a grid of block minima this many cells on the short
# side: fine enough that a shadow's edge is placed within a few pixels, coarse enough
# that the opening costs a fraction of a millisecond.
BACKGROUND_GRID = 80
# Opening window, as a fraction of the short side: wider than any stroke. On an evenly
# coloured ground (a canvas, a scan) a marker's stroke can be 16 % of the side, or more on a
# small image; in a photo strokes are thinner, and a narrower window follows the light
# better (the tip of a shadow's wedge, the darkening towards a corner).
BACKGROUND_WINDOW = {"even": 0.3, "photo": 0.12}
STROKE_WINDOWS = 2.5  # a photo's window is at least this many stroke widths
# A sheet lying on a table fills at least this share of the smallest rectangle around it.
SHEET_FILL = 0.85
# In a photo, polarity is judged from strokes narrower than this fraction of the short side
# that differ from their surroundings by more than STROKE_LEVELS grey levels.
POLARITY_WINDOW = 0.15
STROKE_LEVELS = 12
# ... unless one tail of the histogram is this many times longer than the other: then the
# paper is the median and the ink that tail, as on an evenly lit page.
DECISIVE = 3.0
INK_SHARE = 0.2  # ink never covers more of a page than this (beyond half its contrast)
# A ground is flat (a canvas, a scan with its noise) when FLAT_SHARE of it stays within
# FLAT_LEVELS grey levels of its median; paper in a photo varies more with the light.
FLAT_SHARE = 0.7
FLAT_LEVELS = 8
# Paper darker than this (fraction of white) is not brightened further: in the deepest
# shadow the noise would be amplified into ink.
DARKEST_PAPER = 0.15


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
    # compact: the sheet fills most of the smallest rectangle around it, at whatever angle it lies
    # (and shows two of its corners: the lit part of a half-shadowed page is compact too,
    # but its smallest rectangle's corners lie on or beyond the photo's edges)
    points = np.argwhere(sheet)[:, ::-1].astype(np.float32)
    rect = cv2.minAreaRect(points)
    (rect_w, rect_h) = rect[1]
    corners = cv2.boxPoints(rect)
    inside = np.count_nonzero((corners[:, 0] > 1) & (corners[:, 0] < sheet.shape[1] - 2)
                              & (corners[:, 1] > 1) & (corners[:, 1] < sheet.shape[0] - 2))
    compact = inside >= 2 and (area[largest] >= SHEET_FILL * max((rect_w + 1) * (rect_h + 1), 1)
                               or area[largest] >= 0.65 * box)
    if not (compact and (contrast > 60 and borders <= 2 or contrast > 110 and borders == 3)):
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


def estimate_background(x: np.ndarray, even: bool = True) -> np.ndarray:
    """The paper's own level under ``x`` (uint8, bright ink on a darker, uneven ground).

    A grey opening (erosion, then dilation, with a square BACKGROUND_WINDOW of
    the short side) erases every stroke narrower than the window and keeps
    what lighting does to the paper: a lamp's falloff (a ramp is kept exactly),
    dark corners, and the straight edge of a shadow (a half-plane is kept
    exactly). Computed on block minima BACKGROUND_GRID cells high and brought
    back up bilinearly; a dilation by one block first keeps the shadowed side of
    an edge from looking darker than its paper (which would be taken for ink).
    """
    h, w = x.shape
    k = max(1, min(h, w) // BACKGROUND_GRID)
    coarse = pool(x, k, np.minimum)
    low = int(coarse.min())
    if low == coarse.max():
        return np.full((h, w), low, np.uint8)  # evenly lit (a canvas, a scan)
    size = max(3, int(BACKGROUND_WINDOW["even"] * min(coarse.shape)) | 1)
    opened = _opening(coarse, size)
    if not even:
        # A photo: the narrowest window wider than STROKE_WINDOWS strokes, the strokes'
        # width measured on what the widest window calls ink (a stroke of width s has a
        # mean distance to its edge of about s / 4).
        residual = cv2.subtract(coarse, opened)
        strokes = residual > otsu_threshold(cv2.calcHist([residual], [0], None, [256], [0, 256]).ravel()) * 255
        if strokes.any():
            depth = cv2.distanceTransform(strokes.view(np.uint8), cv2.DIST_L2, 3)
            width = 4 * float(depth[strokes].mean())
            narrow = max(3, int(max(STROKE_WINDOWS * width, BACKGROUND_WINDOW["photo"] * min(coarse.shape))) | 1)
            if narrow < size:
                opened = _opening(coarse, narrow)
    coarse = np.clip(opened, 0, 255).astype(np.uint8)
    if k > 1:
        coarse = cv2.dilate(coarse, np.ones((3, 3), np.uint8))
    return cv2.resize(coarse, (w, h), interpolation=cv2.INTER_LINEAR)


def _opening(coarse: np.ndarray, size: int) -> np.ndarray:
    """Grey opening of ``coarse`` by a size x size square (float32). Beyond the edges, the
    light is continued by point reflection (f(-d) = 2 f(0) - f(d)): a ramp goes on as a
    ramp, so the opening does not flatten the darkening towards a corner (replicating the
    edge would make it a peak, and cut it off as if it were ink)."""
    r = size // 2
    padded = np.pad(coarse.astype(np.float32), r, mode="reflect", reflect_type="odd")
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (size, size))
    return cv2.morphologyEx(padded, cv2.MORPH_OPEN, kernel)[r:-r, r:-r]


def ink_map(x: np.ndarray, inverted: bool = True, even: bool = True):
    """(ink, mask, background) from ``x`` (uint8, bright ink).

    ink: the ink's contrast against its own paper, uint8 (255 = full contrast).
    For dark ink on paper (``inverted``), light multiplies what the paper
    reflects, so the contrast is divided by the paper's brightness: a stroke in
    a shadow is as strong as one in full light, and a shadow's edge is no ink.
    mask: ink above Otsu's threshold of the ink histogram (at least MIN_CONTRAST / 2).
    """
    background = estimate_background(x, even)
    ink = cv2.subtract(x, background)  # saturating: x - background, floored at 0
    if inverted and background.max() > 0:
        paper = np.maximum(255 - background, np.uint8(DARKEST_PAPER * 255))
        ink = cv2.divide(ink, paper, scale=255)  # saturating uint8 ink * 255 / paper
    hist = cv2.calcHist([ink], [0], None, [256], [0, 256]).ravel()
    threshold = max(otsu_threshold(hist), 0.5 * MIN_CONTRAST)
    return ink, ink > threshold * 255, background


def noise_floor(ink: np.ndarray) -> float:
    """Weakest mean ink (in [0, 1]) a real stroke has: paper level + 4 robust sigmas of
    the paper noise. ``ink``: uint8."""
    step = max(1, int(np.sqrt(ink.size / 5_000)))
    sample = ink[::step, ::step].ravel()
    median = hist_percentile(np.bincount(sample, minlength=256), 50)
    deviation = np.abs(sample.astype(np.int16) - round(median * 255)).astype(np.uint8)
    mad = hist_percentile(np.bincount(deviation, minlength=256), 50)
    return max(MIN_CONTRAST, median + 4 * 1.4826 * mad)


def polarity(gray: np.ndarray) -> tuple[bool, bool]:
    """(dark ink on light paper?, evenly coloured ground?) for ``gray`` (uint8, 255 = white).

    Judged on ~20k samples. On an evenly coloured ground (a canvas, a scan:
    most samples within FLAT_LEVELS of the median) the median is the paper and
    the ink is the histogram tail farther from it. In a photo the paper's level
    is the local median (a window POLARITY_WINDOW of the short side), and only
    pixels that morphology calls strokes count (a black or white top-hat, which
    a shadow's edge, a lamp's falloff or a table's edge never trigger, as steps
    and ramps survive openings and closings): the ink lies on the side of the
    paper those pixels mostly lie on. (The paper between the strokes of a
    number is also a "white stroke" to a top-hat, but it lies at the paper's level.)
    """
    step = max(1, int(np.sqrt(gray.size / 20_000)))
    sample = np.ascontiguousarray(gray[step // 2 :: step, step // 2 :: step])
    median = np.median(sample)
    even = np.count_nonzero(np.abs(sample.astype(np.int16) - median) <= FLAT_LEVELS) >= FLAT_SHARE * sample.size
    size = max(3, int(POLARITY_WINDOW * min(sample.shape)) | 1)
    hist = np.bincount(sample.ravel(), minlength=256)
    mid = hist_percentile(hist, 50)
    lo, hi = mid - hist_percentile(hist, 0.5), hist_percentile(hist, 99.5) - mid
    # one tail much longer, and sparse as ink is (a table or a shadow fills a long tail)
    cdf = np.cumsum(hist) / sample.size
    level = round(255 * (mid - lo / 2 if lo > hi else mid + hi / 2))
    tail = cdf[level] if lo > hi else 1 - cdf[level]
    decisive = max(lo, hi) >= DECISIVE * max(min(lo, hi), 1 / 255) and tail <= INK_SHARE
    if not even and not decisive and min(sample.shape) > 2 * size:
        kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (size, size))
        stroke = np.maximum(cv2.morphologyEx(sample, cv2.MORPH_BLACKHAT, kernel),
                            cv2.morphologyEx(sample, cv2.MORPH_TOPHAT, kernel)) > STROKE_LEVELS
        if np.count_nonzero(stroke) >= 20:
            paper = cv2.medianBlur(sample, min(size, 255))
            deviation = sample[stroke].astype(np.int16) - paper[stroke]
            lo, hi = np.percentile(deviation, (5, 95))
            if lo != hi:
                return -lo > hi, False
    if decisive or not even:
        return lo > hi, even
    # Evenly coloured but no tail stands out: the ink is too sparse for the samples (a digit
    # a few pixels high). Its strokes are then the extremes of the whole image, once a 3x3
    # mean has evened out the noise (which is as far out on both sides).
    smooth = cv2.blur(gray, (3, 3))
    paper = float(np.median(sample))
    return (paper - float(smooth.min())) > (float(smooth.max()) - paper), even
