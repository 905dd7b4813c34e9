"""Arrays -> small PNG pictures as ``data:`` URLs, for the page's teaching views.

Feature maps are laid out as a grid of tiles, one per channel, each scaled by the
largest magnitude in the whole layer (so tiles compare: a dim tile is a weak channel).
Non-negative arrays (after a ReLU, a pooling of one, an image) are drawn black to white
like the input digit; signed ones (a convolution before its ReLU, weights) black at
zero, orange for positive and blue for negative values.
"""

from __future__ import annotations

import base64
import io
import math

import numpy as np
from PIL import Image

GAP = 1  # pixels between tiles
GAP_SHADE = 96  # grey of the gaps: visible between black tiles

_POSITIVE = np.array([255, 150, 40], dtype=np.float32)  # orange
_NEGATIVE = np.array([70, 140, 255], dtype=np.float32)  # blue


def data_url(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, "PNG", optimize=False, compress_level=1)  # tiny images: speed over size
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def colour(values: np.ndarray, scale: float | None = None) -> np.ndarray:
    """(..., H, W) values -> (..., H, W, 3) uint8: grey levels for non-negative arrays,
    orange/blue on black for signed ones; ``scale`` (default: the largest magnitude) maps to full brightness."""
    values = np.asarray(values, dtype=np.float32)
    scale = float(np.abs(values).max()) if scale is None else float(scale)
    level = values / scale if scale > 0 else np.zeros_like(values)
    level = np.clip(level, -1.0, 1.0)[..., None]
    if values.min(initial=0.0) >= 0:
        rgb = np.broadcast_to(level * 255.0, level.shape[:-1] + (3,))
    else:
        rgb = np.where(level >= 0, level * _POSITIVE, -level * _NEGATIVE)
    return np.rint(rgb).astype(np.uint8)


def grid_shape(n: int) -> tuple[int, int]:
    """(rows, columns) for n tiles: about twice as wide as high, every row full where a
    divisor of n allows (64 -> 4 x 16, 6 -> 1 x 6), else the last row part filled."""
    target = math.sqrt(2 * n)
    columns = next((d for d in range(math.ceil(target), n + 1) if n % d == 0), n)
    if columns > 2 * target:  # n has no divisor near: a prime, say
        columns = math.ceil(target)
    columns = max(1, min(columns, n))
    return math.ceil(n / columns), columns


def tiles(maps: np.ndarray, scale: float | None = None) -> Image.Image:
    """(C, H, W) maps -> one RGB picture, C tiles in a grid separated by grey lines."""
    maps = np.asarray(maps, dtype=np.float32)
    c, h, w = maps.shape
    rows, columns = grid_shape(c)
    rgb = colour(maps, scale)
    out = np.full((rows * (h + GAP) - GAP, columns * (w + GAP) - GAP, 3), GAP_SHADE, np.uint8)
    for i in range(c):
        r, k = divmod(i, columns)
        out[r * (h + GAP): r * (h + GAP) + h, k * (w + GAP): k * (w + GAP) + w] = rgb[i]
    return Image.fromarray(out)


def heat_over(image: np.ndarray, heat: np.ndarray) -> Image.Image:
    """A (H, W) grey image in [0, 1], dimmed, with ``heat`` (H, W, >= 0) laid over it in red-yellow:
    the saliency map over the input."""
    heat = np.asarray(heat, dtype=np.float32)
    level = heat / heat.max() if heat.max() > 0 else heat
    base = 0.35 * np.clip(image, 0, 1)[..., None] * 255.0
    hot = np.stack([np.minimum(1.0, 2.0 * level), np.clip(2.0 * level - 0.6, 0, 1), np.zeros_like(level)], -1)
    alpha = np.clip(1.5 * level, 0, 1)[..., None]
    rgb = base * (1 - alpha) + hot * 255.0 * alpha
    return Image.fromarray(np.rint(rgb).astype(np.uint8))
