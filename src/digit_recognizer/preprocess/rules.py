"""Ruled and squared paper: find the printed lines and take them out, keeping the strokes.

Rules are long, thin, straight and (on a page turned in the photo) all at one
angle. ``remove_rules`` works on the thresholded ink:

1. ``page_angle``: the turn of the page, as the angle whose projection of the
   ink onto the vertical axis is most sharply peaked (rules all fall into a few
   rows at the right angle and smear at any other).
2. The mask is sheared by that angle so that rules run along rows (a shear moves
   whole columns by whole pixels: nothing is resampled). A horizontal opening
   RULE_MIN_RUN of the width long keeps only long horizontal runs; rows where
   such runs cover RULE_COVER of the width are rules when there are at least
   MIN_RULES of them (a ruled page) or one covers LONE_RULE_COVER (a line
   under the number, an edge of the sheet). No digit stroke is that long.
3. In those rows, ink no stronger than the rule itself is removed (both
   directions at once), then put back where a stroke crosses: a closing across
   the rule bridges the gap wherever there is ink on both sides.

Vertical rules (squared paper, a margin) are the same on the transposed image.
Work images are (H, W) uint8 ink (255 = full contrast) and a bool mask.
"""

from __future__ import annotations

import cv2
import numpy as np

MAX_TILT = 30.0        # degrees: the most a page is turned (a sheet lying askew on a table)
TILT_STEP = 1.0        # the coarse search step (degrees), then refined to a tenth of it
ANGLE_SAMPLES = 1000   # ink pixels the angle is judged on (a sample: the angle needs no more)
RULE_MIN_RUN = 1 / 8   # opening length: runs shorter than this fraction of the width are not rules
RULE_GAP = 1 / 100     # gaps in a thresholded rule up to this fraction of the width are bridged
RULE_COVER = 0.35      # a row is a rule where long runs cover this fraction of the width ...
MIN_RULES = 3          # ... and there are this many such rows (a ruled or squared page) ...
LONE_RULE_COVER = 0.85  # ... or one row covers this fraction (a single line, the sheet's edge)
# On a page found ruled, a lone line across the rules is its margin when it covers this fraction
# of the height (a turned page's margin runs off a corner; a digit is never that tall there).
MARGIN_COVER = 0.7
PEN_OVER_RULE = 1.6    # ink this many times stronger than the rule's own is a pen stroke on it
MAX_RULE_THICKNESS = 0.03  # of the short side: thicker bands are not printed rules ...
RULE_PEAK = 0.8        # ... but may hold one: the rows covered nearly as well as the best of them


def remove_rules(ink: np.ndarray, mask: np.ndarray):
    """(ink, mask, rules): ``ink`` and ``mask`` with ruled and grid lines removed and
    the strokes crossing them repaired; ``rules``: bool, the pixels taken out."""
    rules = np.zeros(mask.shape, bool)
    h, w = mask.shape
    if min(h, w) < 16:
        return ink, mask, rules
    # Rules are looked for on the mask at half size (block maxima: a 1-px rule stays), and
    # only a page found to have them pays for their removal at full size. First a quick
    # look: MIN_RULES rules, at any angle, cross most columns (rows) MIN_RULES times.
    half = _max_pool2(mask)
    across = _crossed(half, axis=0), _crossed(half, axis=1)
    if not any(across):
        return ink, mask, rules
    angle = page_angle(half)
    slope = np.tan(np.radians(angle))
    # Both directions are found on the mask as it is, and taken out together: where rules
    # cross each other, neither is left to be taken for a stroke that crosses the other.
    removed = np.zeros_like(rules)
    bridged = np.zeros_like(rules)
    kept = mask.copy()
    found = []
    if across[0] and _has_rules(half, slope):
        found.append((_find_rows(ink, mask, slope), False))
    # a ruled page's margin crosses each row only once: it is looked for once rules are found
    lone = MARGIN_COVER if found else LONE_RULE_COVER
    if (across[1] or found) and _has_rules(half.T, -slope, lone):
        (rows, thickness) = _find_rows(ink.T, mask.T, -slope, lone)
        found.append(((rows.T, thickness), True))
    if not found:
        return ink, mask, rules
    for (rows, _), _ in found:
        removed |= rows
    kept &= ~removed
    cleaned = np.where(removed, 0, ink).astype(np.uint8)
    repaired = cleaned.copy()
    for (rows, thickness), transposed in found:
        # a stroke crossing a rule has ink on both sides: a closing across the rule (3 px
        # wide, for slanted strokes) bridges the gap there, and nowhere else
        size = (3, 2 * thickness + 1) if transposed else (2 * thickness + 1, 3)
        kernel = np.ones(size, np.uint8)
        gap = rows & (cv2.morphologyEx(kept.view(np.uint8), cv2.MORPH_CLOSE, kernel) > 0)
        repaired = np.where(gap, cv2.morphologyEx(cleaned, cv2.MORPH_CLOSE, kernel), repaired)
        bridged |= gap
    return repaired, kept | bridged, removed & ~bridged


def looks_ruled(mask: np.ndarray) -> bool:
    """A quick look (no angle, no opening): could ``mask`` hold rules?"""
    return _crossed(mask, axis=0) or _crossed(mask, axis=1)


def _crossed(mask: np.ndarray, axis: int) -> bool:
    """Whether RULE_COVER of the columns (axis=0) or rows (axis=1) cross ink MIN_RULES times."""
    m = mask if axis == 0 else mask.T
    starts = (m[1:] > m[:-1]).sum(axis=0) + m[0]  # where ink begins, going down each column
    return bool(np.count_nonzero(starts >= MIN_RULES) >= RULE_COVER * m.shape[1])


def _max_pool2(mask: np.ndarray) -> np.ndarray:
    """(H, W) bool -> (H // 2, W // 2) uint8: 1 where any pixel of the 2x2 block is set."""
    h, w = mask.shape[0] // 2 * 2, mask.shape[1] // 2 * 2
    m = mask[:h, :w]
    return ((m[0::2, 0::2] | m[1::2, 0::2]) | (m[0::2, 1::2] | m[1::2, 1::2])).astype(np.uint8)


def _has_rules(mask: np.ndarray, slope: float, lone: float = LONE_RULE_COVER) -> bool:
    """Whether ``mask`` (uint8) holds rules running along rows at ``slope``."""
    h, w = mask.shape
    return bool(_rule_bands(_shear(mask, _shifts(w, slope)), h, w, lone)[0])


def _rule_bands(m: np.ndarray, h: int, w: int, lone: float = LONE_RULE_COVER):
    """([(start, stop) rows of each rule], long runs) in a sheared uint8 mask of an (h, w) image."""
    # a rule a pixel off straight (the angle is found to a tenth of a step) is bridged
    # by growing the mask one row up and down before the long opening
    tall = cv2.dilate(m, np.ones((3, 1), np.uint8))
    # a faint rule thresholds into dashes: gaps up to RULE_GAP of the width are bridged first
    # (a digit's strokes bridged so are still far shorter than a rule)
    tall = cv2.morphologyEx(tall, cv2.MORPH_CLOSE, np.ones((1, max(3, int(RULE_GAP * w)) | 1), np.uint8))
    run = max(8, int(RULE_MIN_RUN * w))
    long_runs = cv2.morphologyEx(tall, cv2.MORPH_OPEN, np.ones((1, run), np.uint8)) & m
    cover = long_runs.sum(axis=1) / w
    max_thickness = max(3, int(MAX_RULE_THICKNESS * min(h, w)))
    bands = []
    for a, b in _bands(cover >= RULE_COVER):
        if b - a > max_thickness:
            # a rule along a stroke (a grid line through a "1"): the rule is where the cover peaks
            peak = cover[a:b] >= RULE_PEAK * cover[a:b].max()
            bands += [(a + c, a + d) for c, d in _bands(peak) if d - c <= max_thickness]
        else:
            bands.append((a, b))
    if not (len(bands) >= MIN_RULES or any(cover[a:b].max() >= lone for a, b in bands)):
        bands = []
    return bands, long_runs


def page_angle(mask: np.ndarray) -> float:
    """The page's turn in degrees (rows go down by tan(angle) per column to the right):
    the angle whose row projection of the ink has the largest sum of squares."""
    ys, xs = np.nonzero(mask)
    if len(ys) < 2:
        return 0.0
    step = max(1, len(ys) // ANGLE_SAMPLES)
    ys, xs = ys[::step].astype(np.float32), xs[::step].astype(np.float32)
    h, w = mask.shape
    offset = int(w * np.tan(np.radians(MAX_TILT))) + 2
    span = h + 2 * offset + 2  # rows a projection can fall into, at any angle searched

    def best(angles):
        # all angles at once: the projections side by side in one histogram
        rows = np.rint(ys[None, :] - xs[None, :] * np.tan(np.radians(angles))[:, None]).astype(np.int64)
        rows += offset + span * np.arange(len(angles))[:, None]
        counts = np.bincount(rows.ravel(), minlength=span * len(angles)).reshape(len(angles), span)
        return angles[int(np.argmax(np.einsum("ij,ij->i", counts, counts)))]

    coarse = best(np.arange(-MAX_TILT, MAX_TILT + 1e-6, TILT_STEP))
    return float(best(np.arange(coarse - TILT_STEP, coarse + TILT_STEP + 1e-6, TILT_STEP / 10)))


def _shifts(width: int, slope: float) -> np.ndarray:
    """Per column, how far down a row has moved at this slope (whole pixels, >= 0)."""
    s = np.round(np.arange(width) * slope).astype(np.int64)
    return s - s.min()


def _shear(a: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """Move each column up by its shift: a line at that slope becomes a row. (H + max, W)."""
    h, w = a.shape
    out = np.zeros((h + int(shifts.max()), w), a.dtype)
    for start, stop, s in _runs(shifts):
        out[int(shifts.max()) - s : int(shifts.max()) - s + h, start:stop] = a[:, start:stop]
    return out


def _unshear(a: np.ndarray, shifts: np.ndarray, h: int) -> np.ndarray:
    """The inverse of ``_shear``: back to (h, W)."""
    out = np.empty((h, a.shape[1]), a.dtype)
    for start, stop, s in _runs(shifts):
        out[:, start:stop] = a[int(shifts.max()) - s : int(shifts.max()) - s + h, start:stop]
    return out


def _runs(shifts: np.ndarray):
    """(start, stop, shift) for each run of columns sharing one shift."""
    edges = np.flatnonzero(np.diff(shifts)) + 1
    starts = np.concatenate([[0], edges])
    stops = np.concatenate([edges, [len(shifts)]])
    return [(int(a), int(b), int(shifts[a])) for a, b in zip(starts, stops)]


def _find_rows(ink: np.ndarray, mask: np.ndarray, slope: float, lone: float = LONE_RULE_COVER):
    """(pixels of the rules running along rows at ``slope`` that are no stronger than the
    rules themselves, the rules' thickness): a pen stroke lying along a rule stays."""
    h, w = mask.shape
    shifts = _shifts(w, slope)
    m = _shear(mask.view(np.uint8), shifts)
    bands, long_runs = _rule_bands(m, h, w, lone)
    if not bands:
        return np.zeros_like(mask), 0
    x = _shear(ink, shifts)
    in_band = np.zeros(m.shape[0], bool)
    for a, b in bands:  # each band with a row of anti-aliased rim either side
        in_band[max(a - 1, 0) : b + 1] = True
    rule_level = np.median(x[(long_runs > 0) & in_band[:, None]])
    rows = in_band[:, None] & (m > 0) & (x <= PEN_OVER_RULE * rule_level)
    return _unshear(rows, shifts, h), max(b - a for a, b in bands) + 2


def _bands(rows: np.ndarray) -> list[tuple[int, int]]:
    """(start, stop) of each run of True in a 1-D bool array."""
    padded = np.concatenate([[False], rows, [False]])
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))
