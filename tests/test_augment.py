"""Augmentation: exact identity at zero ranges, seeded, vectorised, sensible geometry."""

import numpy as np

from digit_recognizer.data.augment import Augmentation, augment, bilinear_sample


def _blob(n=4):
    images = np.zeros((n, 28, 28), np.uint8)
    images[:, 10:18, 12:16] = 255
    return images


def test_zero_ranges_give_the_image_back():
    images = _blob()
    out = augment(images, np.random.default_rng(0), rotation=0, scale=0, shift=0)
    assert out.dtype == np.float32 and out.shape == images.shape
    np.testing.assert_allclose(out, images, atol=1e-3)


def test_same_generator_state_same_batch_and_each_image_differs():
    images = np.repeat(_blob(1), 8, axis=0)
    a = augment(images, np.random.default_rng(5), elastic_alpha=2.0)
    b = augment(images, np.random.default_rng(5), elastic_alpha=2.0)
    np.testing.assert_array_equal(a, b)
    assert len({x.tobytes() for x in a}) == 8  # per-image parameters, not one per batch


def test_pure_shift_moves_the_centre_of_mass():
    images = _blob(200).astype(np.float32)
    out = augment(images, np.random.default_rng(1), rotation=0, scale=0, shift=3)
    cols = np.arange(28)
    com = (out.sum(axis=1) * cols).sum(axis=1) / out.sum(axis=(1, 2))
    base = (images[0].sum(axis=0) * cols).sum() / images[0].sum()
    assert np.abs(com - base).max() <= 3.01 and np.abs(com - base).max() > 2.0
    # ink is conserved for shifts that keep the blob inside the frame
    np.testing.assert_allclose(out.sum(axis=(1, 2)), images.sum(axis=(1, 2)), rtol=1e-4)


def test_bilinear_reads_zero_outside_and_interpolates_inside():
    image = np.arange(16, dtype=np.float32).reshape(1, 4, 4)
    ys = np.array([[[0.5, -5.0, 1.0]]], np.float32)
    xs = np.array([[[0.5, 0.0, 3.0]]], np.float32)
    out = bilinear_sample(image, ys, xs)
    np.testing.assert_allclose(out[0, 0], [(0 + 1 + 4 + 5) / 4, 0.0, 7.0])


def test_channel_axis_and_callable_config():
    aug = Augmentation(rotation=15, elastic_alpha=1.5)
    out = aug(_blob()[:, None], np.random.default_rng(0))
    assert out.shape == (4, 1, 28, 28)
    assert Augmentation(**aug.config()) == aug


def test_low_resolution_is_off_by_default_and_leaves_the_settings_of_earlier_runs():
    images = _blob(8)
    plain = augment(images, np.random.default_rng(3))
    np.testing.assert_array_equal(Augmentation()(images, np.random.default_rng(3)), plain)
    assert "low_res" not in Augmentation().config()
    assert Augmentation(**Augmentation(low_res=0.2).config()) == Augmentation(low_res=0.2)


def test_low_resolution_looks_like_a_small_blurred_digit_in_mnist_style(mnist_test):
    images = mnist_test[0][:64]
    none = dict(rotation=0, scale=0, shift=0)
    sharp = Augmentation(**none)(images, np.random.default_rng(0))
    small = Augmentation(**none, low_res=1.0)(images, np.random.default_rng(0))
    again = Augmentation(**none, low_res=1.0)(images, np.random.default_rng(0))
    np.testing.assert_array_equal(small, again)  # seeded
    assert small.dtype == np.float32 and small.min() >= 0 and np.allclose(small.max(axis=(1, 2)), 255, atol=1e-3)
    yy, xx = np.mgrid[:28, :28]
    centre = [((im * yy).sum() / im.sum(), (im * xx).sum() / im.sum()) for im in small]
    assert np.abs(np.array(centre) - 13.5).max() < 1.5  # centred like MNIST
    # blurred: more of the ink at partial strength, and wider strokes (more pixels inked)
    partial = lambda x: ((x > 40) & (x < 215)).mean()  # noqa: E731
    assert partial(small) > 1.3 * partial(sharp) and (small > 128).mean() > (sharp > 128).mean()
