"""Generated non-digits (the "not a digit" class) and the printed digits trained beside them."""

import numpy as np
import pytest
from scipy import ndimage

from digit_recognizer.data import negatives
from digit_recognizer.errors import DigitsError

DRAWN_KINDS = ("glyphs", "strokes", "blobs", "noise")  # the kinds needing no data set


def _mnist_style(images):
    """Each image has ink, and its centre of mass lies near the 28x28 frame's centre."""
    for image in images:
        assert image.dtype == np.uint8 and image.shape == (28, 28) and image.max() > 100
        cy, cx = ndimage.center_of_mass(image.astype(np.float64))
        assert abs(cy - 13.5) < 3 and abs(cx - 13.5) < 3


def test_generate_takes_the_kinds_in_turn_and_repeats_with_the_seed():
    images, kinds = negatives.generate(12, DRAWN_KINDS, seed=3)
    assert list(kinds) == [0, 1, 2, 3] * 3
    _mnist_style(images[kinds != 3])  # noise fills the frame: its centre is anywhere
    again, _ = negatives.generate(12, DRAWN_KINDS, seed=3)
    np.testing.assert_array_equal(images, again)
    other, _ = negatives.generate(12, DRAWN_KINDS, seed=4)
    assert not np.array_equal(images, other)


def test_held_out_kinds_are_other_kinds():
    assert not set(negatives.TRAIN_KINDS) & set(negatives.HELDOUT_KINDS)
    assert not set(negatives.TRAIN_FONTS) & set(negatives.HELDOUT_FONTS)
    with pytest.raises(DigitsError, match="unknown kind"):
        negatives.generate(1, ("letters",))


def test_no_glyph_reads_as_a_digit():
    assert not set("0123456789OoQDIl|iZzSsBbgqT") & set(negatives.GLYPHS)


def test_printed_digits_are_labelled_mnist_style_and_repeat_with_the_seed():
    images, labels = negatives.printed_digits(20, seed=1)
    assert list(labels) == list(range(10)) * 2
    _mnist_style(images)
    np.testing.assert_array_equal(images, negatives.printed_digits(20, seed=1)[0])
    # a "1" is narrow and a "0" wide, as in MNIST
    width = lambda image: np.ptp(np.flatnonzero(image.max(axis=0) > 64))  # noqa: E731
    assert width(images[1]) < width(images[0])


def test_training_images_do_not_depend_on_the_page_reader(monkeypatch):
    # The page reader's photo heuristics change as it improves; the non-digits and printed
    # digits a recipe trains on must not, or `digits train` would not repeat a model.
    from digit_recognizer.preprocess import pipeline

    before = negatives.generate(10, seed=3)[0], negatives.printed_digits(5, seed=4)[0]

    def no_reader(*args, **kwargs):
        raise AssertionError("the page reader was used")

    monkeypatch.setattr(pipeline, "extract", no_reader)
    after = negatives.generate(10, seed=3)[0], negatives.printed_digits(5, seed=4)[0]
    assert all(np.array_equal(a, b) for a, b in zip(before, after))
