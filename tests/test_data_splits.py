"""Stratified, seeded train/validation split and per-batch normalisation."""

import numpy as np
import pytest

from digit_recognizer import data
from digit_recognizer.errors import DigitsError


def _labels(seed=0, n=1000):
    # unbalanced classes, shuffled
    labels = np.repeat(np.arange(10), np.linspace(40, 160, 10).astype(int))[:n]
    return np.random.default_rng(seed).permutation(labels).astype(np.uint8)


@pytest.mark.parametrize("val_size", [1, 37, 100, 0.1, 0.25])
def test_split_partitions_and_stratifies(val_size):
    labels = _labels()
    n = len(labels)
    train_idx, val_idx = data.train_val_split(labels, val_size, seed=3)
    expected = round(val_size * n) if val_size < 1 else val_size
    assert len(val_idx) == expected and len(train_idx) == n - expected
    assert np.array_equal(np.sort(np.concatenate([train_idx, val_idx])), np.arange(n))
    # every class within one sample of its exact share
    share = np.bincount(labels, minlength=10) * expected / n
    assert np.all(np.abs(np.bincount(labels[val_idx], minlength=10) - share) < 1)


def test_split_is_seeded():
    labels = _labels()
    a = data.train_val_split(labels, 100, seed=1)
    b = data.train_val_split(labels, 100, seed=1)
    c = data.train_val_split(labels, 100, seed=2)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[1], c[1])


def test_split_zero_gives_empty_validation():
    train_idx, val_idx = data.train_val_split(_labels(), 0, seed=0)
    assert len(val_idx) == 0 and len(train_idx) == len(_labels())


@pytest.mark.parametrize("val_size", [-1, 1000, 5000, 2.5])
def test_split_refuses_bad_sizes(val_size):
    with pytest.raises(DigitsError, match="validation"):
        data.train_val_split(_labels(), val_size, seed=0)


def test_split_on_real_mnist(mnist_train):
    _, labels = mnist_train
    train_idx, val_idx = data.train_val_split(labels, 5000, seed=0)
    assert len(val_idx) == 5000 and len(np.intersect1d(train_idx, val_idx)) == 0
    share = np.bincount(labels) * 5000 / 60000
    assert np.all(np.abs(np.bincount(labels[val_idx]) - share) < 1)


def test_normalize_formula_shape_and_dtype():
    images = np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    out = data.normalize(images, 0.1307, 0.3081)
    assert out.shape == (5, 1, 28, 28) and out.dtype == np.float32
    np.testing.assert_allclose(out[:, 0], (images / 255 - 0.1307) / 0.3081, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(data.normalize(images[:, None], 0.1307, 0.3081), out)


def test_normalize_with_registry_stats_centres_mnist(mnist_train):
    images, _ = mnist_train
    ds = data.DATASETS["mnist"]
    batch = data.normalize(images[:10000], ds.mean, ds.std)
    assert abs(batch.mean()) < 0.02 and abs(batch.std() - 1) < 0.02


def test_normalize_refuses_wrong_shape():
    with pytest.raises(ValueError, match="shape"):
        data.normalize(np.zeros((2, 3, 28, 28), np.uint8), 0.5, 0.5)


def test_load_refuses_unknown_split_and_dataset(tmp_path):
    with pytest.raises(DigitsError, match="unknown split"):
        data.load("mnist", "validation", tmp_path)
    with pytest.raises(DigitsError, match="unknown data set"):
        data.load("cifar", "train", tmp_path)
