"""Random geometric augmentation of digit images, vectorised over the batch.

Every image gets its own random rotation, scale and shift (and, optionally, an
elastic distortion as in Simard et al. 2003), yet the whole batch is resampled
in one go: we build a source-coordinate map of shape (N, H, W) for each axis
and read the images there with bilinear interpolation. There is no Python loop
over samples or pixels.

For an output pixel p (centred coordinates), the source position is

    src = R(-theta) (p - t) / s  [+ elastic displacement]

so the digit appears rotated by theta, scaled by s and shifted by t. Pixels
whose source lies outside the image read as background (zero).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Augmentation:
    """Ranges of the random transforms; each is drawn uniformly per image.

    rotation: degrees, +-; scale: relative, 1 +- scale; shift: pixels, +- per axis;
    elastic_alpha / elastic_sigma: displacement magnitude (pixels) and smoothness
    of the elastic field (0 alpha turns it off); low_res: the share of images also
    made to look like a small digit in a photo (``low_resolution``; 0 turns it off).
    """

    rotation: float = 10.0
    scale: float = 0.10
    shift: float = 2.0
    elastic_alpha: float = 0.0
    elastic_sigma: float = 4.0
    low_res: float = 0.0

    def config(self) -> dict:
        # (low_res only when on: the settings of runs made before it existed stay the same)
        return {k: v for k, v in asdict(self).items() if k != "low_res" or v}

    def __call__(self, images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        settings = asdict(self)
        share = settings.pop("low_res")
        out = augment(images, rng, **settings)
        return low_resolution(out, rng, share) if share > 0 else out


def _gaussian_blur(fields: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur over the last two axes of (N, H, W) fields (zero padding)."""
    radius = max(1, int(round(3 * sigma)))
    taps = np.arange(-radius, radius + 1, dtype=np.float32)
    kernel = np.exp(-0.5 * (taps / sigma) ** 2)
    kernel /= kernel.sum()
    out = fields
    for axis in (1, 2):
        n = out.shape[axis]
        padded = np.pad(out, [(0, 0)] * axis + [(radius, radius)] + [(0, 0)] * (2 - axis))
        # Sum of shifted copies: a loop over kernel taps (about 25), not over pixels.
        acc = np.zeros_like(out)
        for k, weight in enumerate(kernel):
            acc += weight * np.take(padded, np.arange(k, k + n), axis=axis)
        out = acc
    return out


def random_affine_maps(
    n: int,
    height: int,
    width: int,
    rng: np.random.Generator,
    rotation: float = 10.0,
    scale: float = 0.10,
    shift: float = 2.0,
    elastic_alpha: float = 0.0,
    elastic_sigma: float = 4.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Source coordinates (ys, xs), each (n, height, width) float32, for n random transforms."""
    theta = np.deg2rad(rng.uniform(-rotation, rotation, size=n)).astype(np.float32)
    s = rng.uniform(1.0 - scale, 1.0 + scale, size=n).astype(np.float32)
    ty, tx = rng.uniform(-shift, shift, size=(2, n)).astype(np.float32)
    ys, xs = affine_maps(theta, s, ty, tx, height, width)

    if elastic_alpha > 0:
        noise = rng.uniform(-1.0, 1.0, size=(2, n, height, width)).astype(np.float32)
        dy = _gaussian_blur(noise[0], elastic_sigma)
        dx = _gaussian_blur(noise[1], elastic_sigma)
        # Normalise so that alpha is the typical displacement in pixels.
        norm = np.sqrt((dy**2 + dx**2).mean(axis=(1, 2), keepdims=True)) + 1e-8
        ys = ys + elastic_alpha * dy / norm
        xs = xs + elastic_alpha * dx / norm
    return ys.astype(np.float32), xs.astype(np.float32)


def affine_maps(theta, s, ty, tx, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Source coordinates (ys, xs), each (n, height, width), of n given transforms: rotation
    theta (radians, (n,)), scale s, shift (ty, tx) pixels, about the image centre."""
    theta, s, ty, tx = (np.asarray(v, dtype=np.float32).reshape(-1) for v in (theta, s, ty, tx))
    cy, cx = (height - 1) / 2.0, (width - 1) / 2.0
    py = np.arange(height, dtype=np.float32)[None, :, None] - cy - ty[:, None, None]
    px = np.arange(width, dtype=np.float32)[None, None, :] - cx - tx[:, None, None]
    cos = (np.cos(theta) / s)[:, None, None]
    sin = (np.sin(theta) / s)[:, None, None]
    # Inverse map: rotate the output grid back by -theta and undo the scale.
    return cos * py - sin * px + cy, sin * py + cos * px + cx


def bilinear_sample(images: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Read images (N, H, W) at fractional positions (N, H', W'); zero outside.

    out = sum over the 4 neighbours of  w_y * w_x * image[y_i, x_j]
    """
    n, h, w = images.shape
    # Pad one pixel of background all round, then clamp: anything further out reads zero.
    padded = np.pad(images.astype(np.float32, copy=False), ((0, 0), (1, 1), (1, 1)))
    flat = padded.reshape(n, -1)
    ys = np.clip(ys + 1.0, 0.0, h + 1.0)
    xs = np.clip(xs + 1.0, 0.0, w + 1.0)
    y0 = np.minimum(np.floor(ys).astype(np.int64), h)
    x0 = np.minimum(np.floor(xs).astype(np.int64), w)
    wy = ys - y0
    wx = xs - x0
    rows = np.arange(n)[:, None, None]
    stride = w + 2

    def at(yi, xi):
        return flat[rows, yi * stride + xi]

    top = (1 - wx) * at(y0, x0) + wx * at(y0, x0 + 1)
    bottom = (1 - wx) * at(y0 + 1, x0) + wx * at(y0 + 1, x0 + 1)
    return ((1 - wy) * top + wy * bottom).astype(np.float32)


def augment(
    images: np.ndarray,
    rng: np.random.Generator,
    rotation: float = 10.0,
    scale: float = 0.10,
    shift: float = 2.0,
    elastic_alpha: float = 0.0,
    elastic_sigma: float = 4.0,
) -> np.ndarray:
    """Randomly transform a batch (N, H, W) or (N, 1, H, W); returns float32 of the same shape.

    The pixel scale is kept (uint8 input gives float32 values in [0, 255]).
    """
    images = np.asarray(images)
    squeeze = images.ndim == 4
    if squeeze:
        if images.shape[1] != 1:
            raise ValueError(f"augment expects one channel, got shape {images.shape}")
        images = images[:, 0]
    if images.ndim != 3:
        raise ValueError(f"augment expects (N, H, W) or (N, 1, H, W), got shape {images.shape}")
    n, h, w = images.shape
    ys, xs = random_affine_maps(
        n, h, w, rng, rotation, scale, shift, elastic_alpha, elastic_sigma
    )
    out = bilinear_sample(images, ys, xs)
    return out[:, None] if squeeze else out


#: A small digit in a photo: this many pixels high (the range drawn from), blurred by the
#: camera by a Gaussian of this sigma (pixels at that size).
LOW_RES_HEIGHT = (7.0, 14.0)
LOW_RES_BLUR = (0.4, 1.6)
#: The shrunk digit is cropped to where it reaches this share of its peak, keeping what
#: reaches LOW_RES_RIM (its blurred rim), as the page reader keeps a stroke's rim.
LOW_RES_INK = 0.15
LOW_RES_RIM = 0.1


def low_resolution(images: np.ndarray, rng: np.random.Generator, share: float) -> np.ndarray:
    """A ``share`` of the batch (float32 (N, H, W) or (N, 1, H, W) in [0, 255], changed in
    place and returned) shown as a digit 7-14 px high in a photo is: shrunk (area average),
    blurred, then brought back to MNIST style by the crop and ``normalize.to_28x28`` the page
    reader uses. Its strokes thicken and its loops fill, as a small digit's crop does."""
    import cv2

    from digit_recognizer.preprocess.normalize import to_28x28

    n = len(images)
    picked = np.flatnonzero(rng.random(n) < share)
    heights = rng.uniform(*LOW_RES_HEIGHT, n)
    sigmas = rng.uniform(*LOW_RES_BLUR, n)
    x = images[:, 0] if images.ndim == 4 else images
    for i in picked:
        side = max(5, int(round(28 * heights[i] / 20)))  # MNIST's digit fills 20 of its 28 px
        small = cv2.resize(x[i], (side, side), interpolation=cv2.INTER_AREA)
        small = cv2.GaussianBlur(small, (0, 0), float(sigmas[i]))
        small = small / max(float(small.max()), 1e-6)
        rows, cols = np.flatnonzero(small.max(1) > LOW_RES_INK), np.flatnonzero(small.max(0) > LOW_RES_INK)
        if rows.size == 0:
            continue
        crop = np.where(small > LOW_RES_RIM, small, 0)[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
        x[i] = 255 * np.clip(to_28x28(crop.astype(np.float32)), 0, 1)
    return images
