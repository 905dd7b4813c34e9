"""Why the page analysis runs on OpenCV: each image operation it needs, timed on OpenCV,
scikit-image and SciPy, on one core, for a 640x480 photo of a digit on ruled paper.

    python benchmarks/page_ops.py [--repeats 50] [--json PATH]

Needs scikit-image besides the package (pip install scikit-image).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # one core, before NumPy starts its thread pool

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from scipy import ndimage  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "realworld"))

import generate  # noqa: E402
from common import write_json  # noqa: E402

from digit_recognizer import preprocess  # noqa: E402

cv2.setNumThreads(1)


def median_ms(fn, repeats: int) -> float:
    """Median CPU milliseconds of ``fn()`` (CPU time: what a busy machine cannot inflate),
    over ``repeats`` calls, or fewer (at least 3) for an operation that takes seconds."""
    start = time.process_time()
    fn()
    repeats = min(repeats, max(3, int(2.0 / max(time.process_time() - start, 1e-6))))
    times = []
    for _ in range(repeats):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return 1000 * float(np.median(times))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--json", metavar="PATH", help="also write the table to PATH (benchmarks/common.py)")
    args = parser.parse_args(argv)
    try:
        from skimage import filters, measure, morphology, transform
    except ImportError:
        sys.exit("benchmarks/page_ops.py needs scikit-image: pip install scikit-image")

    rng = np.random.default_rng(0)
    shape = generate.font_shape("7", generate.FONTS[0], 200)
    jpeg = generate.page(shape, rng, paper="ruled", size=(480, 640))
    gray = np.asarray(preprocess.load_image(jpeg).convert("L"))
    mask = gray < cv2.adaptiveThreshold(gray, 255, cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY, 31, 10)
    window = 61  # about the opening window the page analysis uses at this size
    square = np.ones((window, window), np.uint8)
    operations = {
        f"grey opening, {window}x{window} square": (
            lambda: cv2.morphologyEx(gray, cv2.MORPH_OPEN, square),
            lambda: morphology.opening(gray, morphology.footprint_rectangle((window, window))),
            lambda: ndimage.grey_opening(gray, size=(window, window)),
        ),
        "connected components, 8-connected, with boxes": (
            lambda: cv2.connectedComponentsWithStats(mask.view(np.uint8), connectivity=8),
            lambda: measure.regionprops(measure.label(mask, connectivity=2)),
            lambda: ndimage.find_objects(ndimage.label(mask, np.ones((3, 3)))[0]),
        ),
        "local threshold, 31x31 (adaptive mean / Sauvola)": (
            lambda: cv2.adaptiveThreshold(gray, 255, cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY, 31, 10),
            lambda: filters.threshold_sauvola(gray, 31),
            lambda: ndimage.uniform_filter(gray.astype(np.float32), 31),
        ),
        "median filter, 31x31": (
            lambda: cv2.medianBlur(gray, 31),
            lambda: filters.median(gray, morphology.footprint_rectangle((31, 31))),
            lambda: ndimage.median_filter(gray, 31),
        ),
        "resize to half, area average": (
            lambda: cv2.resize(gray, (320, 240), interpolation=cv2.INTER_AREA),
            lambda: transform.resize(gray, (240, 320), anti_aliasing=True),
            lambda: ndimage.zoom(gray, 0.5, order=1),
        ),
    }
    rows = []
    for name, (with_cv2, with_skimage, with_scipy) in operations.items():
        times = [median_ms(fn, args.repeats) for fn in (with_cv2, with_skimage, with_scipy)]
        rows.append([name, *(round(t, 3) for t in times), round(times[1] / times[0], 1)])
    print(f"640x480 page, one core, median CPU ms of {args.repeats}\n")
    print("| operation | OpenCV | scikit-image | SciPy | scikit-image / OpenCV |\n|---|---:|---:|---:|---:|")
    for name, a, b, c, ratio in rows:
        print(f"| {name} | {a:.3f} | {b:.3f} | {c:.3f} | {ratio:.1f} |")
    if args.json:
        write_json(args.json, "page_ops", ["operation", "OpenCV ms", "scikit-image ms", "SciPy ms",
                                           "scikit-image / OpenCV"], rows,
                   notes=f"640x480 page, one core, median CPU ms of {args.repeats} "
                         "(SciPy's local threshold: the mean filter alone)")


if __name__ == "__main__":
    main()
