"""Several fetches of one data set at once, on a cache holding a corrupt file: they take
turns under the data set's lock, none fails, and the cache ends up holding good files only."""

import hashlib
import subprocess
import sys
import threading
from dataclasses import replace

import pytest

from digit_recognizer import data
from digit_recognizer.data import fetching
from test_data_fetch import _assert_cache_holds_only_good_files, mirror_for  # noqa: F401 (a fixture)


def test_concurrent_fetches_on_a_corrupt_cache(tiny_dataset, mirror_for, tmp_path, monkeypatch):
    dataset, source = tiny_dataset()
    dataset = replace(dataset, mirrors=(mirror_for(source).url,))
    folder = data.fetch(dataset, tmp_path / "cache", quiet=True)
    (folder / "t10k-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x00")
    fetching._verified.clear()

    # Every fetch hashes the cache at the same moment (without the lock all of them find the
    # bad file and delete it); under the lock the first one waits here 1 s, then all go on.
    together = threading.Barrier(6)
    hash_file = fetching.sha256_file

    def in_step(path):
        try:
            together.wait(timeout=1)
        except threading.BrokenBarrierError:
            pass
        return hash_file(path)

    monkeypatch.setattr(fetching, "sha256_file", in_step)
    errors = []

    def fetch():
        try:
            data.fetch(dataset, tmp_path / "cache", quiet=True)
        except Exception as error:  # noqa: BLE001 - any failure is the finding
            errors.append(error)

    threads = [threading.Thread(target=fetch) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads)
    assert not errors, errors
    _assert_cache_holds_only_good_files(folder, dataset)


@pytest.mark.slow
def test_fetches_in_other_processes_wait_for_the_lock(tiny_dataset, tmp_path):
    dataset, source = tiny_dataset()
    cache = tmp_path / "cache"
    data.fetch(dataset, cache, source, quiet=True)
    # Another process holds the lock: a fetch here says it waits, and goes on once it is free.
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, filelock; lock = filelock.FileLock(sys.argv[1]); lock.acquire(); "
                               "print('held', flush=True); sys.stdin.readline()", str(cache / ".tiny.lock")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        waited = []
        monkey = threading.Thread(target=lambda: waited.append(data.fetch(dataset, cache, quiet=False)))
        monkey.start()
        monkey.join(3)
        assert monkey.is_alive()  # still waiting after the 1 s before it says so
        holder.stdin.write("\n")
        holder.stdin.flush()
        monkey.join(30)
        assert waited == [cache / "tiny"]
    finally:
        holder.kill()
        holder.wait()
    for name in dataset.files:
        assert hashlib.sha256((cache / "tiny" / name).read_bytes()).hexdigest() == dataset.sha256[name]
