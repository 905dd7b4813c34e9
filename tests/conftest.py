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
