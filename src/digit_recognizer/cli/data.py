"""`digits data fetch | info | show`: get the data, describe it, look at it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from digit_recognizer import data
from digit_recognizer.errors import DigitsError


MAX_GRID = 400  # one matplotlib axes per image: beyond this a grid gets slow and unreadable


def register(subparsers) -> None:
    parser = subparsers.add_parser("data", help="fetch, describe and show the data sets",
                                   description="Fetch, describe and show the data sets.")
    commands = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    def add(name: str, help: str, func):
        p = commands.add_parser(name, help=help, description=help[0].upper() + help[1:] + ".")
        p.add_argument("--dataset", default="mnist", choices=sorted(data.DATASETS), help="data set (default: mnist)")
        p.add_argument("--data-dir", type=Path, default=None,
                       help="cache folder (default: $DIGITS_DATA_DIR, else the user cache dir)")
        p.set_defaults(func=func)
        return p

    p = add("fetch", "download and verify a data set into the cache", run_fetch)
    p.add_argument("--from", dest="source_dir", type=Path, default=None, metavar="DIR",
                   help="take the IDX files (raw or .gz) from this folder instead of the network")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress output")

    p = add("info", "counts per class and split, pixel statistics", run_info)
    p.add_argument("--json", action="store_true", help="print one JSON document")

    p = add("show", "save a PNG grid of labelled samples", run_show)
    p.add_argument("--out", type=Path, default=None, help="PNG file (default: DATASET-samples.png)")
    p.add_argument("--split", default="train", choices=data.SPLITS)
    p.add_argument("--rows", type=int, default=8)
    p.add_argument("--cols", type=int, default=12)
    p.add_argument("--seed", type=int, default=0, help="which samples to show")
    p.add_argument("--samples-dir", type=Path, default=None, metavar="DIR",
                   help="also save each shown sample as DIR/SPLIT-INDEX-LABEL.png (inputs for `digits predict`)")


def run_fetch(args) -> int:
    folder = data.fetch(args.dataset, args.data_dir, args.source_dir, quiet=args.quiet)
    print(folder)
    return 0


def describe(dataset: str, data_dir=None) -> dict:
    """Samples per class and split, and pixel statistics (of pixels/255), as a dict."""
    ds = data.get_dataset(dataset)
    result = {"dataset": ds.name, "folder": str(data.dataset_dir(ds, data_dir)), "classes": ds.classes, "splits": {}}
    for split in data.SPLITS:
        images, labels = data.load(ds, split, data_dir)
        result["splits"][split] = {
            "samples": int(len(labels)),
            "image_shape": list(images.shape[1:]),
            "per_class": np.bincount(labels, minlength=len(ds.classes)).tolist(),
            "pixels": data.pixel_stats(images),
        }
    return result


def run_info(args) -> int:
    info = describe(args.dataset, args.data_dir)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    splits = info["splits"]
    print(f"{info['dataset']}  ({info['folder']})")
    width = max(len(name) for name in [*info["classes"], "class", "total"])
    print(f"  {'class':<{width}}" + "".join(f"{split:>10}" for split in splits))
    for c, name in enumerate(info["classes"]):
        print(f"  {name:<{width}}" + "".join(f"{s['per_class'][c]:>10,}" for s in splits.values()))
    print(f"  {'total':<{width}}" + "".join(f"{s['samples']:>10,}" for s in splits.values()))
    for split, s in splits.items():
        px = s["pixels"]
        shape = "x".join(map(str, s["image_shape"]))
        print(f"  {split}: {shape} uint8 images; pixels/255 mean {px['mean']:.4f}, std {px['std']:.4f}, "
              f"range [{px['min']:.0f}, {px['max']:.0f}]")
    return 0


def run_show(args) -> int:
    if not (1 <= args.rows and 1 <= args.cols and args.rows * args.cols <= MAX_GRID):
        raise DigitsError(f"--rows and --cols must be at least 1, and the grid at most {MAX_GRID} images")
    ds = data.get_dataset(args.dataset)
    images, labels = data.load(ds, args.split, args.data_dir)
    count = min(args.rows * args.cols, len(labels))
    picks = np.sort(np.random.default_rng(args.seed).choice(len(labels), size=count, replace=False))
    out = args.out or Path(f"{ds.name}-samples.png")
    save_grid(images[picks], [ds.classes[label] for label in labels[picks]], out, args.cols,
              title=f"{ds.name} {args.split}: {count} random samples (seed {args.seed})")
    print(out)
    if args.samples_dir is not None:
        for path in save_samples(images[picks], labels[picks], picks, args.split, args.samples_dir):
            print(path)
    return 0


def save_samples(images: np.ndarray, labels: np.ndarray, indices: np.ndarray, split: str, folder: Path) -> list[Path]:
    """Save each uint8 (H, W) image as its own greyscale PNG named SPLIT-INDEX-LABEL.png."""
    from PIL import Image

    try:
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for image, label, index in zip(images, labels, indices):
            paths.append(folder / f"{split}-{index:05d}-{label}.png")
            Image.fromarray(image).save(paths[-1])
    except OSError as error:
        raise DigitsError(f"cannot write samples into {folder}: {error.strerror or error}") from None
    return paths


def save_grid(images: np.ndarray, titles: list[str], out: Path, cols: int, title: str = "") -> None:
    """Save uint8 (N, H, W) images as a PNG grid with a caption above each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = -(-len(images) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 0.9, rows * 1.05 + 0.4), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, caption in zip(axes.flat, images, titles):
        ax.imshow(image, cmap="gray", vmin=0, vmax=255)
        ax.set_title(caption, fontsize=7, pad=2)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=100)
    except OSError as error:
        raise DigitsError(f"cannot write {out}: {error.strerror or error}") from None
    except ValueError as error:  # a suffix matplotlib has no writer for
        raise DigitsError(f"cannot save {out}: {error}") from None
    finally:
        plt.close(fig)
