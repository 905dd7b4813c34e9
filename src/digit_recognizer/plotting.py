"""The project's figures: one style for the HTML report, the notebooks and ``digits explain``.

Every function returns a :class:`matplotlib.figure.Figure` built without pyplot, so no
GUI backend is ever selected and no window opens; :func:`save` writes PNG through Agg.
The style is applied with :func:`style`, a context manager, never by changing global
matplotlib state at import. Colour maps keep a monotonic lightness (viridis, cividis,
magma, gray) and train/validation curves differ by line style as well as colour, so the
figures still read when printed in grayscale.
"""

from __future__ import annotations

import contextlib
import io
import math
from pathlib import Path

import matplotlib as mpl
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

IMAGE_CMAP = "gray"  # digits: white on black, as the network sees them
MATRIX_CMAP = "viridis"  # confusion matrices, probabilities
SALIENCY_CMAP = "magma"  # gradients magnitudes
ACTIVATION_CMAP = "cividis"  # feature maps
TRAIN_STYLE = {"color": "#1f4e79", "linestyle": "-", "marker": "o"}
VAL_STYLE = {"color": "#d95f02", "linestyle": "--", "marker": "s"}

STYLE = {
    "figure.dpi": 100,
    "savefig.dpi": 120,
    "savefig.bbox": "tight",
    "figure.facecolor": "white",
    "savefig.facecolor": "white",
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.titleweight": "bold",
    "figure.titlesize": 13,
    "figure.titleweight": "bold",
    "axes.labelsize": 10,
    "axes.grid": False,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "grid.alpha": 0.3,
    "grid.linestyle": ":",
    "legend.frameon": False,
    "lines.linewidth": 1.8,
    "lines.markersize": 4,
    "image.interpolation": "nearest",
}


@contextlib.contextmanager
def style():
    """Apply the project's figure style inside a ``with`` block only."""
    with mpl.rc_context(STYLE):
        yield


class StyledFigure(Figure):
    """A Figure that Jupyter shows inline (as a PNG in the project style) without pyplot."""

    def _repr_png_(self) -> bytes:
        return to_png(self)


def figure(**kwargs) -> Figure:
    """A new figure (``Figure`` keyword arguments) in the project style, shown inline in notebooks.

    Draw on it inside ``with style():`` so fonts and lines match the other figures.
    """
    fig = StyledFigure(**kwargs)
    FigureCanvasAgg(fig)  # attach an Agg canvas: saving needs no pyplot and no GUI backend
    return fig


def to_png(fig: Figure) -> bytes:
    """The figure as PNG bytes, rendered with the project style."""
    buffer = io.BytesIO()
    with style():
        fig.savefig(buffer, format="png")
    return buffer.getvalue()


def save(fig: Figure, path) -> Path:
    """Write ``fig`` to ``path`` (PNG by extension) with the project style; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with style():
        fig.savefig(path)
    return path


def _hide_ticks(ax) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def _as_images(images) -> np.ndarray:
    """(N, 28, 28) or (N, 1, 28, 28), uint8 or float -> (N, H, W) for imshow."""
    images = np.asarray(images)
    if images.ndim == 4 and images.shape[1] == 1:
        images = images[:, 0]
    if images.ndim != 3:
        raise ValueError(f"expected images of shape (N, H, W) or (N, 1, H, W), got {images.shape}")
    return images


def _draw_grid(container, images: np.ndarray, titles, ncols: int, cmap: str, scale: str) -> None:
    """Fill ``container`` (a figure or subfigure) with a grid of images, ``ncols`` per row.

    ``scale="shared"``: one intensity range for all (0..255 for uint8, else 0..max(1, max));
    ``scale="each"``: every image stretched to its own min..max (filters, feature maps).
    """
    nrows = math.ceil(len(images) / ncols)
    axes = np.atleast_1d(container.subplots(nrows, ncols, squeeze=False)).ravel()
    shared = (0, 255 if images.dtype == np.uint8 else max(1.0, float(images.max())))
    for k, ax in enumerate(axes):
        _hide_ticks(ax)
        if k >= len(images):
            ax.set_visible(False)
            continue
        vmin, vmax = shared if scale == "shared" else (None, None)
        ax.imshow(images[k], cmap=cmap, vmin=vmin, vmax=vmax)
        if titles is not None:
            ax.set_title(titles[k], fontsize=8, fontweight="normal", pad=2)


def plot_image_grid(images, titles=None, ncols: int = 10, suptitle: str | None = None,
                    cmap: str = IMAGE_CMAP, cell: float = 1.1, scale: str = "shared") -> Figure:
    """A grid of small images with an optional title above each (the building block of the others).

    ``images`` (N, H, W) or (N, 1, H, W); ``scale`` as in :func:`_draw_grid`.
    """
    images = _as_images(images)
    n = len(images)
    with style():
        if n == 0:
            fig = figure(figsize=(4, 1.2))
            fig.text(0.5, 0.5, "No images to show", ha="center", va="center")
        else:
            ncols = max(1, min(ncols, n))
            nrows = math.ceil(n / ncols)
            lines = max((str(t).count("\n") + 1 for t in titles), default=0) if titles is not None else 0
            fig = figure(figsize=(ncols * cell, nrows * (cell + 0.18 * lines) + (0.4 if suptitle else 0)),
                          layout="constrained")
            _draw_grid(fig, images, titles, ncols, cmap, scale)
        if suptitle:
            fig.suptitle(suptitle)
    return fig


def plot_filters(weight, title: str = "First-layer filters") -> Figure:
    """Convolution kernels (out, in, kh, kw) of the first input channel, each on its own gray scale."""
    weight = np.asarray(weight)
    return plot_image_grid(weight[:, 0], [f"filter {k}" for k in range(len(weight))], ncols=8,
                           suptitle=title, scale="each")


def plot_feature_maps(maps, title: str = "Feature maps") -> Figure:
    """Activations (C, H, W) of one image, each channel on its own colour scale."""
    maps = np.asarray(maps)
    return plot_image_grid(maps, [f"channel {k}" for k in range(len(maps))], ncols=8, suptitle=title,
                           cmap=ACTIVATION_CMAP, scale="each")


def plot_class_distribution(counts: dict, classes, title: str = "Images per class") -> Figure:
    """Grouped bars of images per class, one group member per split: ``{"train": [...], "test": [...]}``.

    Bars differ by hatch as well as colour, so splits stay apart in grayscale.
    """
    n_groups = len(counts)
    positions = np.arange(len(classes))
    width = 0.8 / max(1, n_groups)
    colours = [TRAIN_STYLE["color"], VAL_STYLE["color"], "#7a7a7a", "#b3b3b3"]
    hatches = ["", "//", "..", "xx"]
    with style():
        fig = figure(figsize=(max(6.0, 0.6 * len(classes) + 2), 3.6), layout="constrained")
        ax = fig.subplots()
        for g, (split, values) in enumerate(counts.items()):
            ax.bar(positions + (g - (n_groups - 1) / 2) * width, values, width, label=split,
                   color=colours[g % len(colours)], hatch=hatches[g % len(hatches)], edgecolor="white")
        long_names = max(len(str(c)) for c in classes) > 3
        ax.set_xticks(positions, [str(c) for c in classes], rotation=45 if long_names else 0,
                      ha="right" if long_names else "center")
        ax.set_xlabel("Class")
        ax.set_ylabel("Images")
        ax.set_title(title)
        ax.grid(True, axis="y")
        ax.legend(title="Split", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return fig


def plot_samples(images, labels=None, classes=None, ncols: int = 10, title: str | None = "Samples") -> Figure:
    """Grid of images titled by their class name (``classes[label]``) when labels are given."""
    titles = None
    if labels is not None:
        titles = [str(classes[int(y)]) if classes is not None else str(int(y)) for y in labels]
    return plot_image_grid(images, titles, ncols=ncols, suptitle=title)


def plot_misclassified(images, true, pred, confidence, classes, ncols: int = 8,
                       title: str = "Misclassified test images") -> Figure:
    """Grid of misclassified images titled 'true -> predicted (confidence)'."""
    titles = [f"{classes[int(t)]}\n\u2192 {classes[int(p)]} ({c:.2f})"
              for t, p, c in zip(true, pred, confidence)]
    subtitle = f"{title}: true \u2192 predicted (confidence)" if len(titles) else f"{title}: none"
    return plot_image_grid(images, titles, ncols=ncols, suptitle=subtitle, cell=1.4)


def _series(rows, key) -> np.ndarray:
    """Column ``key`` of history rows as float, NaN where missing or empty."""
    values = []
    for row in rows:
        value = row.get(key)
        values.append(np.nan if value in (None, "") else float(value))
    return np.asarray(values, dtype=np.float64)


def plot_curves(history_rows, title: str = "Training curves") -> Figure:
    """Loss and accuracy per epoch (train solid, validation dashed) and the learning rate.

    ``history_rows``: dicts with epoch, loss, accuracy, val_loss, val_accuracy, lr.
    """
    rows = list(history_rows)
    epochs = _series(rows, "epoch") if rows else np.array([])
    with style():
        fig = figure(figsize=(12, 3.6), layout="constrained")
        ax_loss, ax_acc, ax_lr = fig.subplots(1, 3)
        for ax, key, label in ((ax_loss, "loss", "Cross-entropy loss"), (ax_acc, "accuracy", "Accuracy")):
            for prefix, name, line_style in (("", "train", TRAIN_STYLE), ("val_", "validation", VAL_STYLE)):
                values = _series(rows, prefix + key) if rows else np.array([])
                if values.size and not np.all(np.isnan(values)):
                    ax.plot(epochs, values, label=name, **line_style)
            ax.set_xlabel("Epoch")
            ax.set_ylabel(label)
            ax.set_title(label)
            ax.grid(True)
            if ax.lines:
                ax.legend()
        lr = _series(rows, "lr") if rows else np.array([])
        if lr.size and not np.all(np.isnan(lr)):
            ax_lr.plot(epochs, lr, color="black", marker="o")
            if np.nanmin(lr) > 0 and np.nanmax(lr) / np.nanmin(lr) > 50:
                ax_lr.set_yscale("log")
        ax_lr.set_xlabel("Epoch")
        ax_lr.set_ylabel("Learning rate")
        ax_lr.set_title("Learning rate (end of epoch)")
        ax_lr.grid(True)
        if not rows:
            ax_loss.text(0.5, 0.5, "no history", ha="center", va="center", transform=ax_loss.transAxes)
        for ax in (ax_loss, ax_acc, ax_lr):
            ax.xaxis.get_major_locator().set_params(integer=True)
        fig.suptitle(title)
    return fig


def plot_confusion_matrix(cm, classes, normalize: bool = False, title: str | None = None) -> Figure:
    """Heat map of a confusion matrix (rows true, columns predicted), every cell annotated.

    ``normalize=True`` divides each row by its total, so a cell reads P(predicted | true).
    """
    cm = np.asarray(cm, dtype=np.float64)
    n = cm.shape[0]
    if normalize:
        totals = cm.sum(axis=1, keepdims=True)
        cm = np.divide(cm, totals, out=np.zeros_like(cm), where=totals != 0)
    labels = [str(c) for c in classes]
    long_names = max(len(s) for s in labels) > 3
    with style():
        size = max(5.0, 0.55 * n + 2.5)
        fig = figure(figsize=(size + 1.0, size), layout="constrained")
        ax = fig.subplots()
        vmax = 1.0 if normalize else max(1.0, cm.max())
        image = ax.imshow(cm, cmap=MATRIX_CMAP, vmin=0, vmax=vmax)
        colorbar = fig.colorbar(image, ax=ax, shrink=0.8)
        colorbar.set_label("Fraction of the true class" if normalize else "Number of images")
        ax.set_xticks(range(n), labels, rotation=45 if long_names else 0, ha="right" if long_names else "center")
        ax.set_yticks(range(n), labels)
        ax.set_xlabel("Predicted class")
        ax.set_ylabel("True class")
        ax.set_title(title or ("Confusion matrix (row-normalised)" if normalize else "Confusion matrix (counts)"))
        for spine in ax.spines.values():
            spine.set_visible(False)
        # Annotate each cell; text is dark on the light (high) end of viridis, light elsewhere.
        cmap = mpl.colormaps[MATRIX_CMAP]
        fontsize = 11 if n <= 10 else 8  # readable when the report shows the figure 900 px wide
        for i, j in np.ndindex(cm.shape):
            value = cm[i, j]
            text = f"{value:.2f}" if normalize else f"{int(value)}"
            r, g, b, _ = cmap(value / vmax)
            luminance = 0.2126 * r + 0.7152 * g + 0.0722 * b
            ax.text(j, i, text, ha="center", va="center", fontsize=fontsize,
                    color="black" if luminance > 0.5 else "white")
    return fig


def plot_explanation(image, saliency, feature_maps, top_k, classes, title: str | None = None) -> Figure:
    """What the network looks at, in one figure.

    ``image`` (28, 28) in [0, 1] as the network sees it; ``saliency`` (28, 28) |d score / d pixel|;
    ``feature_maps`` (C, H, W) first-layer activations (up to 16 shown), or (F,) for a dense
    first layer (shown as one square tile); ``top_k`` list of (class index, probability), best first.
    """
    image = np.asarray(image, dtype=np.float32)
    saliency = np.asarray(saliency, dtype=np.float32)
    feature_maps = np.asarray(feature_maps, dtype=np.float32)
    units = None
    if feature_maps.ndim == 1:  # dense units: pad to a square so they read as one tile
        units = feature_maps.size
        side = math.ceil(math.sqrt(units))
        feature_maps = np.pad(feature_maps, (0, side * side - units)).reshape(1, side, side)
    maps = feature_maps[:16]
    ncols = min(8, max(1, len(maps)))
    nrows = max(1, math.ceil(len(maps) / ncols))
    map_height = 1.6 * nrows + 0.5
    with style():
        fig = figure(figsize=(11, 4.2 + map_height), layout="constrained")
        top, bottom = fig.subfigures(2, 1, height_ratios=[4.2, map_height])
        ax_in, ax_sal, ax_top = top.subplots(1, 3, width_ratios=[1, 1.25, 1.1])

        ax_in.imshow(image, cmap=IMAGE_CMAP, vmin=0, vmax=1)
        ax_in.set_title("Network input (28\u00d728)")
        _hide_ticks(ax_in)

        shown = ax_sal.imshow(saliency, cmap=SALIENCY_CMAP, vmin=0)
        ax_sal.set_title("Saliency |\u2202 score / \u2202 pixel|")
        _hide_ticks(ax_sal)
        top.colorbar(shown, ax=ax_sal, shrink=0.8, label="Gradient magnitude")

        names = [str(classes[int(k)]) for k, _ in top_k]
        probs = [float(p) for _, p in top_k]
        positions = np.arange(len(names))[::-1]
        ax_top.barh(positions, probs, color=[TRAIN_STYLE["color"]] + ["#9aa9b8"] * (len(names) - 1))
        ax_top.set_yticks(positions, names)
        ax_top.set_xlim(0, 1)
        ax_top.set_xlabel("Probability")
        ax_top.set_ylabel("Class")
        ax_top.set_title(f"Top {len(names)} predictions")
        for y, p in zip(positions, probs):
            inside = p > 0.75  # label inside long bars so it never leaves the axes
            ax_top.text(p - 0.02 if inside else p + 0.02, y, f"{p:.3f}", va="center",
                        ha="right" if inside else "left", color="white" if inside else "black")

        _draw_grid(bottom, maps, None if units is not None else [f"channel {k}" for k in range(len(maps))],
                   ncols, ACTIVATION_CMAP, "each")
        what = (f"{units} units of the first dense layer" if units is not None
                else f"{len(maps)} of {len(feature_maps)} channels")
        bottom.suptitle(f"First-layer activations ({what})", fontsize=11, fontweight="bold")
        if title:
            fig.suptitle(title)
    return fig


def plot_reliability(bins, ece: float | None = None, title: str = "Reliability diagram") -> Figure:
    """Accuracy against confidence per confidence bin (bars), the diagonal of perfect
    calibration, and how many answers fall in each bin (lower panel, log scale).

    ``bins``: dicts with lower, upper, count, confidence, accuracy (``calibration.reliability``).
    """
    full = [b for b in bins if b["count"]]
    with style():
        fig = figure(figsize=(5.2, 5.6), layout="constrained")
        ax, ax_n = fig.subplots(2, 1, height_ratios=(3, 1), sharex=True)
        ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfect calibration")
        if full:
            width = full[0]["upper"] - full[0]["lower"]
            ax.bar([b["lower"] for b in full], [b["accuracy"] for b in full], width=width, align="edge",
                   color=TRAIN_STYLE["color"], alpha=0.75, edgecolor="white", label="accuracy")
            ax.plot([b["confidence"] for b in full], [b["accuracy"] for b in full], **VAL_STYLE,
                    label="(mean confidence, accuracy)")
            ax_n.bar([b["lower"] for b in full], [b["count"] for b in full], width=width, align="edge",
                     color="grey")
            ax_n.set_yscale("log")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_ylabel("Accuracy")
        ax.grid(True)
        ax.legend(loc="upper left")
        ax.set_title(title if ece is None else f"{title} (ECE {ece:.4f})")
        ax_n.set_xlabel("Confidence (top probability)")
        ax_n.set_ylabel("Answers")
        ax_n.grid(True)
    return fig


def plot_sweeps(sweeps: dict, title: str = "Robustness sweeps") -> Figure:
    """One panel per sweep: accuracy (solid) and, for a model that can refuse, the share
    answered "not a digit" (dashed) against the sweep's level."""
    names = list(sweeps)
    with style():
        fig = figure(figsize=(3.2 * max(len(names), 1), 3.4), layout="constrained")
        axes = np.atleast_1d(fig.subplots(1, max(len(names), 1)))
        for ax, name in zip(axes, names):
            rows = sweeps[name]["levels"]
            levels = [r["level"] for r in rows]
            ax.plot(levels, [r["accuracy"] for r in rows], label="accuracy", **TRAIN_STYLE)
            if all("refused" in r for r in rows):
                ax.plot(levels, [r["refused"] for r in rows], label='"not a digit"', **VAL_STYLE)
            ax.set_ylim(-0.02, 1.02)
            ax.set_title(name)
            ax.set_xlabel(sweeps[name]["unit"])
            ax.grid(True)
        axes[0].set_ylabel("Share of test digits")
        axes[0].legend(loc="lower left")
        fig.suptitle(title)
    return fig
