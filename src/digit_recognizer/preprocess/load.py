"""Decoding: any file Pillow reads -> an 8-bit gray page, and which way round its ink is.

``load_image`` turns a path, bytes, a file object, a PIL image or an array into
a loaded PIL image (first frame of an animation, EXIF orientation applied), and
every way a file can be unusable into a one-line ``DigitsError``. ``to_gray``
composites transparency and brings 16-bit, float, palette and CMYK images to
8-bit luminance; ``dark_ink`` tells dark ink on light paper from the reverse.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from digit_recognizer.errors import DigitsError
from digit_recognizer.files import read_regular_file

MAX_PIXELS = 40_000_000       # pixel budget: refuse bigger images before decoding them
MAX_FILE_BYTES = 64 * 2**20   # and bigger files before reading them
MAX_DECODED_BYTES = 96 * 2**20  # and images taking more memory once decoded (25 MP in colour)
DECODE_SIDE = 2048            # JPEGs are decoded at reduced scale down to about this side

IMAGE_SUFFIXES = frozenset(
    ".png .jpg .jpeg .jpe .jfif .gif .bmp .dib .tif .tiff .webp .ppm .pgm .pbm .pnm .tga .ico".split()
)


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
        return read_regular_file(path, MAX_FILE_BYTES)
    except IsADirectoryError:
        raise DigitsError("is a directory") from None
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
            _check_decoded_size(image)
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


def _check_decoded_size(image: Image.Image) -> None:
    """Refuse an image whose decoded pixels would take more than MAX_DECODED_BYTES: the pixel
    budget alone lets a small file of many 16-bit or colour pixels take hundreds of MB."""
    width, height = image.size
    # Pillow keeps a pixel in 1 byte (1, L, P), 2 (I;16 modes) or 4 (every other mode).
    per_pixel = 1 if image.mode in ("1", "L", "P") else 2 if image.mode.startswith("I;16") else 4
    size = width * height * per_pixel
    if size > MAX_DECODED_BYTES:
        raise DigitsError(
            f"image is {width}x{height} {image.mode} pixels ({size / 2**20:.0f} MiB decoded), "
            f"above the limit of {MAX_DECODED_BYTES // 2**20} MiB; refusing to decode it"
        )


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


def to_gray(image: Image.Image, max_side: int) -> np.ndarray:
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
        image = Image.fromarray(to_uint8(gray / full_scale))
    elif mode in ("LA", "La", "RGBA", "RGBa", "PA") or "transparency" in image.info:
        image = shrink(image.convert("RGBA"), max_side)  # before the float copy: bounded memory
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
        image = Image.fromarray(to_uint8(alpha * lum + (1 - alpha) * background))
    elif mode != "L":
        image = (image if mode == "RGB" else image.convert("RGB")).convert("L")
    return np.asarray(shrink(image, max_side))


def shrink(image: Image.Image, max_side: int) -> Image.Image:
    """Area-average ``image`` down so its long side is at most ``max_side``."""
    factor = max(image.size) / max_side
    if factor <= 1:
        return image
    size = (max(1, round(image.width / factor)), max(1, round(image.height / factor)))
    return image.resize(size, Image.Resampling.BOX, reducing_gap=2.0)


def to_uint8(x: np.ndarray) -> np.ndarray:
    return (np.clip(x, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)
