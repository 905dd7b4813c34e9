"""Latency and throughput of reading a digit from a photo, on one core.

Median latency for a 640x480 JPEG photo of a printed digit: preprocessing
alone, the network alone, and the whole ``predict_image`` (from the decoded
image and from the file's bytes); the same for a 2000x1500 phone photo of a
whole ruled notebook page with three lines of handwritten numbers; then batch
throughput of ``predict_paths`` over a folder of 640x480 photos and of the
network on ready 28x28 inputs. OpenCV and BLAS are held to one thread.

    python benchmarks/inference.py [--model MODEL] [--repeats 200] [--files 100] [--json PATH]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # one core, before NumPy starts its thread pool

import argparse  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

cv2.setNumThreads(1)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "realworld"))

import generate  # noqa: E402
from common import write_json  # noqa: E402

from digit_recognizer import modelfile, predict, preprocess  # noqa: E402


def photos(n: int, seed: int = 0) -> list[bytes]:
    """``n`` 640x480 JPEG photos of a printed digit on unevenly lit paper."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        shape = generate.font_shape(str(i % 10), generate.FONTS[i % len(generate.FONTS)], int(rng.integers(90, 250)))
        out.append(generate.photo(shape, rng))
    return out


def notebook_page(seed: int = 0) -> tuple[bytes, list[str]]:
    """A 2000x1500 JPEG of a ruled notebook page with three lines of handwritten numbers
    (MNIST test digits), and its lines."""
    from digit_recognizer import data

    images, labels = data.load("mnist", "test")
    rng = np.random.default_rng(seed)
    rows, texts = [], []
    for n in (4, 3, 5):
        index = rng.integers(0, len(images), n)
        rows.append(generate.row_of([generate.mnist_shape(images[i], 120) for i in index], rng))
        texts.append("".join(str(int(labels[i])) for i in index))
    ink = generate.stack_lines(rows, rng)
    return generate.page(ink, rng, paper="ruled", size=(1500, 2000), fill=(0.5, 0.5)), texts


def median_ms(fn, repeats: int) -> tuple[float, float]:
    """Median wall-clock and CPU milliseconds of ``fn()`` (CPU time is what a busy machine
    cannot inflate by running other processes)."""
    fn()  # warm up
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return 1000 * float(np.median(wall)), 1000 * float(np.median(cpu))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model file (default: the shipped model)")
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--files", type=int, default=100)
    parser.add_argument("--json", metavar="PATH", help="also write the table to PATH (benchmarks/common.py)")
    args = parser.parse_args(argv)

    model = modelfile.load(args.model or modelfile.default_model_path())
    table = []
    for label, data in (("640x480 photo", photos(1)[0]), ("2000x1500 ruled page, 3 lines", notebook_page()[0])):
        image = preprocess.load_image(data)
        ex = preprocess.extract(image)
        table += [
            (label, "decode the JPEG (load_image)", *median_ms(lambda: preprocess.load_image(data), args.repeats)),
            (label, "preprocess a decoded image (extract)", *median_ms(lambda: preprocess.extract(image), args.repeats)),
            (label, f"network on its {len(ex.pool)} 28x28 inputs", *median_ms(
                lambda: model.predict_proba(ex.pool), args.repeats)),
            (label, "predict_image, decoded image", *median_ms(lambda: predict.predict_image(model, image), args.repeats)),
            (label, "predict_image, JPEG bytes", *median_ms(lambda: predict.predict_image(model, data), args.repeats)),
        ]
    print(f"one core (OpenCV and BLAS at one thread), median of {args.repeats}\n")
    print("| image | step | wall ms | CPU ms |\n|---|---|---:|---:|")
    for label, name, wall, cpu in table:
        print(f"| {label} | {name} | {wall:.2f} | {cpu:.2f} |")

    with tempfile.TemporaryDirectory() as tmp:
        for i, jpeg in enumerate(photos(args.files, seed=1)):
            Path(tmp, f"{i:04d}.jpg").write_bytes(jpeg)
        start = time.perf_counter()
        results = predict.predict_paths(model, [tmp])
        seconds = time.perf_counter() - start
    assert len(results) == args.files
    batch = np.random.default_rng(0).random((1000, 28, 28), dtype=np.float32)
    start = time.perf_counter()
    model.predict_proba(batch)
    net_seconds = time.perf_counter() - start
    print("\n| batch | per second |\n|---|---:|")
    print(f"| predict_paths over {args.files} photo files | {args.files / seconds:.0f} images |")
    print(f"| network on 1000 ready 28x28 inputs | {1000 / net_seconds:.0f} digits |")
    if args.json:
        rows = [[label, name, round(wall, 2), round(cpu, 2)] for label, name, wall, cpu in table]
        rows += [["640x480 photos", f"predict_paths over {args.files} files, images per second",
                  round(args.files / seconds), None],
                 ["ready 28x28 inputs", "network on 1000, digits per second", round(1000 / net_seconds), None]]
        write_json(args.json, "inference", ["image", "step", "wall ms", "CPU ms"], rows,
                   notes=f"one core (OpenCV and BLAS at one thread), median of {args.repeats}; "
                         "CPU ms is what other processes on a busy machine cannot inflate")


if __name__ == "__main__":
    main()
