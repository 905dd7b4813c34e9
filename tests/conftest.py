"""Shared test configuration.

Under ``CI=true`` a skipped test is reported as a failure: optional parts
(torch, chromium, real MNIST) must really be exercised there.
"""

import os

import pytest

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true, which is not allowed: {reason}"


@pytest.fixture(params=["reference", "fast"])
def engine_path(request):
    """Runs a test on each of the engine's paths: its reference layers and its fast path."""
    from digit_recognizer import nn

    with nn.use_fast(request.param == "fast"):
        yield request.param


@pytest.fixture(scope="session")
def mnist_data_dir():
    """The data root holding a verified MNIST (``data_dir=`` for ``data.load``).

    Uses the normal cache ($DIGITS_DATA_DIR, else the user cache dir) and
    fetches through the usual sources when it is not there yet.
    """
    from digit_recognizer import data
    from digit_recognizer.errors import DigitsError

    try:
        return data.fetch("mnist", quiet=True).parent
    except DigitsError as error:
        pytest.skip(f"real MNIST is not available: {error}")


@pytest.fixture(scope="session")
def mnist_train(mnist_data_dir):
    """``(images, labels)`` of the MNIST train split: uint8, shared read-only by all tests."""
    return _read_only(mnist_data_dir, "train")


@pytest.fixture(scope="session")
def mnist_test(mnist_data_dir):
    """``(images, labels)`` of the MNIST test split: uint8, shared read-only by all tests."""
    return _read_only(mnist_data_dir, "test")


def _read_only(data_dir, split):
    from digit_recognizer import data

    images, labels = data.load("mnist", split, data_dir, quiet=True)
    images.flags.writeable = False  # a test that writes into the shared arrays fails loudly
    labels.flags.writeable = False
    return images, labels


TINY_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


@pytest.fixture
def tiny_dataset(tmp_path):
    """Factory for a small synthetic data set in MNIST's layout (30 train, 20 test samples).

    ``make(edit=None, mirrors=())`` writes the four raw IDX files into
    ``tmp_path/source`` and returns ``(Dataset, folder)``; the Dataset's
    checksums are those of the files as written, after ``edit(name, bytes) ->
    bytes`` (if given) has changed them, so a malformed file can pass the
    checksum and reach the IDX reader.
    """
    import hashlib

    import numpy as np

    from digit_recognizer.data import Dataset, write_idx

    def make(edit=None, mirrors=()):
        folder = tmp_path / "source"
        folder.mkdir(exist_ok=True)
        rng = np.random.default_rng(0)
        sha256 = {}
        for split, n in (("train", 30), ("test", 20)):
            arrays = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), (np.arange(n) % 10).astype(np.uint8)
            for name, array in zip(TINY_FILES[split], arrays):
                path = write_idx(folder / name, array)
                if edit is not None:
                    path.write_bytes(edit(name, path.read_bytes()))
                sha256[name] = hashlib.sha256(path.read_bytes()).hexdigest()
        dataset = Dataset(name="tiny", description="synthetic test data", splits=TINY_FILES, sha256=sha256,
                          classes=[str(c) for c in range(10)], mean=0.5, std=0.29, mirrors=tuple(mirrors))
        return dataset, folder

    return make
