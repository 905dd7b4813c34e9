"""Images that are not digits, made by the project: the "not a digit" class.

A model that has only ever seen digits answers a digit for anything, often with
99 % confidence. So the shipped model learns an eleventh class, "not a digit",
from negatives generated here, each brought to MNIST style (28x28, white ink on
black, in a 20x20 box centred by its centre of mass) by the same crop and
``preprocess.normalize.to_28x28`` that prepare a digit in people's images:

    glyphs    letters and symbols rendered from the fonts matplotlib ships
    fashion   Fashion-MNIST clothing items
    strokes   random polylines with several sharp turns
    blobs     irregular filled shapes
    noise     random pixels, speckle and smooth noise

Two disjoint families are made: ``TRAIN_KINDS`` (used in training and
validation) and ``HELDOUT_KINDS`` (never trained on; they judge whether the
rejection generalises): letters in other font families (Computer Modern),
clothing classes never seen, smooth closed scribbles, stars and lattices,
and thresholded smooth noise.

Characters that a person could fairly read as a digit (O, I, l, S, Z, B, b, g,
q, parentheses, ...) are left out: refusing them would teach the model to refuse real digits.
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

import numpy as np

from digit_recognizer.errors import DigitsError

#: Letters and symbols rendered as negatives. Left out: anything that reads as a digit
#: (O o Q D 0; I l i j | ! ( ) [ ] 1; Z z 2; S s $ 5; B 8; G b 6; g q 9; T 7; A is kept).
GLYPHS = (
    "ACEFHKLMNPRUVWXYacdefhkmnprtuvwxy"
    "&#@%?+=*<>{}~^€£¥§¶©®∞√π∑Ω∆µ≠±÷×†‡«»¿ÆæØøÞðßŁłŒœ"
)
TRAIN_FONTS = (
    "DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf", "DejaVuSerif.ttf",
    "DejaVuSerif-Bold.ttf", "DejaVuSerif-Italic.ttf", "DejaVuSansMono.ttf",
    "DejaVuSansMono-Bold.ttf", "STIXGeneral.ttf", "STIXGeneralBol.ttf", "STIXGeneralItalic.ttf",
)
HELDOUT_FONTS = ("cmr10.ttf", "cmss10.ttf", "cmtt10.ttf", "cmb10.ttf", "cmti10.ttf", "cmmi10.ttf")
#: Fashion-MNIST classes trained on (T-shirt, trouser, pullover, dress, coat, sandal, shirt)
#: and held out (sneaker, bag, ankle boot).
FASHION_TRAIN_CLASSES = (0, 1, 2, 3, 4, 5, 6)
FASHION_HELDOUT_CLASSES = (7, 8, 9)

TRAIN_KINDS = ("glyphs", "fashion", "strokes", "blobs", "noise")
HELDOUT_KINDS = ("glyphs-cm", "fashion-heldout", "scribbles", "shapes", "noise-smooth")

_CANVAS = 112  # pixels; shapes are drawn big, then reduced like any photo


def font_dir() -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


@lru_cache(maxsize=64)
def _font(name: str, size: int):
    from PIL import ImageFont

    return ImageFont.truetype(str(font_dir() / name), size)


def _has_glyph(font, char: str) -> bool:
    """False where the font would draw nothing, or its "missing glyph" box, for ``char``."""
    mask = font.getmask(char)
    if mask.getbbox() is None:
        return False
    missing = font.getmask("\U0010fffd")
    return not (mask.size == missing.size and bytes(mask) == bytes(missing))


def _canvas():
    from PIL import Image, ImageDraw

    image = Image.new("L", (_CANVAS, _CANVAS), 0)
    return image, ImageDraw.Draw(image)


def _random_font(rng, fonts):
    return _font(fonts[rng.integers(len(fonts))], int(rng.integers(56, 90)))


def _text(font, text: str) -> np.ndarray:
    """``text`` drawn in ``font``, centred on the canvas."""
    image, draw = _canvas()
    draw.text((_CANVAS / 2, _CANVAS / 2), text, fill=255, font=font, anchor="mm")
    return np.asarray(image)


def _glyph(rng, fonts) -> np.ndarray | None:
    font = _random_font(rng, fonts)
    char = GLYPHS[rng.integers(len(GLYPHS))]
    return _text(font, char) if _has_glyph(font, char) else None


def _points(rng, n, margin=16):
    return [tuple(p) for p in rng.uniform(margin, _CANVAS - margin, size=(n, 2))]


def _strokes(rng) -> np.ndarray:
    """A polyline of 5-9 random points (sharp turns) and sometimes a second one."""
    image, draw = _canvas()
    width = int(rng.integers(5, 12))
    for _ in range(1 + int(rng.random() < 0.4)):
        draw.line(_points(rng, int(rng.integers(5, 10))), fill=255, width=width, joint="curve")
    return np.asarray(image)


def _blobs(rng) -> np.ndarray:
    """A few overlapping filled ellipses and polygons."""
    image, draw = _canvas()
    for _ in range(int(rng.integers(2, 6))):
        if rng.random() < 0.5:
            (x0, y0), (x1, y1) = sorted(_points(rng, 2, 10))
            draw.ellipse([min(x0, x1), min(y0, y1), max(x0, x1) + 8, max(y0, y1) + 8], fill=255)
        else:
            draw.polygon(_points(rng, int(rng.integers(3, 7)), 10), fill=255)
    return np.asarray(image)


def _noise(rng) -> np.ndarray:
    kind = rng.integers(3)
    if kind == 0:  # uniform random pixels
        return rng.integers(0, 256, size=(_CANVAS, _CANVAS)).astype(np.uint8)
    if kind == 1:  # sparse speckle
        return ((rng.random((_CANVAS, _CANVAS)) < rng.uniform(0.02, 0.2)) * 255).astype(np.uint8)
    return np.clip(rng.normal(128, 60, size=(_CANVAS, _CANVAS)), 0, 255).astype(np.uint8)


def _scribble(rng) -> np.ndarray:
    """A smooth closed curve with loops: a sum of random low-frequency sinusoids."""
    image, draw = _canvas()
    t = np.linspace(0, 2 * math.pi, 200)
    x = sum(rng.normal(0, 1) * np.cos(k * t + rng.uniform(0, 6.3)) for k in range(1, 6))
    y = sum(rng.normal(0, 1) * np.sin(k * t + rng.uniform(0, 6.3)) for k in range(1, 6))
    scale = 40 / max(np.abs(x).max(), np.abs(y).max(), 1e-6)
    points = list(zip(_CANVAS / 2 + scale * x, _CANVAS / 2 + scale * y))
    draw.line(points, fill=255, width=int(rng.integers(5, 11)), joint="curve")
    return np.asarray(image)


def _shapes(rng) -> np.ndarray:
    """Stars (filled or outlined) and lattices (grids of crossing lines)."""
    image, draw = _canvas()
    c = _CANVAS / 2
    if rng.random() < 0.6:
        spikes = int(rng.integers(5, 9))
        outer, inner = rng.uniform(38, 50), rng.uniform(12, 22)
        angle0 = rng.uniform(0, math.pi)
        points = [
            (c + r * math.cos(angle0 + k * math.pi / spikes), c + r * math.sin(angle0 + k * math.pi / spikes))
            for k, r in enumerate([outer, inner] * spikes)
        ]
        if rng.random() < 0.5:
            draw.polygon(points, fill=255)
        else:
            draw.line(points + points[:1], fill=255, width=int(rng.integers(5, 9)))
    else:
        n, width = int(rng.integers(3, 6)), int(rng.integers(4, 8))
        for v in np.linspace(15, _CANVAS - 15, n):
            draw.line([(v, 10), (v, _CANVAS - 10)], fill=255, width=width)
            draw.line([(10, v), (_CANVAS - 10, v)], fill=255, width=width)
    return np.asarray(image)


def _smooth_noise(rng) -> np.ndarray:
    """Low-frequency noise, thresholded into irregular patches."""
    coarse = rng.normal(size=(8, 8))
    field = np.kron(coarse, np.ones((_CANVAS // 8, _CANVAS // 8)))
    from scipy import ndimage

    field = ndimage.gaussian_filter(field, 5)
    return ((field > np.quantile(field, rng.uniform(0.6, 0.85))) * 255).astype(np.uint8)


def _fashion_items(split: str, classes, data_dir=None):
    from digit_recognizer import data

    images, labels = data.load(data.get_dataset("fashion-mnist"), split, data_dir)
    return images[np.isin(labels, classes)]


def _fashion(rng, items) -> np.ndarray:
    """An item as a photo would show it (larger, through preprocessing) or, one time in
    two, as the 28x28 array itself (what a caller sending 28x28 pixels would send)."""
    item = items[rng.integers(len(items))]
    if rng.random() < 0.5:
        return _AsIs(item)
    return np.kron(item, np.ones((4, 4), np.uint8))


class _AsIs(np.ndarray):
    """A 28x28 image that skips preprocessing (it is already the network's input)."""

    def __new__(cls, array):
        return np.asarray(array).view(cls)


def _maker(kind: str, data_dir):
    if kind == "glyphs":
        return lambda rng: _glyph(rng, TRAIN_FONTS)
    if kind == "glyphs-cm":
        return lambda rng: _glyph(rng, HELDOUT_FONTS)
    if kind in ("fashion", "fashion-heldout"):
        train = kind == "fashion"
        items = _fashion_items("train" if train else "test",
                               FASHION_TRAIN_CLASSES if train else FASHION_HELDOUT_CLASSES, data_dir)
        return lambda rng: _fashion(rng, items)
    makers = {"strokes": _strokes, "blobs": _blobs, "noise": _noise, "scribbles": _scribble,
              "shapes": _shapes, "noise-smooth": _smooth_noise}
    if kind not in makers:
        raise DigitsError(f"unknown kind of non-digit {kind!r}; choose from "
                          f"{', '.join(TRAIN_KINDS + HELDOUT_KINDS)}")
    return makers[kind]


def drawings(n: int, kinds=TRAIN_KINDS, seed: int = 0, data_dir=None):
    """Yield ``n`` pairs (kind index, drawing): the non-digits before preprocessing, white ink
    on black, uint8 (112x112, or 28x28 for a Fashion-MNIST item taken as it is). The kinds
    take turns; the same seed gives the same drawings."""
    rng = np.random.default_rng(seed)
    makers = [_maker(kind, data_dir) for kind in kinds]
    for i in range(n):
        which = i % len(kinds)
        drawing = None
        while drawing is None:
            drawing = makers[which](rng)
        yield which, drawing


def printed_digits(n: int, seed: int = 0, fonts=TRAIN_FONTS) -> tuple[np.ndarray, np.ndarray]:
    """``n`` digits rendered from the fonts the glyph non-digits come from, MNIST style:
    (uint8 (n, 28, 28), digit (n,)), the digits taking turns. Trained on as digits beside the
    glyphs, they keep the model from learning "drawn by a font" as "not a digit"."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 10
    images = np.zeros((n, 28, 28), np.uint8)
    for i, digit in enumerate(labels):
        images[i] = _mnist_style(_text(_random_font(rng, fonts), str(digit)))
    return images, labels


def _mnist_style(drawing: np.ndarray) -> np.ndarray:
    """A clean drawing (white ink on black) brought to MNIST style as the page reader brings
    a clean canvas: the ink above Otsu's threshold with its anti-aliased rim, cropped, then
    ``preprocess.normalize.to_28x28``; uint8 (28, 28). Not through the whole reader: its
    photo heuristics (shadows, sheets, rules) would change the training data as they change."""
    import cv2

    from digit_recognizer.preprocess import NO_DIGIT
    from digit_recognizer.preprocess.normalize import to_28x28
    from digit_recognizer.preprocess.page import otsu_threshold
    from digit_recognizer.preprocess.segmentation import grow

    ink = np.ascontiguousarray(drawing, np.uint8)
    threshold = otsu_threshold(cv2.calcHist([ink], [0], None, [256], [0, 256]).ravel()) * 255
    mask = ink > threshold
    if not mask.any():
        raise DigitsError(NO_DIGIT)
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    keep = grow(mask)[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    crop = np.where(keep, ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1] * np.float32(1 / 255), np.float32(0))
    return np.round(255 * np.clip(to_28x28(crop), 0.0, 1.0))


def generate(n: int, kinds=TRAIN_KINDS, seed: int = 0, data_dir=None) -> tuple[np.ndarray, np.ndarray]:
    """``n`` non-digit images, MNIST style: (uint8 (n, 28, 28), kind index (n,) into ``kinds``).

    The kinds take turns (as equal shares as n allows); the same seed gives the same images.
    A drawing that preprocessing finds empty is drawn again.
    """
    rng = np.random.default_rng(seed)
    makers = [_maker(kind, data_dir) for kind in kinds]
    images = np.zeros((n, 28, 28), np.uint8)
    which = np.arange(n) % len(kinds)
    for i in range(n):
        while True:
            drawing = makers[which[i]](rng)
            if drawing is None:
                continue
            if isinstance(drawing, _AsIs):
                images[i] = np.asarray(drawing)
                break
            try:
                images[i] = _mnist_style(drawing)
            except DigitsError:
                continue
            break
    return images, which
