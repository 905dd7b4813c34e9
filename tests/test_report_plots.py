"""The figure style: every plot renders, reads in grayscale, and leaves global matplotlib state alone."""

import subprocess
import sys

import matplotlib as mpl
import numpy as np
import pytest
from matplotlib.figure import Figure

from digit_recognizer import plotting

DIGITS = [str(d) for d in range(10)]


def test_colour_maps_keep_a_monotonic_lightness():
    # Printed in grayscale, a colour map still reads if its luminance only ever increases.
    for name in (plotting.IMAGE_CMAP, plotting.MATRIX_CMAP, plotting.SALIENCY_CMAP, plotting.ACTIVATION_CMAP):
        rgb = mpl.colormaps[name](np.linspace(0, 1, 256))[:, :3]
        luminance = rgb @ np.array([0.2126, 0.7152, 0.0722])
        assert np.all(np.diff(luminance) > 0), name
    # Train and validation curves differ by line style and marker, not only by colour.
    assert plotting.TRAIN_STYLE["linestyle"] != plotting.VAL_STYLE["linestyle"]
    assert plotting.TRAIN_STYLE["marker"] != plotting.VAL_STYLE["marker"]


@pytest.mark.slow
def test_style_is_scoped_and_pyplot_never_loaded():
    before = dict(mpl.rcParams)
    with plotting.style():
        assert mpl.rcParams["savefig.dpi"] == plotting.STYLE["savefig.dpi"]
    fig = plotting.plot_samples(np.zeros((3, 28, 28), np.uint8), [0, 1, 2])
    assert fig._repr_png_().startswith(b"\x89PNG")  # how Jupyter shows it inline, without pyplot
    assert dict(mpl.rcParams) == before
    code = "import sys, digit_recognizer.plotting as p, numpy as np; p.plot_curves([]); " \
           "sys.exit('matplotlib.pyplot' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


@pytest.mark.parametrize("make", [
    lambda: plotting.plot_curves([{"epoch": 1, "loss": 1.0, "accuracy": 0.5, "val_loss": 1.1, "val_accuracy": 0.4,
                                   "lr": 0.01, "seconds": 1.0}]),
    lambda: plotting.plot_curves([]),
    lambda: plotting.plot_confusion_matrix(np.eye(3, dtype=int) * 5, ["a", "b", "c"], normalize=True),
    lambda: plotting.plot_confusion_matrix(np.zeros((10, 10), int), DIGITS),  # empty rows, no division warning
    lambda: plotting.plot_misclassified(np.zeros((0, 28, 28), np.uint8), [], [], [], DIGITS),
    lambda: plotting.plot_filters(np.random.default_rng(0).normal(size=(6, 1, 5, 5))),
    lambda: plotting.plot_feature_maps(np.random.default_rng(0).random((4, 14, 14))),
    lambda: plotting.plot_class_distribution({"train": [5, 6, 7], "test": [1, 2, 3]}, ["a", "b", "c"]),
], ids=["curves", "curves-empty", "cm-normalised", "cm-empty", "misclassified-none", "filters", "maps", "classes"])
def test_every_plot_renders_to_png(make, tmp_path):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig = make()
        assert isinstance(fig, Figure)
        path = plotting.save(fig, tmp_path / "sub" / "figure.png")
    assert path.read_bytes().startswith(b"\x89PNG")


def test_confusion_matrix_cells_are_annotated():
    cm = np.array([[3, 1], [0, 4]])
    fig = plotting.plot_confusion_matrix(cm, ["cat", "dog"])
    ax = fig.axes[0]
    assert sorted(t.get_text() for t in ax.texts) == ["0", "1", "3", "4"]
    assert ax.get_xlabel() == "Predicted class" and ax.get_ylabel() == "True class"
    normalised = plotting.plot_confusion_matrix(cm, ["cat", "dog"], normalize=True).axes[0]
    assert sorted(t.get_text() for t in normalised.texts) == ["0.00", "0.25", "0.75", "1.00"]
