"""Files: written so that a crash or a kill never leaves half a file behind, read with a bound."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from digit_recognizer.errors import DigitsError


def atomic_write(path: str | Path, data: bytes | str) -> Path:
    """Write ``data`` to a temporary file beside ``path``, flush it to disk, then rename it over ``path``.

    The rename is atomic on POSIX and Windows: readers see the old file or the new one,
    never a mixture. Text is written as UTF-8.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as error:
        if error.filename is None:  # a full disk or a file-size limit: say which file it hit
            raise OSError(error.errno, error.strerror, str(path)) from None
        raise
    finally:
        tmp.unlink(missing_ok=True)
    return path


def read_regular_file(path: str | Path, limit: int) -> bytes:
    """The bytes of the regular file at ``path`` (symlinks followed), refusing more than ``limit``.

    A device (``/dev/zero``), a FIFO or a socket is refused before anything is read:
    their size says nothing (0) and reading them may never end. The file is opened
    without blocking, so a FIFO with no writer cannot stall the open either, and read
    at most ``limit + 1`` bytes, whatever its size claimed. Raises ``DigitsError``
    without the path (the caller names it) for those cases, ``OSError`` otherwise
    (``FileNotFoundError``, ``PermissionError``, ``IsADirectoryError``, ...).
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
        if not stat.S_ISREG(info.st_mode):
            raise DigitsError("not a regular file (a device, FIFO or socket); refusing to read it")
        too_large = DigitsError(f"file is larger than {_size(limit)}")
        if info.st_size > limit:
            raise too_large
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(fd, min(limit + 1 - size, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:  # it grew while being read
            raise too_large
        return b"".join(chunks)
    finally:
        os.close(fd)


def _size(n: int) -> str:
    return f"{n / 2**30:g} GiB" if n >= 2**30 else f"{n / 2**20:g} MiB" if n >= 2**20 else f"{n} bytes"
