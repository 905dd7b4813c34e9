"""Segmentation: the ink's connected components grouped into digits, and touching digits cut."""

from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage

from digit_recognizer.preprocess.page import noise_floor


# Two pieces of ink are on one text line when they overlap vertically by this fraction of
# the shorter one (neighbours on a line turned by 10 degrees still do).
LINE_OVERLAP = 0.4
# A piece shorter than this fraction of a digit (a loose flag, a broken stroke) also joins
# a piece it overlaps horizontally, when the gap between them is under STACK_GAP digits;
# so do two pieces one above the other that overlap horizontally by half the narrower,
# when together they are at most STACK_HEIGHT digits high (the halves of a broken digit).
SMALL_PIECE = 0.6
STACK_GAP = 0.25
STACK_HEIGHT = 2.2
# A line whose tallest piece is under this fraction of the tallest digit is a mark, not digits.
LINE_MIN_HEIGHT = 0.5
# Touching digits are cut along valleys (``valley_cuts``): a cut pays 1 per row, this much
# more per unit of ink it crosses (a path around a stroke up to 4 px longer is cheaper
# than one through it) ...
CUT_INK_COST = 4.0
# ... and this per column it moves sideways (a cut leans with slanted digits, but does not
# wander along a stroke to avoid crossing it).
CUT_DRIFT_COST = 0.5
# A digit cut from touching ones is at least this fraction of the group's height wide
# (a "1" is a stroke and its slant), at most this wide (MNIST's widest digits are hardly wider
# than tall), and at least DIGIT_MIN_HEIGHT of it high (not a bit of a neighbour's stroke).
DIGIT_MIN_WIDTH = 0.08
DIGIT_MAX_WIDTH = 1.25
DIGIT_MIN_HEIGHT = 0.5
# A piece of ink smaller than MIN_PIECE pixels (a digit 8 px high written with a 1-px pen covers
# some 12) is read only when it stands out SPECK_CONTRAST times as far as the noise floor: the
# short, thin stroke of a "1" far off in a big photo does, a speck of noise does not.
MIN_PIECE = 6
SPECK_CONTRAST = 2.0
# Ink touching the image's borders, when nothing else is found, is a digit if it is at least
# TIGHT_CROP of the image's height (a tightly cropped digit) or at least BORDER_INK strong (a
# small digit written by the edge); not a speck where a shadow's edge leaves the photo, whose
# false ink is a fraction of the shadow's depth (under 0.35 for a shadow taking 60 % of the light).
TIGHT_CROP = 0.25
BORDER_INK = 0.5


def find_digits(ink: np.ndarray, mask: np.ndarray, single: bool):
    """Group the ink into lines of digits: (labels, [[(box, label ids), ...], ...]),
    lines top to bottom, digits left to right.

    ``components`` finds the pieces of ink worth reading, ``text_lines`` sorts
    them into lines, ``group`` puts the pieces of each digit together;
    ``single`` makes all of them one digit.
    """
    labels, box, area, keep = components(ink, mask)
    if not keep.any():
        return labels, []
    if single:
        return labels, [group(box, area, keep, True)]
    lines = []
    for members in text_lines(box, area, keep):
        line_keep = np.zeros_like(keep)
        line_keep[members] = True
        lines.append(group(box, area, line_keep, False))
    return labels, [line for line in lines if line]


def text_lines(box: np.ndarray, area: np.ndarray, keep: np.ndarray) -> list[np.ndarray]:
    """The kept pieces (indices into ``box``) sorted into text lines, top to bottom.

    Pieces overlapping vertically by LINE_OVERLAP of the shorter are on one
    line, and so, through them, are their neighbours' neighbours: a line may
    be slightly turned, and its digits of different heights. Small pieces
    join what they sit just above or below (STACK_GAP).
    """
    index = np.flatnonzero(keep)
    top, bottom = box[index, 0], box[index, 2]
    left, right = box[index, 1], box[index, 3]
    height = bottom - top
    typical = height[area[index] >= 0.3 * area[index].max()].max()
    overlap = np.minimum(bottom[:, None], bottom[None, :]) - np.maximum(top[:, None], top[None, :])
    linked = overlap >= LINE_OVERLAP * np.minimum(height[:, None], height[None, :])
    small = height < SMALL_PIECE * typical
    x_overlap = np.minimum(right[:, None], right[None, :]) - np.maximum(left[:, None], left[None, :])
    near = -overlap <= STACK_GAP * typical
    linked |= (small[:, None] | small[None, :]) & (x_overlap > 0) & near
    width = right - left
    together = np.maximum(bottom[:, None], bottom[None, :]) - np.minimum(top[:, None], top[None, :])
    linked |= (x_overlap >= 0.5 * np.minimum(width[:, None], width[None, :])) & near & (
        together <= STACK_HEIGHT * typical)
    _, line_of = connected_components(linked)
    lines = [index[line_of == k] for k in range(line_of.max() + 1)]
    lines = [m for m in lines if (box[m, 2] - box[m, 0]).max() >= LINE_MIN_HEIGHT * typical]
    return sorted(lines, key=lambda m: float(np.average((box[m, 0] + box[m, 2]) / 2, weights=area[m])))


def connected_components(adjacency: np.ndarray) -> tuple[int, np.ndarray]:
    """(count, label per node) of the graph with the (n, n) boolean ``adjacency``: each node
    takes the smallest label among its neighbours until none changes (n is a page's pieces)."""
    n = len(adjacency)
    linked = adjacency | np.eye(n, dtype=bool)
    label = np.arange(n)
    while True:
        new = np.where(linked, label[None, :], n).min(axis=1)
        new = new[new]  # follow the chain: halves the rounds on long lines
        if np.array_equal(new, label):
            break
        label = new
    _, label = np.unique(label, return_inverse=True)
    return int(label.max()) + 1, label


def components(ink: np.ndarray, mask: np.ndarray):
    """8-connected components of ``mask``: (labels, boxes (n, 4), areas, which to keep).

    Specks (tiny next to the largest component) and weak blobs (noise that
    crossed the threshold: mean ink under the noise floor) are not kept; nor,
    unless they are all there is (a tightly cropped digit), are components
    touching two borders of the image (a shadow's edge, the table in a corner
    of the photo, the paper's edge) or faint ones touching one (a shadow's corner).
    """
    labels = np.zeros(mask.shape, np.int32)
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if len(rows) == 0:
        return labels, np.zeros((0, 4), int), np.zeros(0, int), np.zeros(0, bool)
    # work only on the part of the image that has ink, with a 1-px margin
    t0, l0 = rows[0], cols[0]
    window = (slice(t0, rows[-1] + 1), slice(l0, cols[-1] + 1))
    m = np.pad(mask[window], 1)
    # label a mask grown by one pixel, so strokes broken by a pixel or two stay one piece
    # (wider gaps are left to the grouping rules: growing more would join neighbours)
    n, local, stats, _ = cv2.connectedComponentsWithStats(grow(m).view(np.uint8), connectivity=8)
    n -= 1
    local *= m
    local = local[1:-1, 1:-1]
    labels[window] = local
    inked = np.flatnonzero(local)  # (the sums below need only the pieces' own pixels)
    flat = local.ravel()[inked]
    area = np.bincount(flat, minlength=n + 1)[1:]
    strength = np.bincount(flat, weights=np.ascontiguousarray(ink[window]).ravel()[inked],
                           minlength=n + 1)[1:] / np.maximum(255 * area, 1)
    # the grown piece's box is one pixel wider all round than the piece's (and the pad shifts it by one)
    left, top, width, height = stats[1:, 0], stats[1:, 1], stats[1:, 2], stats[1:, 3]
    box = np.stack([top + t0, left + l0, top + height - 2 + t0, left + width - 2 + l0], axis=1)
    height = box[:, 2] - box[:, 0]
    floor = noise_floor(ink)
    keep = (area >= max(3, 0.04 * area.max())) & (strength >= floor) & (height >= 2)
    keep &= (area >= MIN_PIECE) | (strength >= SPECK_CONTRAST * floor)
    H, W = mask.shape
    borders = (box[:, 0] == 0).astype(int) + (box[:, 1] == 0) + (box[:, 2] == H) + (box[:, 3] == W)
    framing = (borders >= 2) | ((borders == 1) & (strength < 0.6 * strength[keep].max(initial=0)))
    if (keep & ~framing).any():
        keep &= ~framing
    if not (keep & (borders == 0)).any():  # only ink on the borders: a digit, or a speck?
        keep &= (height >= TIGHT_CROP * H) | (strength >= BORDER_INK)
    return labels, box, area, keep


def grow(mask: np.ndarray) -> np.ndarray:
    """Binary dilation by a 3x3 square (what ``ndimage.maximum_filter(mask, 3)`` gives),
    as four shifted ORs: some 15x faster than SciPy's generic filter on a bool image."""
    rows = mask.copy()
    rows[:, 1:] |= mask[:, :-1]
    rows[:, :-1] |= mask[:, 1:]
    out = rows.copy()
    out[1:] |= rows[:-1]
    out[:-1] |= rows[1:]
    return out


def group(box: np.ndarray, area: np.ndarray, keep: np.ndarray, single: bool) -> list:
    """The kept pieces grouped into digits: [(box, label ids)], left to right.

    Pieces that overlap in x by half the narrower one are one digit (a "4"
    drawn in two strokes, a broken loop), and so are close neighbours that
    barely overlap in y (stacked pieces); a piece much shorter than the digits
    joins its nearest neighbour when it is close (a "5" whose flag came loose),
    and is dropped as a mark otherwise. No merge makes a group taller than two
    digit heights (the height of the tallest big piece).
    """
    height = box[:, 2] - box[:, 0]
    typical = height[keep & (area >= 0.3 * area[keep].max())].max()
    keep = keep & (height >= 0.2 * typical)

    def fits(a, b):  # would a and b together still be one digit high?
        return max(a[2], b[2]) - min(a[0], b[0]) <= 2 * typical

    groups: list[list] = []  # [top, left, bottom, right, [ids]]
    for i in np.flatnonzero(keep)[np.argsort(box[keep, 1], kind="stable")]:
        piece = [*box[i], [i + 1]]
        for g in groups:
            overlap = min(piece[3], g[3]) - max(piece[1], g[1])
            if single or (overlap > 0.5 * min(piece[3] - piece[1], g[3] - g[1]) and fits(g, piece)):
                _absorb(g, piece)
                break
        else:
            groups.append(piece)

    stacked: list[list] = []  # neighbours one above the other are pieces of one digit
    for g in groups:
        if stacked:
            last = stacked[-1]
            y_overlap = min(g[2], last[2]) - max(g[0], last[0])
            if (g[1] - last[3] <= 0.15 * typical and fits(last, g)
                    and y_overlap < 0.3 * min(g[2] - g[0], last[2] - last[0])):
                _absorb(last, g)
                continue
        stacked.append(g)
    # a digit's height again, now that broken ones are whole
    mass = np.array([area[np.array(g[4]) - 1].sum() for g in stacked])
    typical = max(g[2] - g[0] for g, m in zip(stacked, mass) if m >= 0.3 * mass.max())
    digits = [g for g in stacked if g[2] - g[0] >= 0.6 * typical]
    for g in stacked:
        if g[2] - g[0] < 0.6 * typical:
            gaps = [max(0, g[1] - d[3], d[1] - g[3]) for d in digits]
            nearest = digits[int(np.argmin(gaps))]
            if min(gaps) <= 0.25 * typical and fits(nearest, g):
                _absorb(nearest, g)
    mass = np.array([area[np.array(g[4]) - 1].sum() for g in digits])
    digits = [g for g, m in zip(digits, mass) if m >= 0.08 * mass.max()]
    digits.sort(key=lambda g: g[1])
    return [(tuple(int(v) for v in g[:4]), g[4]) for g in digits]


def _absorb(group: list, piece: list) -> None:
    group[0], group[1] = min(group[0], piece[0]), min(group[1], piece[1])
    group[2], group[3] = max(group[2], piece[2]), max(group[3], piece[3])
    group[4] += piece[4]


def member_mask(labels: np.ndarray, members: list) -> np.ndarray:
    """Which pixels belong to the pieces ``members``: np.isin, but a plain comparison for
    the usual one-piece digit (np.isin's sort-based path costs more than the rest of the crop)."""
    return labels == members[0] if len(members) == 1 else np.isin(labels, members)


def valley_cuts(ink, labels, box, members) -> np.ndarray:
    """Where touching digits in a group may be cut: (k, h) int, per candidate cut the
    column (from the box's left) at which it crosses each row, left to right.

    A cut is a path from the group's top row to its bottom row, moving at most one
    column per row, that pays 1 per row, CUT_INK_COST per unit of ink it crosses and
    CUT_DRIFT_COST per column it moves sideways: between two digits whose strokes
    overlap it runs down the valley between them and crosses only where they touch.
    One dynamic programme gives the cheapest path ending at every bottom column; the
    candidates are those whose cost is lowest within DIGIT_MIN_WIDTH of the height (and
    keep that far from the group's edges).
    """
    t, l, b, r = box
    h, w = b - t, r - l
    region = np.where(member_mask(labels[t:b, l:r], members), ink[t:b, l:r], 0).astype(np.float32)
    cost = 1 + CUT_INK_COST * region * np.float32(1 / 255)
    # a cut keeps a digit's width from either edge all the way down: one that ran round
    # the outside of the first or last digit would cut nothing off
    margin = max(1, int(DIGIT_MIN_WIDTH * h))
    inside = (np.arange(w) >= margin) & (np.arange(w) < w - margin)
    cost[:, ~inside] = np.inf
    total = cost[0].copy()
    moves = np.zeros((h, w), np.int8)  # the column step (-1, 0, +1) taken into each pixel
    big = np.float32(np.inf)
    for y in range(1, h):
        from_left = np.concatenate([[big], total[:-1]]) + CUT_DRIFT_COST
        from_right = np.concatenate([total[1:], [big]]) + CUT_DRIFT_COST
        step = np.argmin(np.stack([from_left, total, from_right]), axis=0)
        total = np.choose(step, (from_left, total, from_right)) + cost[y]
        moves[y] = step.astype(np.int8) - 1  # -1: came from the left, +1: from the right
    lowest = ndimage.minimum_filter1d(total, 2 * margin + 1, mode="nearest")
    ends = np.flatnonzero((total <= lowest) & inside)
    if len(ends) == 0 or not inside.any():
        return np.zeros((0, h), np.int64)
    # a flat valley (a gap wider than a column) is one candidate: the middle of its run
    runs = np.split(ends, np.flatnonzero(np.diff(ends) > 1) + 1)
    ends = np.array([run[len(run) // 2] for run in runs])
    paths = np.empty((len(ends), h), np.int64)
    paths[:, -1] = ends
    for y in range(h - 1, 0, -1):
        paths[:, y - 1] = paths[:, y] + moves[y, paths[:, y]]
    return paths


def cut_lattice(ink, labels, box, members):
    """Every way to read a group as touching digits, cut along ``valley_cuts``.

    Returns (strip_labels, segments): ``strip_labels`` is ``labels`` with the group's
    pixels relabelled by the strip between two neighbouring cuts they lie in (new ids,
    above every piece's); ``segments`` maps (i, j), cut i to cut j (0 = the group's
    left edge, the last = its right edge), to (box, strip ids) for every span of
    strips that could be one digit: at least DIGIT_MIN_WIDTH and at most DIGIT_MAX_WIDTH
    of the group's height wide, and at least DIGIT_MIN_HEIGHT of it high (a stroke cut
    off a neighbour is not a digit). The whole group, (0, last), is always there.
    """
    t, l, b, r = box
    h, w = b - t, r - l
    paths = valley_cuts(ink, labels, box, members)
    k = len(paths) + 1  # strips
    own = member_mask(labels[t:b, l:r], members)
    columns = np.arange(w)[None, :]
    strip = (columns[None] >= paths[:, :, None]).sum(axis=0)  # (h, w): cuts at or left of each pixel
    first = int(labels.max()) + 1
    strip_labels = labels.copy()
    strip_labels[t:b, l:r] = np.where(own, first + strip, labels[t:b, l:r])
    extents = []  # per strip: (top, left, bottom, right) of its ink, local, or None when empty
    for s in range(k):
        ys, xs = np.nonzero(own & (strip == s))
        extents.append((ys.min(), xs.min(), ys.max() + 1, xs.max() + 1) if len(ys) else None)
    segments = {}
    for i in range(k):
        for j in range(i + 1, k + 1):
            parts = [e for e in extents[i:j] if e is not None]
            if not parts:
                continue
            top, left = min(p[0] for p in parts), min(p[1] for p in parts)
            bottom, right = max(p[2] for p in parts), max(p[3] for p in parts)
            if right - left > DIGIT_MAX_WIDTH * h:
                break  # wider spans only grow
            if right - left >= DIGIT_MIN_WIDTH * h and bottom - top >= DIGIT_MIN_HEIGHT * h:
                segments[(i, j)] = ((t + top, l + left, t + bottom, l + right),
                                    [first + s for s in range(i, j)])
    segments[(0, k)] = (tuple(box), [first + s for s in range(k)])
    return strip_labels, segments
