"""The IDX file format used by MNIST and Fashion-MNIST, raw or gzip-compressed.

Layout (all integers big-endian)::

    bytes 0-1   zero
    byte  2     dtype code (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64)
    byte  3     number of dimensions d
    then        d uint32 sizes, then prod(sizes) items in row-major order

A file is gzip-compressed when it starts with the gzip magic bytes; a name
ending in ``.gz`` must be. Anything malformed raises ``DigitsError`` with one
line that names the file and what is wrong.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

from digit_recognizer.errors import DigitsError

GZIP_MAGIC = b"\x1f\x8b"

# IDX dtype code -> big-endian NumPy dtype
_CODES = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODE_OF = {dtype.newbyteorder("="): code for code, dtype in _CODES.items()}


def is_gzip(path: str | Path) -> bool:
    """True when the file starts with the gzip magic bytes."""
    with open(path, "rb") as f:
        return f.read(2) == GZIP_MAGIC


def _open(path: Path):
    """Open raw or gzip for reading; refuse a ``.gz`` name whose content is not gzip."""
    gz = is_gzip(path)
    if path.suffix == ".gz" and not gz:
        raise DigitsError(f"{path}: not a gzip file (the name ends in .gz)")
    return gzip.open(path, "rb") if gz else open(path, "rb")


def _read_exactly(f, buffer: memoryview) -> int:
    """Fill ``buffer`` from ``f``; returns how many bytes arrived (less only at end of file)."""
    filled = 0
    while filled < len(buffer):
        n = f.readinto(buffer[filled:])
        if not n:
            break
        filled += n
    return filled


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (raw or gzip) into an array of its own dtype (native byte order).

    uint8 data (images, labels) stays uint8: one allocation of exactly the data's size.
    """
    path = Path(path)
    if not path.is_file():
        raise DigitsError(f"{path}: no such file")
    try:
        with _open(path) as f:
            header = f.read(4)
            if len(header) < 4:
                raise DigitsError(f"{path}: truncated IDX file (no header)")
            zero, code, ndim = struct.unpack(">HBB", header)
            if zero != 0 or code not in _CODES or ndim == 0:
                raise DigitsError(
                    f"{path}: not an IDX file (magic number 0x{header.hex()}; "
                    "expected 0x0000 then a dtype code and a dimension count)"
                )
            dims_raw = f.read(4 * ndim)
            if len(dims_raw) < 4 * ndim:
                raise DigitsError(f"{path}: truncated IDX file (header ends early)")
            shape = struct.unpack(f">{ndim}I", dims_raw)
            dtype = _CODES[code]
            array = np.empty(shape, dtype=dtype)
            expected = array.nbytes
            got = _read_exactly(f, memoryview(array).cast("B")) if expected else 0
            if got < expected:
                raise DigitsError(
                    f"{path}: truncated IDX file (header says {'x'.join(map(str, shape))} "
                    f"{dtype.name} = {expected} data bytes, file has {got})"
                )
            if f.read(1):
                raise DigitsError(f"{path}: IDX file is longer than its header says ({expected} data bytes)")
    except (gzip.BadGzipFile, EOFError, zlib.error) as error:
        raise DigitsError(f"{path}: corrupt gzip data ({error})") from None
    except OSError as error:
        raise DigitsError(f"{path}: cannot read ({error.strerror or error})") from None
    return array if dtype.isnative else array.astype(dtype.newbyteorder("="))


def write_idx(path: str | Path, array: np.ndarray) -> Path:
    """Write ``array`` as IDX; gzip-compressed when ``path`` ends in ``.gz``."""
    path = Path(path)
    array = np.asarray(array)
    code = _CODE_OF.get(array.dtype.newbyteorder("="))
    if code is None:
        raise ValueError(f"IDX cannot store dtype {array.dtype}; use one of uint8, int8, int16, int32, float32, float64")
    if array.ndim == 0 or array.ndim > 255:
        raise ValueError(f"IDX needs 1 to 255 dimensions, got {array.ndim}")
    header = struct.pack(f">HBB{array.ndim}I", 0, code, array.ndim, *array.shape)
    payload = np.ascontiguousarray(array, dtype=_CODES[code]).tobytes()
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wb") as f:
        f.write(header)
        f.write(payload)
    return path
