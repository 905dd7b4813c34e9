"""Generate realistic test images of digits: photos, canvas drawings, print, numbers.

Every handwritten shape comes from the MNIST *test* split (never from training
digits), every printed one from a TrueType font shipped with matplotlib. Each
image is written as a file the way a user would hand it to ``digits predict``,
and ``labels.csv`` (path, category, label) records what it shows.

Categories (the README's "images" table reports accuracy per category):

  photo       a digit on paper photographed: uneven light, a shadow, rotation,
              blur, noise, JPEG artefacts; black, pencil-grey or blue ink
  photo-table the same, the sheet lying on a table that shows around it
  canvas      a digit drawn with a thick brush on a web canvas: black on white,
              white on black, or black strokes on a transparent layer (RGBA)
  print       a printed digit in one of several fonts, as a scan (noise, blur)
  thin        a digit drawn with a fine pen (strokes 1-3 px on a large image)
  thick       a digit drawn with a marker (very thick strokes)
  small       a small digit (12-40 px) somewhere off-centre on a large canvas
  number      a number of 2-5 handwritten digits, on paper or on a canvas
  number-print a printed number of 2-5 digits

Pages as people photograph them (the sizes, pens, rule colours, spacings,
angles and lights vary image by image; see ``page``):

  ruled       a digit on ruled notebook paper (grey, blue or dark rules 15-40 px
              apart, sometimes a red margin line) that cross the strokes
  squared     a digit on squared (grid) paper, the same range of rules
  shadow      hard-edged shadows across the page (a hand, a phone, a pen: half-planes,
              wedges, bands) taking 30-70 % of the light, a rounded soft shadow, a
              lamp's falloff or hot spot, dark corners or a glare spot; at times a
              warm or cool coloured light
  tiny        a digit 8-14 px high: left small in a photo, or upscaled 2-8x by
              an app (nearest-neighbour, bilinear or bicubic), often blurred or
              sharpened, grey or coloured, at times a JPEG before and after
  sheet       a sheet lying turned on a table (wood, grey, light, grained, a woven
              or checked cloth), its edges in view; plain, ruled or squared
  packed      a number of 2-5 digits written so close that they touch (their boxes
              overlap by up to a fifth of their height), upright or slanted
  lines       2-3 lines of 1-4 digits each (the label joins them with "/"),
              on plain or ruled paper, or on a canvas

    python tests/realworld/generate.py --out /tmp/realworld --per-category 100 --seed 0
"""

from __future__ import annotations

import argparse
import csv
import io
import zlib
from pathlib import Path

import matplotlib
import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont, ImageOps
from scipy import ndimage

FONT_DIR = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
FONTS = [
    "DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf",
    "DejaVuSansMono.ttf", "DejaVuSans-Oblique.ttf", "STIXGeneral.ttf", "STIXGeneralBol.ttf",
    "cmr10.ttf", "cmss10.ttf",
]
SINGLE = ("photo", "canvas", "print", "thin", "thick", "small")
NUMBERS = ("number", "number-print")
HARDER = ("photo-table",)  # beyond the kinds the first accuracy aims were set for
PAGE_SINGLE = ("ruled", "squared", "shadow", "tiny", "sheet")
PAGE_NUMBERS = ("packed",)
LINES = ("lines",)
CATEGORIES = SINGLE + NUMBERS + HARDER + PAGE_SINGLE + PAGE_NUMBERS + LINES
LINE_BREAK = "/"  # joins the lines of a label: "7/73" is "7" over "73"

# The ranges a page is drawn from. Each is wide on purpose: the reader must not be tuned to one pen.
PHOTO_SIZES = ((480, 640), (640, 480), (600, 800), (768, 1024), (960, 1280), (1200, 1600))
INKS = (  # RGB of pens
    (0.08, 0.08, 0.1), (0.35, 0.35, 0.37), (0.1, 0.15, 0.55), (0.05, 0.1, 0.35), (0.25, 0.12, 0.1),
)
RULE_COLOURS = (  # RGB of printed rules: grey, light and mid blue, dark grey, green-grey
    (0.6, 0.6, 0.62), (0.55, 0.7, 0.92), (0.35, 0.5, 0.85), (0.3, 0.3, 0.32), (0.55, 0.7, 0.6),
)
MARGIN_COLOUR = (0.9, 0.35, 0.4)
TABLES = (  # RGB of tables: dark and mid wood, grey, light laminate
    (0.3, 0.2, 0.12), (0.55, 0.4, 0.25), (0.35, 0.35, 0.37), (0.75, 0.73, 0.68),
)


# --------------------------------------------------------------------------- shapes


def mnist_shape(digit: np.ndarray, height: int) -> np.ndarray:
    """A (28, 28) uint8 MNIST digit as smooth pen ink (float [0, 1]) ``height`` px tall."""
    x = digit.astype(np.float32) / 255
    rows, cols = np.flatnonzero(x.max(1) > 0.1), np.flatnonzero(x.max(0) > 0.1)
    x = np.pad(x[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1], 1)
    f = height / x.shape[0]
    size = (max(2, round(x.shape[1] * f)), max(2, round(x.shape[0] * f)))
    big = np.asarray(Image.fromarray(x, "F").resize(size, Image.Resampling.BICUBIC))
    big = ndimage.gaussian_filter(big, max(0.5, f / 3))
    return np.clip((big - 0.3) / 0.25, 0, 1)  # a pen edge about 1/4 stroke wide


def skeleton(mask: np.ndarray) -> np.ndarray:
    """Zhang-Suen thinning of a binary image to 1-px-wide, connected centre lines.

    Each pass deletes, all at once, the boundary pixels whose 8 neighbours
    P2..P9 (clockwise from north) have 2..6 set pixels and exactly one 0->1
    transition, and which are not needed to keep a line joined.
    """
    img = np.pad(mask.astype(np.uint8), 1)
    while True:
        changed = False
        for step in (0, 1):
            p = [np.roll(np.roll(img, -dy, 0), -dx, 1) for dy, dx in
                 ((-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1))]
            count = sum(p)
            transitions = sum((p[i] == 0) & (p[(i + 1) % 8] == 1) for i in range(8))
            if step == 0:
                keep_a, keep_b = p[0] * p[2] * p[4], p[2] * p[4] * p[6]
            else:
                keep_a, keep_b = p[0] * p[2] * p[6], p[0] * p[4] * p[6]
            delete = (img == 1) & (count >= 2) & (count <= 6) & (transitions == 1) & (keep_a == 0) & (keep_b == 0)
            if delete.any():
                img[delete] = 0
                changed = True
        if not changed:
            return img[1:-1, 1:-1].astype(bool)


def restroke(ink: np.ndarray, width: float) -> np.ndarray:
    """Redraw ``ink`` with a pen about ``width`` px wide along its centre lines."""
    distance = ndimage.distance_transform_edt(~skeleton(ink > 0.5))
    return np.clip(width / 2 + 0.5 - distance, 0, 1).astype(np.float32)


def font_shape(text: str, font_file: str, height: int) -> np.ndarray:
    """``text`` printed in ``font_file``, cropped, about ``height`` px tall, as ink [0, 1]."""
    font = ImageFont.truetype(str(FONT_DIR / font_file), size=int(height * 1.45))
    left, top, right, bottom = font.getbbox(text)
    canvas = Image.new("L", (right - left + 8, bottom - top + 8), 0)
    ImageDraw.Draw(canvas).text((4 - left, 4 - top), text, fill=255, font=font)
    x = np.asarray(canvas, np.float32) / 255
    rows, cols = np.flatnonzero(x.max(1) > 0.1), np.flatnonzero(x.max(0) > 0.1)
    return x[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def row_of(shapes: list[np.ndarray], rng, gap=(0.05, 0.45)) -> np.ndarray:
    """Digits side by side with random gaps (a negative gap lets boxes touch), jittered vertically."""
    height = max(s.shape[0] for s in shapes)
    pieces, x = [], 0
    for s in shapes:
        top = int(rng.uniform(0, 0.12) * height)
        pieces.append((top, x, s))
        x += s.shape[1] + int(rng.uniform(*gap) * height)
    out = np.zeros((int(height * 1.15) + 2, x + 2), np.float32)
    for top, left, s in pieces:
        region = out[top : top + s.shape[0], left : left + s.shape[1]]
        np.maximum(region, s[: region.shape[0], : region.shape[1]], out=region)
    return out


def slanted(ink: np.ndarray, slant: float) -> np.ndarray:
    """``ink`` leaning right by ``slant`` px per px of height (left when negative), widened to fit."""
    h = ink.shape[0]
    extra = int(np.ceil(abs(slant) * h))
    padded = np.pad(ink, ((0, 0), (0, extra) if slant > 0 else (extra, 0)))
    image = Image.fromarray(padded, "F")
    # output (x, y) samples input (x + slant * (y - h), y): the bottom row stays, the top moves by slant * h
    matrix = (1, slant, -slant * h, 0, 1, 0)
    return np.asarray(image.transform(image.size, Image.Transform.AFFINE, matrix, Image.Resampling.BILINEAR))


# --------------------------------------------------------------------------- scenes


def place(ink: np.ndarray, size: tuple[int, int], rng, anywhere=False) -> np.ndarray:
    """Put ``ink`` into a (height, width) = size field, near the centre or ``anywhere``."""
    h, w = size
    f = 0.9 * min(h / ink.shape[0], w / ink.shape[1])
    if f < 1:  # too big for the field: shrink it
        new = (max(2, int(ink.shape[1] * f)), max(2, int(ink.shape[0] * f)))
        ink = np.asarray(Image.fromarray(ink, "F").resize(new, Image.Resampling.BILINEAR))
    out = np.zeros(size, np.float32)
    ih, iw = min(ink.shape[0], h), min(ink.shape[1], w)
    if anywhere:
        top, left = rng.integers(0, h - ih + 1), rng.integers(0, w - iw + 1)
    else:
        top = (h - ih) // 2 + int(rng.uniform(-0.1, 0.1) * (h - ih))
        left = (w - iw) // 2 + int(rng.uniform(-0.1, 0.1) * (w - iw))
    out[top : top + ih, left : left + iw] = ink[:ih, :iw]
    return out


def photo(ink: np.ndarray, rng, size=(480, 640), on_table=False) -> bytes:
    """Ink on paper under uneven light, slightly rotated, blurred, noisy: JPEG file bytes.

    ``on_table``: the sheet covers 45-85 % of the photo, on a table that shows around it.
    """
    h, w = size
    sheet = np.ones(size, np.float32)
    if on_table:
        cover = np.sqrt(rng.uniform(0.45, 0.85))
        sh, sw = int(h * cover), int(w * cover)
        top, left = int(rng.integers(0, h - sh + 1)), int(rng.integers(0, w - sw + 1))
        sheet[:] = 0
        sheet[top : top + sh, left : left + sw] = 1
        field = np.zeros(size, np.float32)
        field[top : top + sh, left : left + sw] = place(ink, (sh, sw), rng)
    else:
        field = place(ink, size, rng)
    angle = rng.uniform(-12, 12)
    def turn(a):
        return np.asarray(Image.fromarray(a, "F").rotate(angle, Image.Resampling.BILINEAR))

    field, sheet = turn(field), (turn(sheet) if sheet.min() == 0 else sheet)
    ink_colour = [
        np.array([0.08, 0.08, 0.1]),      # black pen
        np.array([0.35, 0.35, 0.37]),     # pencil
        np.array([0.1, 0.15, 0.55]),      # blue ballpoint
        np.array([0.05, 0.1, 0.35]),      # dark blue
    ][rng.integers(4)]
    paper = np.array([0.92, 0.9, 0.85]) * rng.uniform(0.85, 1.0) + rng.normal(0, 0.02, 3)
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    # light: a gradient across the sheet and a soft vignette / lamp spot
    gx, gy = rng.normal(0, 1, 2)
    gradient = (gx * (xx / w - 0.5) + gy * (yy / h - 0.5)) * rng.uniform(0.2, 0.6)
    cy, cx = rng.uniform(0, h), rng.uniform(0, w)
    spot = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * (0.6 * w) ** 2))
    light = np.clip(0.75 + gradient + 0.3 * spot, 0.35, 1.1)[..., None]
    table = np.array([1.0, 0.85, 0.7]) * rng.uniform(0.15, 0.45)  # wood, dark to mid
    rgb = paper * (1 - field[..., None]) + ink_colour * field[..., None]
    rgb = (sheet[..., None] * rgb + (1 - sheet[..., None]) * table) * light
    if rng.random() < 0.3:  # the shadow of the phone across part of the sheet
        edge = rng.uniform(0.2, 0.8) * w + (yy - h / 2) * rng.uniform(-0.5, 0.5)
        rgb *= np.where(xx[..., None] < edge[..., None], rng.uniform(0.6, 0.85), 1.0)
    return camera(rgb, rng, noise=(0.005, 0.03), blur=1.8, quality=(25, 90))


def camera(rgb: np.ndarray, rng, noise, blur, quality) -> bytes:
    """What the phone adds to a lit scene (float RGB in [0, 1]): sensor noise of a standard
    deviation in ``noise``, a blur up to ``blur`` px, JPEG quality in ``quality``: file bytes."""
    rgb = rgb + rng.normal(0, rng.uniform(*noise), rgb.shape)
    image = Image.fromarray((np.clip(rgb, 0, 1) * 255).astype(np.uint8), "RGB")
    image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0, blur)))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=int(rng.integers(*quality)))
    return buffer.getvalue()


def canvas(ink: np.ndarray, rng, side=None) -> Image.Image:
    """A drawing on a square canvas: black on white, white on black, or on a transparent layer."""
    side = side or int(rng.integers(200, 420))
    field = place(ink, (side, side), rng)
    style = rng.integers(3)
    if style == 2:  # strokes only in alpha, RGB all black (as browsers export it)
        alpha = (field * 255).astype(np.uint8)
        return Image.fromarray(np.dstack([np.zeros_like(alpha)] * 3 + [alpha]), "RGBA")
    value = field if style == 1 else 1 - field
    return Image.fromarray((value * 255).astype(np.uint8), "L")


def scan(ink: np.ndarray, rng, size) -> Image.Image:
    """Printed ink on white paper, scanned: slight blur and noise."""
    field = place(ink, size, rng)
    gray = 0.97 - 0.9 * field + rng.normal(0, 0.02, size)
    image = Image.fromarray((np.clip(gray, 0, 1) * 255).astype(np.uint8), "L")
    return image.filter(ImageFilter.GaussianBlur(rng.uniform(0, 1.0)))


# --------------------------------------------------------------------------- pages


def tiny_shape(digit: np.ndarray, height: int) -> np.ndarray:
    """A (28, 28) MNIST digit area-averaged down to ``height`` px: grey, anti-aliased strokes."""
    x = digit.astype(np.float32) / 255
    rows, cols = np.flatnonzero(x.max(1) > 0.1), np.flatnonzero(x.max(0) > 0.1)
    x = x[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    f = height / x.shape[0]
    size = (max(2, round(x.shape[1] * f)), max(2, round(x.shape[0] * f)))
    small = np.asarray(Image.fromarray(x, "F").resize(size, Image.Resampling.BOX))
    return np.clip(small * 1.4, 0, 1)


def rules(size, rng, kind: str, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Printed rules of ``kind`` ("ruled" or "squared") over a (h, w) page: (coverage, RGB colour).

    Spacing 15-40 px, lines 0.8-2.5 px wide, partly faint; a ruled page may have a red margin.
    ``scale``: both times this (a page that is shrunk by 1 / scale before it is photographed).
    """
    h, w = size
    spacing = rng.uniform(15, 40) * scale
    width = rng.uniform(0.8, 2.5) * scale
    strength = rng.uniform(0.45, 1.0)
    yy, xx = np.mgrid[:h, :w].astype(np.float32)

    def lines(coord, offset, step):
        distance = np.abs((coord - offset + step / 2) % step - step / 2)
        return np.clip(width / 2 + 0.5 - distance, 0, 1)

    cover = lines(yy, rng.uniform(0, spacing), spacing)
    if kind == "squared":
        cover = np.maximum(cover, lines(xx, rng.uniform(0, spacing), spacing))
    colour = np.broadcast_to(np.array(RULE_COLOURS[rng.integers(len(RULE_COLOURS))]), (h, w, 3)).copy()
    if kind == "ruled" and rng.random() < 0.3:  # a margin line
        margin = np.clip(width / 2 + 0.5 - np.abs(xx - rng.uniform(0.05, 0.2) * w), 0, 1)
        colour[margin > 0] = MARGIN_COLOUR
        cover = np.maximum(cover, margin)
    return cover * strength, colour


def lighting(size, rng, hard: bool) -> np.ndarray:
    """A (h, w) light level: a gentle gradient and lamp spot; ``hard`` adds what a phone
    photo of a page often has: sharp shadows (of a hand, a phone, a pen: half-planes, wedges,
    bands) taking 30-70 % of the light, a rounded soft-edged shadow, a lamp's steep falloff
    or hot spot, dark corners or a glare spot, and sometimes a coloured light ((h, w, 3))."""
    h, w = size
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    gx, gy = rng.normal(0, 1, 2)
    light = 0.85 + (gx * (xx / w - 0.5) + gy * (yy / h - 0.5)) * rng.uniform(0.05, 0.3)
    if not hard:
        return np.clip(light, 0.4, 1.1)
    kinds = rng.permutation(["shadow", "falloff", "corners", "spot", "hot spot", "soft shadow"])[
        : int(rng.integers(1, 3))]
    if "shadow" not in kinds and rng.random() < 0.6:
        kinds = np.append(kinds, "shadow")
    for kind in kinds:
        if kind == "shadow":  # a straight-edged shadow: a half-plane, a wedge of two, or a band
            for _ in range(int(rng.integers(1, 3))):
                angle = rng.uniform(0, 2 * np.pi)
                cy, cx = rng.uniform(0.2, 0.8) * h, rng.uniform(0.2, 0.8) * w
                side = (yy - cy) * np.cos(angle) + (xx - cx) * np.sin(angle)
                penumbra = max(rng.uniform(0, 4), 0.3)  # 0-4 px
                edge = np.clip(side / penumbra + 0.5, 0, 1)
                if rng.random() < 0.25:  # the shadow of a pen or a ruler across the page: a band
                    edge = edge * np.clip((rng.uniform(0.05, 0.2) * min(h, w) - side) / penumbra + 0.5, 0, 1)
                light = light * (1 - edge * rng.uniform(0.3, 0.7))
        elif kind == "soft shadow":  # the rounded shadow of a hand or a head, its edge 5-40 px soft
            cy, cx = rng.uniform(-0.2, 1.2) * h, rng.uniform(-0.2, 1.2) * w
            ry, rx = rng.uniform(0.2, 0.6) * h, rng.uniform(0.2, 0.6) * w
            r = np.hypot((yy - cy) / ry, (xx - cx) / rx)
            edge = np.clip((1 - r) * min(ry, rx) / rng.uniform(5, 40) + 0.5, 0, 1)
            light = light * (1 - edge * rng.uniform(0.3, 0.7))
        elif kind == "falloff":  # a desk lamp off to one side
            cy, cx = rng.uniform(-0.5, 1.5) * h, rng.uniform(-0.5, 1.5) * w
            r = np.hypot(yy - cy, xx - cx) / np.hypot(h, w)
            light = light * np.clip(1.15 - rng.uniform(0.6, 1.2) * r, 0.3, 1.1)
        elif kind == "hot spot":  # a lamp close above the page: bright under it, dim beyond
            cy, cx = rng.uniform(0.1, 0.9) * h, rng.uniform(0.1, 0.9) * w
            sigma = rng.uniform(0.15, 0.4) * min(h, w)
            light = light * (0.35 + 0.9 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma ** 2)))
        elif kind == "corners":
            r = np.hypot((yy - h / 2) / h, (xx - w / 2) / w) * 2
            light = light * (1 - rng.uniform(0.3, 0.6) * r ** 2)
        else:  # a glare spot on glossy paper
            cy, cx = rng.uniform(0, h), rng.uniform(0, w)
            sigma = rng.uniform(0.05, 0.2) * w
            light = light + rng.uniform(0.2, 0.5) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma ** 2))
    light = np.clip(light, 0.2, 1.4)
    if rng.random() < 0.4:  # coloured light: a warm bulb or cool daylight, stronger where it is bright
        tint = np.array([1.0, 0.93, 0.78]) if rng.random() < 0.6 else np.array([0.85, 0.93, 1.0])
        return light[..., None] * (1 + (tint - 1) * rng.uniform(0.5, 1.0))
    return light


def page(ink: np.ndarray, rng, *, paper: str = "plain", hard_light: bool = False, on_table: bool = False,
         size=None, ink_colour=None, fill=None) -> bytes:
    """A phone photo of ``ink`` written on a page: JPEG file bytes.

    ``paper``: "plain", "ruled" or "squared". The page is turned by up to 8
    degrees (30 on a table), lit by ``lighting``, blurred, noisy and compressed.
    ``on_table``: the sheet, turned, covers 30-80 % of the photo, on a table (wood, with
    or without grain, grey, light, or a woven or checked cloth) that shows around it; its
    rules are as far apart in the photo as on a page that fills it.
    ``fill``: (low, high): scale the ink to cover this fraction of the photo's width or height.
    """
    h, w = size or PHOTO_SIZES[rng.integers(len(PHOTO_SIZES))]
    if fill is not None:
        f = rng.uniform(*fill) / max(ink.shape[0] / h, ink.shape[1] / w)
        new = (max(2, round(ink.shape[1] * f)), max(2, round(ink.shape[0] * f)))
        ink = np.asarray(Image.fromarray(ink, "F").resize(new, Image.Resampling.BILINEAR))
    field = place(ink, (h, w), rng)
    paper_rgb = np.array([0.93, 0.92, 0.88]) * rng.uniform(0.85, 1.0) + rng.normal(0, 0.02, 3)
    ink_rgb = np.array(ink_colour or INKS[rng.integers(len(INKS))])
    rgb = np.broadcast_to(paper_rgb, (h, w, 3)).astype(np.float32)
    # the share of the photo's side the sheet takes on a table: it is drawn full size, then shrunk
    shrink = np.sqrt(rng.uniform(0.3, 0.8)) if on_table else 1.0
    if paper != "plain":
        cover, colour = rules((h, w), rng, paper, scale=1 / shrink)
        rgb = rgb * (1 - cover[..., None]) + colour * cover[..., None]
    rgb = rgb * (1 - field[..., None]) + ink_rgb * field[..., None]
    image = Image.fromarray((np.clip(rgb, 0, 1) * 255).astype(np.uint8), "RGB")
    if on_table:
        cover = shrink
        sheet = image.resize((int(w * cover), int(h * cover)), Image.Resampling.BILINEAR)
        mask = Image.new("L", sheet.size, 255)
        angle = rng.uniform(-30, 30)
        sheet, mask = sheet.rotate(angle, Image.Resampling.BILINEAR, expand=True), mask.rotate(angle, expand=True)
        table = np.broadcast_to(np.array(TABLES[rng.integers(len(TABLES))]) * rng.uniform(0.8, 1.1), (h, w, 3))
        style = rng.random()
        if style < 0.4:  # wood grain
            table = table * (1 + 0.08 * np.sin(np.arange(h)[:, None, None] / rng.uniform(3, 12)))
        elif style < 0.7:  # a cloth: a fine weave, or checks of two shades
            yy, xx = np.mgrid[:h, :w].astype(np.float32)
            period = rng.uniform(2.5, 6) if rng.random() < 0.5 else rng.uniform(12, 40)
            weave = np.sign(np.sin(np.pi * xx / period) * np.sin(np.pi * yy / period))
            table = table * (1 + rng.uniform(0.05, 0.15) * weave[..., None])
        backdrop = Image.fromarray((np.clip(table + rng.normal(0, 0.02, (h, w, 3)), 0, 1) * 255).astype(np.uint8))
        left = int(rng.uniform(-0.15, 0.15) * w + (w - sheet.width) / 2)
        top = int(rng.uniform(-0.15, 0.15) * h + (h - sheet.height) / 2)
        backdrop.paste(sheet, (left, top), mask)
        image = backdrop
    else:
        image = image.rotate(rng.uniform(-8, 8), Image.Resampling.BILINEAR, fillcolor=tuple(
            int(255 * v) for v in np.clip(paper_rgb, 0, 1)))
    light = lighting((h, w), rng, hard_light)
    rgb = np.asarray(image, np.float32) / 255 * (light if light.ndim == 3 else light[..., None])
    return camera(rgb, rng, noise=(0.005, 0.025), blur=1.5, quality=(35, 92))


def tiny(digit: np.ndarray, rng):
    """A digit 8-14 px high: in a photo as it is (sometimes under a hard light), or in a small
    picture an app upscaled: grey or coloured, light on dark at times, perhaps saved as a JPEG
    before it was upscaled (nearest-neighbour, bilinear or bicubic), blurred or sharpened after."""
    height = int(rng.integers(8, 15))
    shape = tiny_shape(digit, height)
    if rng.random() < 0.35:  # small in a full photo (a far-off note)
        return page(shape, rng, size=(480, 640), ink_colour=INKS[rng.integers(3)], hard_light=rng.random() < 0.25)
    h, w = int(height * rng.uniform(1.6, 4)), int(height * rng.uniform(1.6, 5))
    field = place(shape, (h, w), rng, anywhere=True)
    contrast = rng.uniform(0.45, 0.9)
    paper = rng.uniform(0.75, 0.97)
    gray = paper - contrast * paper * field + rng.normal(0, 0.01, field.shape)
    small = Image.fromarray((np.clip(gray, 0, 1) * 255).astype(np.uint8), "L")
    if rng.random() < 0.2:
        small = ImageOps.invert(small)  # light on dark: a screenshot of a dark app
    if rng.random() < 0.3:  # coloured ink on a tinted ground (a chat app, a form)
        ink_rgb, ground_rgb = rng.uniform(0, 0.5, 3), rng.uniform(0.7, 1.0, 3)
        g = np.asarray(small, np.float32)[..., None] / 255
        small = Image.fromarray((255 * (ink_rgb + (ground_rgb - ink_rgb) * g)).astype(np.uint8), "RGB")
    if rng.random() < 0.3:  # the small picture was sent as a JPEG first
        buffer = io.BytesIO()
        small.save(buffer, "JPEG", quality=int(rng.integers(50, 90)))
        small = Image.open(io.BytesIO(buffer.getvalue()))
    factor = rng.uniform(2, 8)
    resample = (Image.Resampling.NEAREST, Image.Resampling.BILINEAR, Image.Resampling.BICUBIC)[rng.integers(3)]
    big = small.resize((int(w * factor), int(h * factor)), resample)
    if rng.random() < 0.5:
        big = big.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 0.4 * factor)))
    elif rng.random() < 0.4:  # an app's sharpening, with its halos
        big = big.filter(ImageFilter.UnsharpMask(radius=rng.uniform(1, 3), percent=int(rng.integers(80, 200))))
    if rng.random() < 0.5:
        buffer = io.BytesIO()
        big.save(buffer, "JPEG", quality=int(rng.integers(40, 90)))
        return buffer.getvalue()
    return big


def stack_lines(rows: list[np.ndarray], rng) -> np.ndarray:
    """Lines of ink one under the other, 1.3-2 line heights apart, each indented at random."""
    height = max(r.shape[0] for r in rows)
    pitch = int(height * rng.uniform(1.3, 2.0))
    width = max(r.shape[1] for r in rows) + int(0.8 * height)
    out = np.zeros((pitch * (len(rows) - 1) + height + 2, width), np.float32)
    for k, r in enumerate(rows):
        left = int(rng.uniform(0, width - r.shape[1]))
        top = k * pitch
        region = out[top : top + r.shape[0], left : left + r.shape[1]]
        np.maximum(region, r[: region.shape[0], : region.shape[1]], out=region)
    return out


# --------------------------------------------------------------------------- the set


def make(category: str, rng, images: np.ndarray, labels: np.ndarray):
    """One (PIL image or JPEG bytes, label string) of ``category``."""
    def pick(k=1):
        idx = rng.integers(0, len(images), k)
        return [images[i] for i in idx], "".join(str(int(labels[i])) for i in idx)

    if category in ("photo", "photo-table"):
        (d,), label = pick()
        return photo(mnist_shape(d, int(rng.integers(90, 300))), rng, on_table=category == "photo-table"), label
    if category == "canvas":
        (d,), label = pick()
        side = int(rng.integers(200, 420))
        shape = mnist_shape(d, int(side * rng.uniform(0.5, 0.8)))
        return canvas(restroke(shape, side * rng.uniform(0.06, 0.12)), rng, side), label
    if category == "print":
        label = str(rng.integers(10))
        font = FONTS[rng.integers(len(FONTS))]
        h, w = int(rng.integers(150, 500)), int(rng.integers(150, 500))
        shape = font_shape(label, font, int(min(h, w) * rng.uniform(0.3, 0.8)))
        return scan(shape, rng, (h, w)), label
    if category == "thin":
        (d,), label = pick()
        height = int(rng.integers(150, 400))
        shape = restroke(mnist_shape(d, height), rng.uniform(1.0, 3.0))
        return canvas(shape, rng, int(height * rng.uniform(1.2, 1.6))), label
    if category == "thick":
        (d,), label = pick()
        height = int(rng.integers(100, 300))
        shape = restroke(mnist_shape(d, height), height * rng.uniform(0.16, 0.24))
        return canvas(np.pad(shape, height // 8), rng, int(height * 1.5)), label
    if category == "small":
        (d,), label = pick()
        shape = mnist_shape(d, int(rng.integers(12, 40)))
        h, w = int(rng.integers(400, 1200)), int(rng.integers(400, 1600))
        field = place(shape, (h, w), rng, anywhere=True)
        gray = 1 - field if rng.random() < 0.7 else field
        return Image.fromarray((gray * 255).astype(np.uint8), "L"), label
    if category == "number":
        digits, label = pick(int(rng.integers(2, 6)))
        height = int(rng.integers(60, 110))
        shapes = [mnist_shape(d, int(height * rng.uniform(0.9, 1.1))) for d in digits]
        ink = row_of(shapes, rng, gap=(-0.05, 0.4))
        if rng.random() < 0.5:
            return photo(ink, rng), label
        side = max(ink.shape[1] + 40, 280)
        return canvas(restroke(ink, height * rng.uniform(0.08, 0.14)), rng, side), label
    if category == "number-print":
        label = "".join(str(v) for v in rng.integers(0, 10, int(rng.integers(2, 6))))
        label = label if label[0] != "0" else "1" + label[1:]
        shape = font_shape(label, FONTS[rng.integers(len(FONTS))], int(rng.integers(40, 120)))
        h, w = shape.shape[0] * 3, shape.shape[1] + int(rng.integers(40, 200))
        return scan(shape, rng, (h, w)), label
    if category in ("ruled", "squared", "shadow", "sheet"):
        (d,), label = pick()
        height = int(rng.integers(50, 260))
        shape = mnist_shape(d, height)
        if rng.random() < 0.3:  # a thinner or a thicker pen than the digit's writer had
            shape = restroke(shape, height * rng.uniform(0.04, 0.15))
        return page(shape, rng, paper=category if category in ("ruled", "squared") else
                    ("plain", "ruled", "squared")[rng.integers(3)] if category == "sheet" else "plain",
                    hard_light=category == "shadow", on_table=category == "sheet"), label
    if category == "tiny":
        (d,), label = pick()
        return tiny(d, rng), label
    if category == "packed":
        digits, label = pick(int(rng.integers(2, 6)))
        height = int(rng.integers(50, 120))
        shapes = [mnist_shape(d, int(height * rng.uniform(0.9, 1.1))) for d in digits]
        # boxes overlapping by up to a fifth of a digit, or just apart; upright or slanted either way
        ink = slanted(row_of(shapes, rng, gap=(-0.2, 0.02)), rng.uniform(-0.1, 0.3))
        if rng.random() < 0.5:
            return page(ink, rng, paper=("plain", "ruled")[rng.integers(2)], fill=(0.3, 0.8)), label
        side = max(ink.shape[1] + 40, 280)
        return canvas(restroke(ink, height * rng.uniform(0.08, 0.14)), rng, side), label
    if category == "lines":
        lengths = rng.integers(1, 5, int(rng.integers(2, 4)))
        height = int(rng.integers(40, 90))
        rows, texts = [], []
        for n in lengths:
            digits, text = pick(int(n))
            rows.append(row_of([mnist_shape(d, int(height * rng.uniform(0.9, 1.1))) for d in digits], rng))
            texts.append(text)
        ink = stack_lines(rows, rng)
        label = LINE_BREAK.join(texts)
        style = rng.random()
        if style < 0.6:
            return page(ink, rng, paper=("plain", "plain", "ruled", "squared")[rng.integers(4)],
                        fill=(0.3, 0.8)), label
        side = max(ink.shape[1], ink.shape[0]) + 60
        return canvas(restroke(ink, height * rng.uniform(0.08, 0.14)), rng, side), label
    raise ValueError(f"unknown category {category!r}")


def generate(out_dir, images, labels, per_category=100, seed=0, categories=CATEGORIES) -> Path:
    """Write ``per_category`` images per category under ``out_dir`` and ``labels.csv``.

    ``images``, ``labels``: the MNIST *test* split (uint8 (N, 28, 28), (N,)).
    The same seed writes the same files (a category's images do not depend on
    which other categories are generated).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for category in categories:
        rng = np.random.default_rng([seed, zlib.crc32(category.encode())])  # same images in any subset
        (out_dir / category).mkdir(exist_ok=True)
        for i in range(per_category):
            image, label = make(category, rng, images, labels)
            name = f"{category}/{i:04d}.{'jpg' if isinstance(image, bytes) else 'png'}"
            if isinstance(image, bytes):
                (out_dir / name).write_bytes(image)
            else:
                image.save(out_dir / name)
            rows.append((name, category, label))
    with open(out_dir / "labels.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "category", "label"])
        writer.writerows(rows)
    return out_dir / "labels.csv"


def main(argv=None) -> None:
    from digit_recognizer import data

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder to write into")
    parser.add_argument("--per-category", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--categories", default=",".join(CATEGORIES), help="comma-separated (default: all)")
    args = parser.parse_args(argv)
    images, labels = data.load("mnist", "test")
    path = generate(args.out, images, labels, args.per_category, args.seed, args.categories.split(","))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
