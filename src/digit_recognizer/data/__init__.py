"""Data: the IDX format, the data set registry, verified fetching and caching, splits.

    images, labels = data.load("mnist", "train")          # uint8 (60000, 28, 28), (60000,)
    train_idx, val_idx = data.train_val_split(labels, 5000, seed=0)
    x = data.normalize(images[batch], ds.mean, ds.std)    # float32 (B, 1, 28, 28)
"""

from digit_recognizer.data.fetching import dataset_dir, default_data_dir, fetch
from digit_recognizer.data.idx import read_idx, write_idx
from digit_recognizer.data.loader import load, normalize, pixel_stats
from digit_recognizer.data.registry import DATASETS, SPLITS, Dataset, PackageChannel, get_dataset
from digit_recognizer.data.splits import train_val_split

__all__ = [
    "DATASETS", "SPLITS", "Dataset", "PackageChannel", "dataset_dir", "default_data_dir", "fetch",
    "get_dataset", "load", "normalize", "pixel_stats", "read_idx", "train_val_split", "write_idx",
]
