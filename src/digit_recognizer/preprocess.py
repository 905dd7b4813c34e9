"""Any image -> 28x28 MNIST-style digits: the one preprocessing path of the project.

The CLI, the web app, the notebooks and the export tests all call this module,
so a digit looks the same to the network wherever it comes from. The pipeline
ends the way MNIST itself was made (LeCun et al.: "normalized to fit in a 20x20
box preserving their aspect ratio ... centered in a 28x28 image by computing
the center of mass of the pixels"), after the clean-up a real photo needs:

1. ``load_image``   decode anything Pillow reads; first frame; EXIF orientation;
                    a pixel budget against decompression bombs.
2. ``_to_gray``     composite transparency (a canvas drawing may live only in
                    the alpha channel), 16-bit / palette / CMYK -> 8-bit gray.
3. ``_ink_map``     polarity (ink is the histogram tail away from the paper),
                    shrink keeping each block's inkiest pixel, uneven light
                    removed by subtracting a large-scale background (a
                    morphological opening), Otsu threshold.
4. ``_find_digits`` connected components; specks, noise and edge-to-edge
                    shadows dropped; broken strokes merged; left to right.
                    Groups wide enough to be touching digits are also offered
                    cut at the minima of their ink profile, and the model picks
                    the reading (``Extraction.choose``).
5. ``_to_28x28``    crop (small digits at full resolution), stroke width
                    brought towards MNIST's, fit into 20x20, centre of mass at
                    the centre of 28x28, optional deskew.

Work images are (H, W) uint8 at most WORK_SIDE on the long side; digits are
(28, 28) float32 in [0, 1], white ink on black, as the model was trained on.
NumPy/SciPy/Pillow whole-array operations throughout; Python loops run over
connected components and candidate readings only.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageOps, UnidentifiedImageError
from scipy import ndimage

from digit_recognizer.errors import DigitsError

MAX_PIXELS = 40_000_000       # pixel budget: refuse bigger images before decoding them
MAX_FILE_BYTES = 64 * 2**20   # and bigger files before reading them
DECODE_SIDE = 2048            # JPEGs are decoded at reduced scale down to about this side
WORK_SIDE = 320               # analysis resolution (long side), enough for a 5-digit number
DETAIL_SIDE = 80              # a digit is normalised at this size, then reduced to 20x20
MIN_CONTRAST = 0.08           # weakest ink (fraction of full scale) that still counts as ink
SPLIT_PRIOR = 0.95            # prior odds per digit more or fewer than the width suggests
SPLIT_SURE = 0.995            # a cut is taken only if the network is this sure of every part
DIGIT_ASPECT = 0.75           # alone, a group w wide, h high looks like floor(w / (0.75 h)) digits
NO_DIGIT = "no digit found"

# Stroke width of MNIST digits at DETAIL_SIDE (= 4x the 20x20 box), measured on
# 2000 MNIST test digits with `_stroke_width`: median 10.0, 10th-90th percentile 7.4-14.0.
MNIST_STROKE = 10.0

IMAGE_SUFFIXES = frozenset(
    ".png .jpg .jpeg .jpe .jfif .gif .bmp .dib .tif .tiff .webp .ppm .pgm .pbm .pnm .tga .ico".split()
)


# --------------------------------------------------------------------------- loading


def load_image(source) -> Image.Image:
    """Decode ``source`` (path, bytes, file object or PIL image) into a loaded PIL image.

    First frame of an animation, EXIF orientation applied. Every way a file can
    be unusable becomes a one-line ``DigitsError``.
    """
    if isinstance(source, Image.Image):
        _check_budget(*source.size)
        return ImageOps.exif_transpose(source) if source.getexif() else source
    if isinstance(source, np.ndarray):
        return _from_array(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    elif hasattr(source, "read"):
        data = source.read(MAX_FILE_BYTES + 1)
    else:
        data = _read_file(Path(source))
    if not data:
        raise DigitsError("empty file")
    if len(data) > MAX_FILE_BYTES:
        raise DigitsError(f"file is larger than {MAX_FILE_BYTES // 2**20} MiB")
    return _decode(data)


def _read_file(path: Path) -> bytes:
    # The messages leave the path out, like every other reason an image is refused:
    # the caller shows it once, as "PATH: no such file".
    try:
        if path.is_dir():
            raise DigitsError("is a directory")
        if path.stat().st_size > MAX_FILE_BYTES:
            raise DigitsError(f"file is larger than {MAX_FILE_BYTES // 2**20} MiB")
        return path.read_bytes()
    except FileNotFoundError:
        raise DigitsError("no such file") from None
    except PermissionError:
        raise DigitsError("permission denied") from None
    except OSError as error:
        raise DigitsError(f"cannot read it: {error.strerror or error}") from None


def _decode(data: bytes) -> Image.Image:
    head = data[:1024].lstrip().lower()
    if head.startswith((b"<svg", b"<?xml")) and b"<svg" in data[:4096].lower():
        raise DigitsError("SVG is a vector format and is not supported; export it as PNG first")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            _check_budget(*image.size)
            # an animation opens on its first frame, which is the one read (n_frames is
            # not asked for: it would scan every frame)
            if image.format == "JPEG" and max(image.size) > 2 * DECODE_SIDE:
                image.draft(image.mode, (DECODE_SIDE, DECODE_SIDE))  # decode at 1/2, 1/4 or 1/8 scale
            image.load()
            image = ImageOps.exif_transpose(image)
    except DigitsError:
        raise
    except UnidentifiedImageError:
        raise DigitsError("not an image (or a format Pillow cannot read)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise DigitsError(f"image is above the limit of {MAX_PIXELS // 10**6} megapixels") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, KeyError, TypeError) as error:
        # Pillow reports truncated and corrupt data with a zoo of exception types
        raise DigitsError(f"truncated or corrupt image ({_one_line(error)})") from None
    return image


def _check_budget(width: int, height: int) -> None:
    if width * height > MAX_PIXELS:
        raise DigitsError(
            f"image is {width}x{height} pixels ({width * height / 1e6:.0f} megapixels), "
            f"above the limit of {MAX_PIXELS // 10**6} megapixels; refusing to decode it"
        )
    if width < 1 or height < 1:
        raise DigitsError(f"image has no pixels ({width}x{height})")


def _from_array(array: np.ndarray) -> Image.Image:
    """A 2-D array (uint8 0..255, or float in [0, 1]) or an (H, W, 3|4) uint8 array."""
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[0] == 1:
        array = array[0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise DigitsError(f"expected an (H, W), (H, W, 3) or (H, W, 4) array, got shape {array.shape}")
    _check_budget(array.shape[1], array.shape[0])
    if array.dtype.kind == "f":
        if not np.isfinite(array).all():
            raise DigitsError("image array contains NaN or infinity")
        scale = 255.0 if array.max(initial=0) <= 1.0 else 1.0
        array = np.clip(array * scale, 0, 255).round().astype(np.uint8)
    elif array.dtype != np.uint8:
        array = np.clip(array, 0, 255).astype(np.uint8)
    return Image.fromarray(np.ascontiguousarray(array))


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


# --------------------------------------------------------------------------- gray


def _to_gray(image: Image.Image, max_side: int) -> np.ndarray:
    """Luminance as uint8 (H, W) (255 = white), long side at most ``max_side``.

    16-bit and float images are scaled to 8 bits (plenty for finding ink).
    Transparent pixels are composited over a background that keeps the ink
    visible: over the paper colour when the opaque part is mostly paper, or
    over the colour opposite the strokes when the opaque part is the strokes
    (a canvas drawing on a transparent layer, whose RGB is often all black).
    """
    mode = image.mode
    if mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        gray = np.asarray(image, dtype=np.float32)
        full_scale = 65535.0 if mode.startswith("I;16") or gray.max(initial=0) > 255 else 255.0
        if mode == "F" and gray.max(initial=0) <= 1.0:
            full_scale = 1.0
        image = Image.fromarray(_to_uint8(gray / full_scale))
    elif mode in ("LA", "La", "RGBA", "RGBa", "PA") or "transparency" in image.info:
        image = _shrink(image.convert("RGBA"), max_side)  # before the float copy: bounded memory
        la = np.asarray(image.convert("LA"), dtype=np.float32) * np.float32(1 / 255)
        lum, alpha = la[..., 0], la[..., 1]
        opaque = alpha > 0.5
        coverage = opaque.mean()
        if coverage == 0:
            background = 1.0  # fully transparent: nothing drawn
        elif coverage >= 0.5:
            background = float(np.median(lum[opaque]))
        else:
            background = 1.0 if lum[opaque].mean() < 0.5 else 0.0
        image = Image.fromarray(_to_uint8(alpha * lum + (1 - alpha) * background))
    elif mode != "L":
        image = (image if mode == "RGB" else image.convert("RGB")).convert("L")
    return np.asarray(_shrink(image, max_side))


def _shrink(image: Image.Image, max_side: int) -> Image.Image:
    """Area-average ``image`` down so its long side is at most ``max_side``."""
    factor = max(image.size) / max_side
    if factor <= 1:
        return image
    size = (max(1, round(image.width / factor)), max(1, round(image.height / factor)))
    return image.resize(size, Image.Resampling.BOX, reducing_gap=2.0)


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return (np.clip(x, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)


def _resize(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize an (H, W) float array to (width, height) = size: area average when shrinking."""
    h, w = array.shape
    filt = Image.Resampling.BOX if size[0] <= w and size[1] <= h else Image.Resampling.BILINEAR
    return np.asarray(Image.fromarray(array.astype(np.float32), "F").resize(size, filt))


# --------------------------------------------------------------------------- ink


def _hist_percentile(hist: np.ndarray, q: float) -> float:
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


def _background(x: np.ndarray) -> np.ndarray:
    """Large-scale background of ``x`` (uint8, bright ink on a darker, uneven ground).

    A morphological opening (min filter, then max filter) with a window of a
    quarter of the short side erases every stroke narrower than that and keeps
    the variation of the lighting, even a shadow's edge. Computed on a
    ~64-px-high grid of block minima, brought back up to full size bilinearly.
    """
    h, w = x.shape
    coarse = _pool(x, max(1, min(h, w) // 64), np.minimum)
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


def _paper_only(gray: np.ndarray) -> np.ndarray:
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


def _dark_ink(gray: np.ndarray) -> bool:
    """True for dark ink on light paper (``gray``: uint8, 255 = white).

    The ink is the histogram tail farther from the median: most pixels are
    paper, so the median is the paper. Judged on ~20k samples.
    """
    step = max(1, int(np.sqrt(gray.size / 20_000)))
    hist = np.bincount(gray[::step, ::step].ravel(), minlength=256)
    mid = _hist_percentile(hist, 50)
    for q in (0.5, 0.01):  # a tiny digit hides below the 0.5 % tail: look further out
        lo, hi = _hist_percentile(hist, q), _hist_percentile(hist, 100 - q)
        if lo != mid or hi != mid:
            return (mid - lo) > (hi - mid)
    return (mid - gray.min() / 255) > (gray.max() / 255 - mid)  # so tiny the samples missed it


def _pool(x: np.ndarray, k: int, op=np.maximum) -> np.ndarray:
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


def _max_pool(x: np.ndarray, max_side: int) -> np.ndarray:
    """Shrink by an integer factor so the long side is at most ``max_side``, keeping the
    brightest pixel of each block: a 1-px stroke survives any reduction at full contrast."""
    k = -(-max(x.shape) // max_side)
    return x if k == 1 else _pool(x, k, np.maximum)


def _ink_map(x: np.ndarray):
    """(ink, mask) from ``x`` (uint8, bright ink): background removed, Otsu threshold.

    ink: uint8 (255 = full contrast); mask: ink above the threshold.
    """
    background = _background(x)
    ink = np.maximum(x, background) - background  # x - background, floored at 0, in uint8
    # (Pillow's C histogram: np.bincount would first widen every pixel to int64)
    hist = np.array(Image.fromarray(ink).histogram())
    threshold = max(otsu_threshold(hist), 0.5 * MIN_CONTRAST)
    return ink, ink > threshold * 255


def _noise_floor(ink: np.ndarray) -> float:
    """Weakest mean ink (in [0, 1]) a real stroke has: paper level + 4 robust sigmas of
    the paper noise. ``ink``: uint8."""
    step = max(1, int(np.sqrt(ink.size / 5_000)))
    sample = ink[::step, ::step].ravel()
    median = _hist_percentile(np.bincount(sample, minlength=256), 50)
    deviation = np.abs(sample.astype(np.int16) - round(median * 255)).astype(np.uint8)
    mad = _hist_percentile(np.bincount(deviation, minlength=256), 50)
    return max(MIN_CONTRAST, median + 4 * 1.4826 * mad)


# --------------------------------------------------------------------------- digits


def _find_digits(ink: np.ndarray, mask: np.ndarray, single: bool):
    """Group the ink into digits: (labels, list of (box, label ids)), left to right.

    ``_components`` finds the pieces of ink worth reading, ``_group`` puts the
    pieces of each digit together; ``single`` makes all of them one digit.
    """
    labels, box, area, keep = _components(ink, mask)
    if not keep.any():
        return labels, []
    return labels, _group(box, area, keep, single)


def _components(ink: np.ndarray, mask: np.ndarray):
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
    t0, l0 = max(rows[0] - 1, 0), max(cols[0] - 1, 0)
    window = (slice(t0, rows[-1] + 2), slice(l0, cols[-1] + 2))
    m = mask[window]
    # label a mask grown by one pixel, so strokes broken by a pixel or two stay one piece
    # (wider gaps are left to the grouping rules: growing more would join neighbours)
    grown = _grow(m)
    local, n = ndimage.label(grown, structure=np.ones((3, 3), bool))
    local *= m
    labels[window] = local
    flat = local.ravel()
    area = np.bincount(flat, minlength=n + 1)[1:]
    strength = np.bincount(flat, weights=ink[window].ravel(), minlength=n + 1)[1:] / np.maximum(255 * area, 1)
    slices = ndimage.find_objects(local)
    box = np.array([[s[0].start + t0, s[1].start + l0, s[0].stop + t0, s[1].stop + l0] for s in slices])
    height = box[:, 2] - box[:, 0]
    keep = (area >= max(3, 0.04 * area.max())) & (strength >= _noise_floor(ink)) & (height >= 2)
    H, W = mask.shape
    borders = (box[:, 0] == 0).astype(int) + (box[:, 1] == 0) + (box[:, 2] == H) + (box[:, 3] == W)
    framing = (borders >= 2) | ((borders == 1) & (strength < 0.6 * strength[keep].max(initial=0)))
    if (keep & ~framing).any():
        keep &= ~framing
    return labels, box, area, keep


def _grow(mask: np.ndarray) -> np.ndarray:
    """Binary dilation by a 3x3 square (what ``ndimage.maximum_filter(mask, 3)`` gives),
    as four shifted ORs: some 15x faster than SciPy's generic filter on a bool image."""
    rows = mask.copy()
    rows[:, 1:] |= mask[:, :-1]
    rows[:, :-1] |= mask[:, 1:]
    out = rows.copy()
    out[1:] |= rows[:-1]
    out[:-1] |= rows[1:]
    return out


def _group(box: np.ndarray, area: np.ndarray, keep: np.ndarray, single: bool) -> list:
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


def _of(labels: np.ndarray, members: list) -> np.ndarray:
    """Which pixels belong to the pieces ``members``: np.isin, but a plain comparison for
    the usual one-piece digit (np.isin's sort-based path costs more than the rest of the crop)."""
    return labels == members[0] if len(members) == 1 else np.isin(labels, members)


def _splits(ink, labels, box, members, n: int) -> list:
    """Cut a group into ``n`` digits at the lowest points of its column ink profile."""
    t, l, b, r = box
    w = r - l
    region = np.where(_of(labels[t:b, l:r], members), ink[t:b, l:r], 0)
    profile = ndimage.uniform_filter1d(region.sum(axis=0), 3)
    cuts, step = [0], w / n
    for k in range(1, n):
        lo, hi = int(k * step - 0.35 * step), int(k * step + 0.35 * step) + 1
        cuts.append(lo + int(np.argmin(profile[lo:hi])))
    cuts.append(w)
    parts = []
    for a, c in zip(cuts[:-1], cuts[1:]):
        rows = np.flatnonzero(region[:, a:c].any(axis=1))
        if c - a >= 2 and len(rows):
            parts.append((t + int(rows[0]), l + a, t + int(rows[-1]) + 1, l + c))
    return parts


def _digit_crop(ink, labels, box, members, x_full):
    """The ink of one digit, cropped; from the full-resolution image when it is small there.

    ``ink``/``labels`` are at work resolution, ``x_full`` is the full-resolution
    image (uint8, bright ink); pixels of other digits inside the box are left out.
    """
    t, l, b, r = box
    keep = _of(labels[t:b, l:r], members)
    keep = _grow(keep)  # with the anti-aliased rim
    k = x_full.shape[0] // ink.shape[0]
    if k == 1 or max(b - t, r - l) >= DETAIL_SIDE:
        return np.where(keep, ink[t:b, l:r] * np.float32(1 / 255), np.float32(0))
    # Small at work resolution: take the digit's own pixels at full resolution,
    # less the paper level around it (light varies little over a small box).
    fine = x_full[t * k : b * k, l * k : r * k].astype(np.float32) * np.float32(1 / 255)
    keep = np.repeat(np.repeat(keep, k, axis=0), k, axis=1)[: fine.shape[0], : fine.shape[1]]
    paper = np.median(fine[~keep]) if (~keep).any() else 0.0
    return np.where(keep, np.clip(fine - paper, 0.0, 1.0), np.float32(0))


def _stroke_width(mask: np.ndarray) -> float:
    """Mean stroke width of a binary drawing: area / (half the boundary length)."""
    area = mask.sum()
    if area == 0:
        return 0.0
    # pixels that stay after a 4-neighbour erosion (border pixels never do), by slicing:
    # the same count as ndimage.binary_erosion(mask).sum(), without its per-call overhead
    inner = mask[1:-1, 1:-1] & mask[:-2, 1:-1] & mask[2:, 1:-1] & mask[1:-1, :-2] & mask[1:-1, 2:]
    boundary = area - inner.sum()
    return 2.0 * area / max(boundary, 1)


def _to_28x28(crop: np.ndarray, deskew: bool = False) -> np.ndarray:
    """Crop of one digit (ink in [0, 1]) -> (28, 28) MNIST-style float32.

    Scaled so its long side is DETAIL_SIDE (4x the 20-px box); contrast set so
    the stroke core is 1; strokes much thinner or thicker than MNIST's are
    dilated or eroded towards MNIST's width; reduced to fit 20x20 keeping the
    aspect ratio; placed so its centre of mass is the centre of the 28x28 image.
    """
    h, w = crop.shape
    f = DETAIL_SIDE / max(h, w)
    big = _resize(crop, (max(1, round(w * f)), max(1, round(h * f))))
    strong = big[big > 0.25 * big.max()] if big.size else big
    if strong.size:
        big = np.clip(big / max(_percentile(strong, 75), 1e-3), 0.0, 1.0)

    width = _stroke_width(big > 0.5)
    if width < 0.75 * MNIST_STROKE:
        size = int(round(0.9 * MNIST_STROKE - width)) | 1
        big = np.pad(big, size)  # room to grow
        big = ndimage.grey_dilation(big, footprint=_disk(size))
    elif width > 1.4 * MNIST_STROKE:
        size = int(round(width - 1.2 * MNIST_STROKE)) | 1
        if size < width / 2:  # never erase a stroke
            big = ndimage.grey_erosion(big, footprint=_disk(size))
    rows, cols = np.flatnonzero(big.max(axis=1) > 0.05), np.flatnonzero(big.max(axis=0) > 0.05)
    if len(rows) and len(cols):
        big = big[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]

    h, w = big.shape
    f = 20.0 / max(h, w)
    small = _resize(big, (max(1, round(w * f)), max(1, round(h * f))))
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


def _percentile(values: np.ndarray, q: float) -> float:
    """``np.percentile(values, q)`` (linear interpolation) of a 1-D array by one
    partial sort: the same value, without np.percentile's generic-path overhead."""
    pos = q / 100 * (values.size - 1)
    lo = int(pos)
    hi = min(lo + 1, values.size - 1)
    part = np.partition(values, (lo, hi))
    a, b, t = float(part[lo]), float(part[hi]), pos - lo
    return a + (b - a) * t if t < 0.5 else b - (b - a) * (1 - t)  # np.percentile's lerp


def _disk(size: int) -> np.ndarray:
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


# --------------------------------------------------------------------------- public


@dataclass
class Extraction:
    """Everything the pipeline saw, for ``predict``, ``--show-steps`` and the notebooks.

    gray: (H, W) work-resolution luminance, 1 = white (each pixel the darkest
    or brightest, whichever is ink, of its block of the full image). ink: (H, W) ink strength
    as uint8 (polarity fixed, background removed, 255 = full contrast). mask: ink above the
    Otsu threshold. pool: (m, 28, 28) float32, every candidate digit, with its
    (top, left, bottom, right) work-resolution box in pool_boxes. options: per
    group of ink (left to right), its possible readings as lists of pool
    indices: the group as one digit, then cut into 2, 3, ... touching digits.
    guess: per group, the option its width suggests. choice: the option taken
    per group; the guess until a model picks better (``choose``).
    """

    gray: np.ndarray
    ink: np.ndarray
    mask: np.ndarray
    inverted: bool
    pool: np.ndarray
    pool_boxes: list
    options: list
    guess: list
    choice: list

    @property
    def indices(self) -> list[int]:
        """Pool indices of the digits read, left to right."""
        return [i for options, c in zip(self.options, self.choice) for i in options[c]]

    @property
    def digits(self) -> np.ndarray:
        """(n, 28, 28) float32: the network inputs, left to right."""
        return self.pool[self.indices]

    @property
    def boxes(self) -> list:
        return [self.pool_boxes[i] for i in self.indices]

    def choose(self, probs: np.ndarray) -> None:
        """Per group, take the reading the model believes most: the highest product of
        the digits' top probabilities, times SPLIT_PRIOR per digit more or fewer
        than the group's width suggests (networks are confident even about half
        a digit, or about three digits squeezed into one, so geometry has a say);
        a cut counts only when every part is read with at least SPLIT_SURE.
        ``probs``: (m, n_classes), the model's output for ``pool``."""
        top = np.asarray(probs).max(axis=1)
        log_top = np.log(np.maximum(top, 1e-12))

        def score(k, option, guess):
            if k > 0 and top[option].min() < SPLIT_SURE:
                return -np.inf  # a digit cut cleanly out of a pair is recognised surely
            return log_top[option].sum() + abs(k - guess) * np.log(SPLIT_PRIOR)

        self.choice = [
            int(np.argmax([score(k, o, guess) for k, o in enumerate(options)]))
            for options, guess in zip(self.options, self.guess)
        ]


def extract(source, *, single: bool = False, deskew: bool = False) -> Extraction:
    """Run the whole pipeline on ``source``; ``single`` treats all the ink as one digit.

    Raises ``DigitsError("no digit found")`` when the image has no ink.
    """
    image = load_image(source)
    gray_full = _paper_only(_to_gray(image, DECODE_SIDE))
    inverted = _dark_ink(gray_full)
    x_full = 255 - gray_full if inverted else gray_full  # uint8, bright ink
    x = _max_pool(x_full, WORK_SIDE)
    ink, mask = _ink_map(x)
    labels, groups = _find_digits(ink, mask, single)
    if not groups:
        raise DigitsError(NO_DIGIT)

    # The width one digit takes here: in a number, the widest of its plainly single digits;
    # alone, MNIST's typical aspect ratio. Groups much wider may be touching digits.
    sizes = np.array([(b - t, r - l) for (t, l, b, r), _ in groups], dtype=float)
    plain = (sizes[:, 1] >= 0.5 * sizes[:, 0]) & (sizes[:, 1] <= 1.1 * sizes[:, 0])
    unit = sizes[plain, 1].max() if len(groups) > 1 and plain.sum() >= 2 else None
    pool, pool_boxes, options, guesses = [], [], [], []
    for box, members in groups:
        t, l, b, r = box
        h, w = b - t, r - l
        width = unit or DIGIT_ASPECT * h
        readings = [[box]]
        # wide enough to be touching digits? (alone: wider than tall, which 95 % of MNIST digits are not)
        if not single and w > (0.9 * unit if unit else h):
            readings += [_splits(ink, labels, box, members, n) for n in range(2, min(5, int(w / (0.35 * h))) + 1)]
        group_options = []
        for reading in readings:
            group_options.append(list(range(len(pool), len(pool) + len(reading))))
            pool_boxes += reading
            pool += [_to_28x28(_digit_crop(ink, labels, p, members, x_full), deskew=deskew) for p in reading]
        options.append(group_options)
        guess = int(round(w / width)) if unit else int(w / width)
        guesses.append(min(max(1, guess), len(readings)) - 1)
    gray = (255 - x if inverted else x).astype(np.float32) * np.float32(1 / 255)  # as seen at work resolution
    pool = np.stack(pool).astype(np.float32)
    return Extraction(gray, ink, mask, inverted, pool, pool_boxes, options, guesses, list(guesses))


def to_mnist(image, *, deskew: bool = False) -> np.ndarray:
    """Any image -> (28, 28) float32 in [0, 1], white digit on black, MNIST-style.

    All the ink is taken as one digit. ``DigitsError("no digit found")`` for a blank image.
    """
    return extract(image, single=True, deskew=deskew).digits[0]


def segment(image, *, deskew: bool = False) -> list[np.ndarray]:
    """The digits of a number, left to right: a list of (28, 28) float32 arrays."""
    return list(extract(image, deskew=deskew).digits)


def save_steps(ex: Extraction, directory: str | Path, stem: str = "image") -> list[Path]:
    """Write what the network saw (:func:`step_images`) as ``STEM-NAME.png`` files."""
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        written = []
        for name, image in step_images(ex):
            path = directory / f"{stem}-{name}.png"
            image.save(path)
            written.append(path)
        return written
    except OSError as error:
        raise DigitsError(f"cannot write the steps to {directory}: {error.strerror or error}") from None


def step_images(ex: Extraction) -> list[tuple[str, Image.Image]]:
    """The pipeline's steps as pictures, in order: gray, ink, mask with the digit boxes,
    and each 28x28 network input (x8). ``digits predict --show-steps`` writes them; the
    web page's "inside the network" view shows them."""

    def png(array):
        return Image.fromarray((np.clip(array, 0, 1) * 255).round().astype(np.uint8))

    mask = png(ex.mask.astype(np.float32)).convert("RGB")
    draw = ImageDraw.Draw(mask)
    for t, l, b, r in ex.boxes:
        draw.rectangle((l, t, r - 1, b - 1), outline=(255, 64, 64))
    steps = [("1-gray", png(ex.gray)), ("2-ink", png(ex.ink / 255.0)), ("3-mask", mask)]
    for i, digit in enumerate(ex.digits):
        steps.append((f"4-digit{i}", png(digit).resize((224, 224), Image.Resampling.NEAREST)))
    return steps
