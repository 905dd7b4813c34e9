"""Fetching through mirrors (a local HTTP server on 127.0.0.1), the cache and --from DIR.

Whatever goes wrong, the cache must never hold a bad file under a real name.
"""

import gzip
import hashlib
import os
import socket
import threading
import time
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from digit_recognizer import data
from digit_recognizer.data import fetching as fetch_module
from digit_recognizer.errors import DigitsError


class Mirror:
    """A local mirror serving ``NAME.gz``; ``behaviour[NAME]`` lists what the next requests get.

    Behaviours: "ok", "corrupt" (valid gzip of altered bytes), "drop" (full
    Content-Length, half the body, then the connection closes), "html" (a 200
    page that is not gzip), "missing" (404). The last entry repeats.
    """

    def __init__(self, folder):
        self.gz = {p.name: gzip.compress(p.read_bytes()) for p in folder.iterdir()}
        self.raw = {p.name: p.read_bytes() for p in folder.iterdir()}
        self.behaviour: dict[str, list[str]] = {}
        self.requests: list[str] = []
        mirror = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                name = self.path.rsplit("/", 1)[-1].removesuffix(".gz")
                mirror.requests.append(name)
                plan = mirror.behaviour.get(name, ["ok"])
                what = plan.pop(0) if len(plan) > 1 else plan[0]
                if what == "missing" or name not in mirror.gz:
                    self.send_error(404)
                    return
                body = mirror.gz[name]
                if what == "corrupt":
                    raw = bytearray(mirror.raw[name])
                    raw[-1] ^= 0xFF
                    body = gzip.compress(bytes(raw))
                elif what == "html":
                    body = b"<html><body>Service temporarily moved</body></html>"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2] if what == "drop" else body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/files/"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def mirror_for(tmp_path, monkeypatch):
    monkeypatch.setattr(fetch_module, "RETRY_BACKOFF_S", 0.0)
    mirrors = []

    def start(folder):
        mirrors.append(Mirror(folder))
        return mirrors[-1]

    yield start
    for m in mirrors:
        m.close()


def _cache_files(folder):
    """Every entry in a data set's cache folder, hidden ones included."""
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def _assert_cache_holds_only_good_files(folder, dataset):
    for name in _cache_files(folder):
        assert name in dataset.sha256, f"unexpected {name} in the cache"
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == dataset.sha256[name]


def test_happy_path_then_cache_hit(tiny_dataset, mirror_for, tmp_path):
    dataset, source = tiny_dataset()
    mirror = mirror_for(source)
    dataset = replace(dataset, mirrors=(mirror.url,))
    folder = data.fetch(dataset, tmp_path / "cache", quiet=True)
    assert folder == tmp_path / "cache" / "tiny"
    assert _cache_files(folder) == sorted(dataset.files)
    _assert_cache_holds_only_good_files(folder, dataset)
    assert sorted(mirror.requests) == sorted(dataset.files)

    images, labels = data.load(dataset, "train", tmp_path / "cache")
    assert images.shape == (30, 28, 28) and images.dtype == np.uint8
    np.testing.assert_array_equal(labels, np.arange(30) % 10)

    data.fetch(dataset, tmp_path / "cache", quiet=True)
    assert len(mirror.requests) == 4                       # served from the cache, no new request


def test_leftovers_of_a_killed_download_are_removed(tiny_dataset, mirror_for, tmp_path):
    """A fetch killed mid-download leaves its temporary file or folder; the next fetch removes
    those that stopped changing long ago, and leaves a running fetch's fresh ones alone."""
    dataset, source = tiny_dataset()
    dataset = _with_mirrors(dataset, mirror_for(source).url)
    folder = tmp_path / "cache" / "tiny"
    folder.mkdir(parents=True)
    old_part, old_dir = folder / ".train-images-idx3-ubyte.k1ll3d.part", folder / ".channel-k1ll3d"
    fresh_part = folder / ".train-labels-idx1-ubyte.running.part"
    for path in (old_part, fresh_part):
        path.write_bytes(b"half a download")
    old_dir.mkdir()
    (old_dir / "package.deb").write_bytes(b"half a package")
    long_ago = time.time() - 2 * fetch_module.STALE_SECONDS
    for path in (old_part, old_dir):
        os.utime(path, (long_ago, long_ago))
    data.fetch(dataset, tmp_path / "cache", quiet=True)
    assert _cache_files(folder) == sorted([*dataset.files, fresh_part.name])


def _with_mirrors(dataset, *urls):
    return replace(dataset, mirrors=urls)


@pytest.mark.parametrize("behaviour, message", [
    ("corrupt", "checksum mismatch"),
    ("drop", "connection closed with"),
    ("html", "not a gzip file"),
    ("missing", "HTTP 404"),
])
def test_bad_download_never_reaches_the_cache(tiny_dataset, mirror_for, tmp_path, behaviour, message):
    dataset, source = tiny_dataset()
    mirror = mirror_for(source)
    dataset = _with_mirrors(dataset, mirror.url)
    mirror.behaviour["train-images-idx3-ubyte"] = [behaviour]
    with pytest.raises(DigitsError, match=message) as error:
        data.fetch(dataset, tmp_path / "cache", quiet=True)
    assert "train-images-idx3-ubyte" in str(error.value) and "\n" not in str(error.value)
    folder = tmp_path / "cache" / "tiny"
    assert "train-images-idx3-ubyte" not in _cache_files(folder)
    assert len(_cache_files(folder)) == 3                   # the good files are kept, nothing half-written
    _assert_cache_holds_only_good_files(folder, dataset)
    expected_attempts = fetch_module.RETRIES if behaviour == "drop" else 1   # only transport errors are retried
    assert mirror.requests.count("train-images-idx3-ubyte") == expected_attempts


def test_dropped_connection_is_retried(tiny_dataset, mirror_for, tmp_path):
    dataset, source = tiny_dataset()
    mirror = mirror_for(source)
    mirror.behaviour["train-images-idx3-ubyte"] = ["drop", "drop", "ok"]
    folder = data.fetch(_with_mirrors(dataset, mirror.url), tmp_path / "cache", quiet=True)
    assert mirror.requests.count("train-images-idx3-ubyte") == 3
    _assert_cache_holds_only_good_files(folder, dataset)
    assert len(_cache_files(folder)) == 4


def test_next_mirror_after_a_corrupt_one(tiny_dataset, mirror_for, tmp_path):
    dataset, source = tiny_dataset()
    bad, good = mirror_for(source), mirror_for(source)
    bad.behaviour = {name: ["corrupt"] for name in dataset.files}
    folder = data.fetch(_with_mirrors(dataset, bad.url, good.url), tmp_path / "cache", quiet=True)
    assert len(bad.requests) == 4 and len(good.requests) == 4
    _assert_cache_holds_only_good_files(folder, dataset)
    assert len(_cache_files(folder)) == 4


def test_unreachable_mirror_is_skipped_for_the_other_files(tiny_dataset, mirror_for, tmp_path):
    with socket.socket() as s:          # a port nobody listens on: connection refused
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/"
    dataset, source = tiny_dataset()
    good = mirror_for(source)
    folder = data.fetch(_with_mirrors(dataset, dead, good.url), tmp_path / "cache", quiet=True)
    assert len(_cache_files(folder)) == 4
    with pytest.raises(DigitsError, match="could not fetch tiny"):
        data.fetch(_with_mirrors(dataset, dead), tmp_path / "other", quiet=True)


def test_a_bad_file_in_the_cache_is_replaced(tiny_dataset, mirror_for, tmp_path):
    dataset, source = tiny_dataset()
    mirror = mirror_for(source)
    dataset = _with_mirrors(dataset, mirror.url)
    folder = data.fetch(dataset, tmp_path / "cache", quiet=True)
    (folder / "t10k-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x00")
    data.fetch(dataset, tmp_path / "cache", quiet=True)
    assert mirror.requests.count("t10k-labels-idx1-ubyte") == 2
    _assert_cache_holds_only_good_files(folder, dataset)


def test_from_dir_takes_raw_and_gz_and_nothing_else(tiny_dataset, tmp_path):
    dataset, source = tiny_dataset()
    labels = source / "train-labels-idx1-ubyte"
    labels.with_suffix(".gz").write_bytes(gzip.compress(labels.read_bytes()))
    labels.unlink()
    folder = data.fetch(dataset, tmp_path / "cache", source_dir=source, quiet=True)
    assert _cache_files(folder) == sorted(dataset.files)
    _assert_cache_holds_only_good_files(folder, dataset)


def test_data_dir_defaults_to_the_environment_variable(tiny_dataset, tmp_path, monkeypatch):
    monkeypatch.setenv("DIGITS_DATA_DIR", str(tmp_path / "env-cache"))
    dataset, source = tiny_dataset()
    assert data.default_data_dir() == tmp_path / "env-cache"
    assert data.fetch(dataset, source_dir=source, quiet=True) == tmp_path / "env-cache" / "tiny"


def test_no_source_left_gives_one_actionable_line(tiny_dataset, tmp_path):
    dataset, _ = tiny_dataset()
    with pytest.raises(DigitsError) as error:
        data.fetch(dataset, tmp_path / "cache", quiet=True)
    message = str(error.value)
    assert "\n" not in message and "--from DIR" in message
    assert _cache_files(tmp_path / "cache" / "tiny") == []
