"""The page: what is paper and what is ink, whatever the light.

``paper_only`` paints a table around a sheet like the sheet; ``max_pool``
brings the page to the analysis resolution keeping thin strokes; ``ink_map``
removes the uneven light and thresholds what is left.
"""

from __future__ import annotations

import functools

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
# In a photo, the light's shapes long in one direction (a shadow's wedge, the lit gap between
# two shadows) are kept as light where a segment LINE_LENGTH of the photo's height long fits in
# them: longer than the straightest run of ink of an upright digit (a "1" as tall as the photo
# is cut off by its edges; a digit's widest straight run, a 7's bar, is shorter than its height).
# LINE_ANGLES orientations, 22.5 degrees apart: a wedge of a half-angle over 11 degrees is kept
# to its tip (12 orientations read no better, and cost half as much again). Computed on a grid LINE_GRID times coarser than the background's (the segments
# are long, and the cost falls with the square of it).
LINE_LENGTH = 0.9
LINE_ANGLES = 8
LINE_GRID = 2
# A band of shadow (a pen's, a ruler's) narrower than the window lies at any angle; a segment
# fits along it only within a few degrees of its direction. So the line opening also takes the
# directions of the straight runs at least LINE_LENGTH of the height long that Hough's transform
# finds in what the widest window calls ink: at most BAND_ANGLES of them, BAND_ANGLE_GAP degrees
# apart at least (a wide band gives a fan of lines a degree or two apart; a second band its own).
BAND_ANGLES = 4
BAND_ANGLE_GAP = 3.0
# A sheet lying on a table fills at least this share of the smallest rectangle around it.
SHEET_FILL = 0.85
# ... or, partly out of the photo, this share of its convex hull (a sheet cut by the photo's
# edges is a convex polygon; a shadow's lit side is convex too, but then the ink check below
# finds the strokes in the shadow, or there are none there to lose) ...
SHEET_SOLIDITY = 0.93
# ... when it is brighter than the rest by this many grey levels: wood, a grey desk or a dark
# cloth (100-170 darker than paper); a shadow's lit side mostly less (a shadow takes 30-60 % of
# the light: 50-120 levels), a light table too, whose texture is then too faint to pass for ink.
TABLE_CONTRAST = 90
# Ink around the sheet: a block (of the sample's grid) whose darkest pixel lies this many grey
# levels under its neighbourhood, and 3 times further under it than the table's own texture
# takes most blocks (wood grain, a weave: all over; strokes: here and there).
INK_DIP = 40
INK_DIP_SHARE = 0.5  # ... or half its neighbourhood's brightness if less (a deep shadow), at least STROKE_LEVELS
INK_BLOCKS = 5  # blocks: wider than a stroke (1-3 blocks of a 64-block side), narrower than a shadow
# Polarity is judged on about this many samples of the page (its long side ~170 px).
POLARITY_SAMPLES = 20_000
# In a photo, polarity is judged from strokes narrower than this fraction of the short side
# that differ from their surroundings by more than STROKE_LEVELS grey levels (above JPEG noise),
# when at least MIN_STROKE_PIXELS of them do: a digit 8 px high in a photo sampled every 3 px
# leaves 6-15 block extremes (fewer are a speck of dust).
POLARITY_WINDOW = 0.15
STROKE_LEVELS = 12
MIN_STROKE_PIXELS = 6
# The two sides' strengths are the 5th and 95th percentiles of the stroke pixels' contrast:
# most of a pen's stroke lies at its full contrast, a blurred rim or the odd noise pixel does not.
STROKE_QUANTILE = 95
# In a photo, light ink is taken only when its strokes stand out this many times farther (in log
# ratio to their paper) than the dark ones. The lit part of a half-shadowed page, a glare spot or
# the lit gap between two shadows look like light strokes to a top-hat, up to log(1 / 0.4) = 0.9
# for a shadow taking 60 % of the light, as often as shadow bands look like dark ones; but dark
# ink on paper is by far the usual photo, and light ink (chalk on a board) stands out by a ratio
# of 3 or more (log 1.1).
LIGHT_INK_PRIOR = 1.5
# On an evenly coloured ground, the histogram's tail is ink when at least this share of it
# is strokes to a hat (the rest: the rim of strokes wider than the hat's window).
STROKE_TAIL = 0.5
# ... and when its outline is sharp: a pen's edge spans a few pixels, so across it a 3x3
# neighbourhood spreads over most of the ink's contrast; a lamp's spot fades over tens of pixels.
SHARP_EDGE = 0.5
# ... unless one tail of the histogram is this many times longer than the other: then the
# paper is the median and the ink that tail, as on an evenly lit page.
DECISIVE = 3.0
INK_SHARE = 0.2  # ink never covers more of a page than this (beyond half its contrast)
# A ground is flat (a canvas, a scan with its noise) when FLAT_SHARE of it stays within
# FLAT_LEVELS grey levels of its median; paper in a photo varies more with the light.
FLAT_SHARE = 0.7
FLAT_LEVELS = 8
# When Otsu's threshold falls in the paper's noise, a pixel is ink only when it stands out
# from the paper by this many robust sigmas of the noise: in a 640x480 photo, a JPEG's noise
# passes 4 sigmas at a few hundred pixels, which would be as many specks; 5 leaves a few single
# pixels (too small to be read), while the strokes of a digit 8 px high keep some 40-140.
NOISE_SIGMAS = 5
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


def paper_only(gray: np.ndarray) -> tuple[np.ndarray, float]:
    """Paint what lies around a sheet of paper (a table, a floor) like the paper.

    On a ~64-px sample, the sheet is the largest bright region under Otsu's
    threshold when it is compact (it fills 65 % of its bounding box even turned
    by 15 degrees; a digit's strokes do not), covers 25-92 % of the photo (more
    than strokes ever do), is much brighter than the rest, leaves at least one
    border of the photo to the rest (two, unless it is as much brighter as paper
    is than a table) and has no ink around it (so it is not the lit part of a
    half-shadowed page).
    Without this, a dark frame around the paper decides the polarity or passes
    for ink. ``gray``: uint8, 255 = white; returned unchanged otherwise. Also
    returns the sheet's turn in degrees (-45 to 45, clockwise as seen; 0 without
    a sheet): the writing on it is turned as much.
    """
    step = max(1, max(gray.shape) // 64)
    small = gray[step // 2 :: step, step // 2 :: step]  # a sample is enough for a sheet's outline
    bright = small > otsu_threshold(np.bincount(small.ravel(), minlength=256)) * 255
    if np.count_nonzero(bright) < 0.25 * small.size:
        return gray, 0.0  # no bright region can be a sheet (light ink on a dark canvas): skip labelling
    labels, n = ndimage.label(bright)
    if n == 0:
        return gray, 0.0
    area = np.bincount(labels.ravel())[1:]
    largest = int(np.argmax(area))
    if not 0.25 <= area[largest] / small.size <= 0.92:
        return gray, 0.0  # the usual case: the paper fills the photo
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
    if not (compact and (contrast > 60 and borders <= 2 or contrast > 110 and borders == 3)
            or contrast > TABLE_CONTRAST and _convex(ndimage.binary_fill_holes(sheet))):
        return gray, 0.0
    # With the ink on it: strokes inside, and strokes that reach its edge (closed over first:
    # a sheet's edge is straight, so only the notches such strokes leave are filled; beyond
    # the photo lies no sheet, so a strip of table along its edge stays table).
    sheet = ndimage.binary_fill_holes(_closing(sheet.view(np.uint8), cv2.BORDER_CONSTANT).view(bool))
    outside = small[~sheet]
    if outside.size == 0:
        return gray, 0.0  # with the ink on it, the region is the whole photo: no table
    if np.median(outside) - np.percentile(outside, 2) > 40 or _ink_around(gray, sheet, step):
        return gray, 0.0  # ink out there: a shadowed part of the page, not a table
    # The sheet, a little inside its edge, at full size; around it, the paper's own
    # brightness carried outwards from the nearest point of the sheet (a constant would
    # leave a step where the light on the paper varies).
    sheet = ndimage.binary_erosion(sheet, iterations=1)
    if not sheet.any():
        return gray, 0.0
    nearest = ndimage.distance_transform_edt(~sheet, return_distances=False, return_indices=True)
    # (the ink and the rules on it closed over: a median would let a grid's lines through, to be
    # carried outwards as dark rays)
    paper = cv2.morphologyEx(small, cv2.MORPH_CLOSE, np.ones((INK_BLOCKS, INK_BLOCKS), np.uint8))
    paper = paper[nearest[0], nearest[1]]
    size = gray.shape[::-1]
    full = np.asarray(Image.fromarray(sheet.astype(np.uint8) * 255).resize(size, Image.Resampling.BILINEAR)) > 127
    turn = (rect[2] + 45) % 90 - 45  # the rectangle's side nearest the horizontal, image y down
    return np.where(full, gray, np.asarray(Image.fromarray(paper).resize(size, Image.Resampling.BILINEAR))), turn


def _convex(region: np.ndarray) -> bool:
    """Whether ``region`` (bool) fills SHEET_SOLIDITY of its convex hull."""
    hull = np.zeros(region.shape, np.uint8)
    cv2.fillConvexPoly(hull, cv2.convexHull(np.argwhere(region)[:, ::-1].astype(np.int32)), 1)
    return np.count_nonzero(region) >= SHEET_SOLIDITY * np.count_nonzero(hull)


def _ink_around(gray: np.ndarray, sheet: np.ndarray, step: int) -> bool:
    """Whether strokes lie outside ``sheet`` (bool, on a grid of ``step``-pixel blocks of
    ``gray``): blocks whose darkest pixel lies INK_DIP under a closing of the block minima
    (a black top-hat: a stroke narrower than INK_BLOCKS is filled in, while the edge of a shadow
    or of the table, a step, is kept) and 3 times further than most blocks of the table
    (its texture). Block minima catch a stroke that a sample would step over."""
    darkest = pool(gray, step, np.minimum)
    # past the photo's edges the blocks go on as they end: a strip of table between the sheet
    # and the edge is as wide as it is in the world, not a stroke
    closed = _closing(darkest, cv2.BORDER_REPLICATE)
    dip = closed.astype(np.int16) - darkest
    h, w = min(darkest.shape[0], sheet.shape[0]), min(darkest.shape[1], sheet.shape[1])
    # not the sheet's edge: the sheet's outline on the sample may lie a block inside it
    away = ~ndimage.binary_dilation(sheet, iterations=2)[:h, :w]
    dip, closed = dip[:h, :w][away], closed[:h, :w][away]
    if dip.size == 0:
        return False
    # (in a deep shadow ink dips fewer grey levels, but as far in proportion to its paper)
    deep = np.minimum(INK_DIP, INK_DIP_SHARE * closed.astype(np.float32))
    return bool(np.count_nonzero(dip > np.maximum(deep, max(STROKE_LEVELS, 3 * np.median(dip)))) >= 2)


def _closing(x: np.ndarray, border: int) -> np.ndarray:
    """Closing of ``x`` (uint8, a ~64-px sample) by an INK_BLOCKS square, the photo continued
    past its edges as OpenCV's ``border`` says (BORDER_CONSTANT: by zeros)."""
    r = INK_BLOCKS
    padded = cv2.copyMakeBorder(x, r, r, r, r, border, value=0)
    return cv2.morphologyEx(padded, cv2.MORPH_CLOSE, np.ones((r, r), np.uint8))[r:-r, r:-r]


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
        opened = np.maximum(opened, _line_opening(coarse, _band_directions(strokes)))
    coarse = np.clip(opened, 0, 255).astype(np.uint8)
    if k > 1:
        coarse = cv2.dilate(coarse, np.ones((3, 3), np.uint8))
    return cv2.resize(coarse, (w, h), interpolation=cv2.INTER_LINEAR)


def _opening(coarse: np.ndarray, size: int, kernels=None) -> np.ndarray:
    """Grey opening of ``coarse`` by a size x size square (float32), or the largest of its
    openings by ``kernels`` (each at most size x size). Beyond the edges the light is
    continued (``_pad_rising``) so that the opening does not flatten the darkening towards a
    corner (replicating the edge would make it a peak, and cut it off as if it were ink)."""
    r = size // 2
    padded = _pad_rising(coarse.astype(np.float32), r)
    if kernels is not None:  # (OpenCV is several times faster on uint8 with an arbitrary kernel)
        padded = np.clip(padded, 0, 255).astype(np.uint8)
    else:
        kernels = [cv2.getStructuringElement(cv2.MORPH_RECT, (size, size))]
    opened = cv2.morphologyEx(padded, cv2.MORPH_OPEN, kernels[0])
    for kernel in kernels[1:]:
        np.maximum(opened, cv2.morphologyEx(padded, cv2.MORPH_OPEN, kernel), out=opened)
    return opened[r:-r, r:-r]


def _pad_rising(x: np.ndarray, r: int) -> np.ndarray:
    """``x`` (float32) padded by ``r``: by point reflection (f(-d) = 2 f(0) - f(d)) where it
    rises towards the edge, so a ramp goes on as a ramp; by the edge's value where it falls
    (a ramp down goes on flat, which an opening keeps just as well). A shadow's edge meeting
    the border at a slant would otherwise be reflected as a pit below either side, and the
    opening would carve a speck of false ink out of the border there.
    Rows first, then columns (from OpenCV's border copies: several times faster than np.pad)."""
    if r >= min(x.shape):  # beyond one reflection: NumPy's repeated reflection
        return np.maximum(np.pad(x, r, mode="reflect", reflect_type="odd"), np.pad(x, r, mode="edge"))
    for sides in ((r, r, 0, 0), (0, 0, r, r)):
        mirrored = cv2.copyMakeBorder(x, *sides, cv2.BORDER_REFLECT_101)
        edge = cv2.copyMakeBorder(x, *sides, cv2.BORDER_REPLICATE)
        x = np.maximum(cv2.addWeighted(edge, 2.0, mirrored, -1.0, 0.0), edge)
    return x


def _band_directions(strokes: np.ndarray) -> tuple[float, ...]:
    """Directions (radians in [0, pi), as in ``_segment``) of the straight runs of ``strokes``
    (bool) at least LINE_LENGTH of its height long: the shadow bands among them."""
    lines = cv2.HoughLines(strokes.view(np.uint8), 1, np.pi / 180, int(LINE_LENGTH * strokes.shape[0]))
    directions: list[float] = []
    for theta in () if lines is None else lines[:, 0, 1]:  # strongest first; theta is the normal's angle
        angle = (float(theta) + np.pi / 2) % np.pi
        gaps = [abs(angle - other) for other in directions]
        if all(min(gap, np.pi - gap) > np.radians(BAND_ANGLE_GAP) for gap in gaps):
            directions.append(angle)
    return tuple(directions[:BAND_ANGLES])


def _line_opening(coarse: np.ndarray, directions: tuple[float, ...] = ()) -> np.ndarray:
    """The light's shapes that are long in one direction, from ``coarse`` (uint8, bright ink):
    the largest of its openings by line segments LINE_LENGTH of its height long, at
    LINE_ANGLES angles and at ``directions`` (radians), on a grid LINE_GRID times coarser
    (float32, ``coarse``'s shape).

    A shadow's wedge, the lit gap between two shadows, or the band a lamp's spot leaves of a
    shadow are too narrow for a square window near their tips, but a segment along them
    fits: they are kept as light. A digit's strokes are not: none holds a straight segment
    that long.
    """
    small = pool(coarse, LINE_GRID, np.minimum)
    length = max(3, int(LINE_LENGTH * small.shape[0]) | 1)
    kernels = _line_kernels(length) + tuple(_segment(length, angle) for angle in directions)
    lines = _opening(small, length, kernels)
    lines = cv2.resize(lines, coarse.shape[::-1], interpolation=cv2.INTER_NEAREST)
    # the block minima moved each edge of the light's shapes in by up to LINE_GRID - 1 cells: back out
    grow = 2 * LINE_GRID - 1
    return cv2.dilate(lines, np.ones((grow, grow), np.uint8)).astype(np.float32)


@functools.lru_cache(maxsize=16)
def _line_kernels(length: int) -> tuple[np.ndarray, ...]:
    """``_segment`` kernels at LINE_ANGLES angles evenly spread over 180 degrees."""
    return tuple(_segment(length, angle) for angle in np.arange(LINE_ANGLES) * np.pi / LINE_ANGLES)


def _segment(length: int, angle: float) -> np.ndarray:
    """A line segment ``length`` long through the centre of a length x length kernel, in the
    direction (cos angle, sin angle) of image coordinates (x right, y down)."""
    kernel = np.zeros((length, length), np.uint8)
    c = length // 2
    dx, dy = c * np.cos(angle), c * np.sin(angle)
    cv2.line(kernel, (round(c - dx), round(c - dy)), (round(c + dx), round(c + dy)), 1)
    return kernel


def ink_map(x: np.ndarray, inverted: bool = True, even: bool = True, floor: float = 0.0):
    """(ink, mask, background, threshold) from ``x`` (uint8, bright ink).

    ink: the ink's contrast against its own paper, uint8 (255 = full contrast).
    For dark ink on paper (``inverted``), light multiplies what the paper
    reflects, so the contrast is divided by the paper's brightness: a stroke in
    a shadow is as strong as one in full light, and a shadow's edge is no ink.
    mask: ink above Otsu's threshold of the ink histogram (at least MIN_CONTRAST / 2); on a
    page whose only ink is a digit a few pixels high, Otsu's threshold falls in the paper's
    noise (what it calls ink averages under NOISE_SIGMAS above the paper), and the threshold
    is then NOISE_SIGMAS above the paper (``paper_level``). ``floor``: the lowest threshold
    taken (in [0, 1]); ``threshold``: the one taken.
    """
    background = estimate_background(x, even)
    ink = cv2.subtract(x, background)  # saturating: x - background, floored at 0
    if inverted and background.max() > 0:
        paper = np.maximum(255 - background, np.uint8(DARKEST_PAPER * 255))
        ink = cv2.divide(ink, paper, scale=255)  # saturating uint8 ink * 255 / paper
    hist = cv2.calcHist([ink], [0], None, [256], [0, 256]).ravel()
    threshold = max(otsu_threshold(hist), 0.5 * MIN_CONTRAST, floor)
    above = hist[int(threshold * 255) + 1 :]
    if above.sum() > 0:
        ink_level = float(above @ np.arange(256 - len(above), 256)) / float(above.sum()) / 255
        paper, sigma = _hist_level(hist)
        if ink_level < paper + NOISE_SIGMAS * sigma:  # what Otsu calls ink is mostly the noise's tail
            threshold = max(threshold, paper + NOISE_SIGMAS * sigma)
    return ink, ink > threshold * 255, background, threshold


def noise_floor(ink: np.ndarray) -> float:
    """Weakest mean ink (in [0, 1]) a real stroke has: the paper's level + 4 robust sigmas
    of its noise, at least MIN_CONTRAST."""
    paper, sigma = paper_level(ink)
    return max(MIN_CONTRAST, paper + 4 * sigma)


def _hist_level(hist: np.ndarray) -> tuple[float, float]:
    """``paper_level`` from the 256-bin histogram of the whole ink map (no sampling: the
    deviations' histogram is the histogram folded about its median)."""
    median = hist_percentile(hist, 50)
    deviation = np.bincount(np.abs(np.arange(256) - round(median * 255)), weights=hist, minlength=256)
    return median, 1.4826 * hist_percentile(deviation, 50)


def paper_level(ink: np.ndarray) -> tuple[float, float]:
    """(median, robust sigma: 1.4826 median absolute deviations) of ``ink`` (uint8), in [0, 1]."""
    step = max(1, int(np.sqrt(ink.size / 5_000)))
    sample = ink[::step, ::step].ravel()
    median = hist_percentile(np.bincount(sample, minlength=256), 50)
    deviation = np.abs(sample.astype(np.int16) - round(median * 255)).astype(np.uint8)
    mad = hist_percentile(np.bincount(deviation, minlength=256), 50)
    return median, 1.4826 * mad


def polarity(gray: np.ndarray) -> tuple[bool, bool]:
    """(dark ink on light paper?, evenly coloured ground?) for ``gray`` (uint8, 255 = white).

    Judged on ~POLARITY_SAMPLES samples. On an evenly coloured ground (a canvas,
    a scan: most samples within FLAT_LEVELS of the median) the median is the
    paper and the ink is the histogram tail farther from it, when that tail is
    strokes. Otherwise (a photo; or a page mostly in one flat shadow, its lit
    part the tail) the strokes decide (``stroke_polarity``).
    """
    step = max(1, int(np.sqrt(gray.size / POLARITY_SAMPLES)))
    sample = np.ascontiguousarray(gray[step // 2 :: step, step // 2 :: step])
    median = np.median(sample)
    even = np.count_nonzero(np.abs(sample.astype(np.int16) - median) <= FLAT_LEVELS) >= FLAT_SHARE * sample.size
    hist = np.bincount(sample.ravel(), minlength=256)
    mid = hist_percentile(hist, 50)
    lo, hi = mid - hist_percentile(hist, 0.5), hist_percentile(hist, 99.5) - mid
    # one tail much longer, and sparse as ink is (a table or a shadow fills a long tail)
    cdf = np.cumsum(hist) / sample.size
    level = round(255 * (mid - lo / 2 if lo > hi else mid + hi / 2))
    tail = cdf[level] if lo > hi else 1 - cdf[level]
    one_sided = max(lo, hi) >= DECISIVE * max(min(lo, hi), 1 / 255)
    decisive = one_sided and tail <= INK_SHARE
    # (on an even ground a marker's strokes may fill more than INK_SHARE of a small canvas; in a
    # photo a light tail is as often a lit band or a lamp's hot spot as ink: the strokes decide)
    if (even and one_sided or decisive and lo > hi) and _tail_is_strokes(sample, level, dark=lo > hi):
        return lo > hi, even
    dark = stroke_polarity(gray, sample, step, 1.0 if even else LIGHT_INK_PRIOR)
    if dark is not None:
        return dark, even
    if decisive or not even:
        return lo > hi, even
    # Evenly coloured, too small for the hats: the strokes are the extremes of the whole
    # image, once a 3x3 mean has evened out the noise (which is as far out on both sides).
    smooth = cv2.blur(gray, (3, 3))
    paper = float(np.median(sample))
    return (paper - float(smooth.min())) > (float(smooth.max()) - paper), even


def _tail_is_strokes(sample: np.ndarray, level: int, dark: bool) -> bool:
    """Whether the samples beyond ``level`` (below it if ``dark``) look like pen strokes:
    mostly strokes to a hat as wide as an even ground's background window, with sharp edges
    (a 3x3 spread of at least SHARP_EDGE times the tail's depth below or above ``level``,
    as the median along their outline). Ink does; the lit part of a page mostly in a flat
    shadow is wider than the window, and a lamp's spot on it has soft edges. Too few
    samples to tell (a thin pen) count as strokes."""
    sample = sample[::2, ::2]  # (a quarter of the cost: a tail of ink is seen at half the sampling)
    in_tail = sample <= level if dark else sample >= level
    count = np.count_nonzero(in_tail)
    if count < MIN_STROKE_PIXELS:
        return True
    size = max(3, int(BACKGROUND_WINDOW["even"] * min(sample.shape)) | 1)
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (size, size))
    hat = cv2.morphologyEx(sample, cv2.MORPH_BLACKHAT if dark else cv2.MORPH_TOPHAT, kernel)
    if np.count_nonzero(hat[in_tail] > STROKE_LEVELS) < STROKE_TAIL * count:
        return False
    tail = in_tail.view(np.uint8)
    outline = (tail - cv2.erode(tail, np.ones((3, 3), np.uint8))).view(bool)
    spread = cv2.morphologyEx(sample, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8))[outline]
    depth = float(sample.min() if dark else sample.max()) - level
    return spread.size == 0 or float(np.median(spread)) >= SHARP_EDGE * abs(depth)


def stroke_polarity(gray: np.ndarray, sample: np.ndarray, step: int, prior: float) -> bool | None:
    """Dark ink? judged from the strokes of ``gray`` (uint8); None when it has too few.

    Strokes are what a black-hat (dark) or a top-hat (light) with a window
    POLARITY_WINDOW of the short side calls one: a shadow's edge, a lamp's
    falloff or a table's edge never does (steps and ramps survive openings and
    closings). Dark ones are read on ``step``-blocks' darkest pixels, light ones
    on their brightest, so a stroke thinner than a block keeps its contrast.
    Each counts by its ratio to the paper (the local median of ``sample``; the
    paper between the strokes of a number lies at its level): light multiplies
    what paper and ink reflect, so a ratio holds in a shadow as in full light,
    while a glare spot or the lit side of a shadow is brighter than the paper
    around it by less than ink is darker. The ink lies on the side of the paper
    most stroke pixels lie on, light ink only if ``prior`` times farther out.
    """
    size = max(3, int(POLARITY_WINDOW * min(sample.shape)) | 1)
    if min(sample.shape) <= 2 * size:
        return None
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (size, size))
    darkest, brightest = (pool(gray, step, np.minimum), pool(gray, step, np.maximum)) if step > 1 else (gray, gray)
    dark = cv2.morphologyEx(darkest, cv2.MORPH_BLACKHAT, kernel) > STROKE_LEVELS
    light = cv2.morphologyEx(brightest, cv2.MORPH_TOPHAT, kernel) > STROKE_LEVELS
    if np.count_nonzero(dark) + np.count_nonzero(light) < MIN_STROKE_PIXELS:
        return None
    # (the median at half the sampling, brought back up: a quarter of the cost, and paper varies slowly)
    half = cv2.medianBlur(np.ascontiguousarray(sample[::2, ::2]), max(3, (size // 2) | 1))
    paper = _LOG[cv2.resize(half, dark.shape[::-1], interpolation=cv2.INTER_LINEAR)]
    ratio = np.concatenate([_LOG[darkest[dark]] - paper[dark], _LOG[brightest[light]] - paper[light]])
    n = len(ratio) - 1
    low, high = round((100 - STROKE_QUANTILE) / 100 * n), round(STROKE_QUANTILE / 100 * n)
    lo, hi = np.partition(ratio, (low, high))[[low, high]]  # (np.percentile's overhead is most of the cost)
    return bool(hi <= -lo * prior)


_LOG = np.log(np.arange(1, 257, dtype=np.float32))  # log(v + 1) of each grey level v
