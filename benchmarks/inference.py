"""Latency and throughput of reading a digit from a photo, on one core.

Median latency for a 640x480 JPEG photo of a handwritten digit: preprocessing
alone, the network alone, and the whole ``predict_image`` (from the decoded
image and from the file's bytes); then batch throughput of ``predict_paths``
over a folder of such photos and of the network on ready 28x28 inputs.

    python benchmarks/inference.py [--model MODEL] [--repeats 200] [--files 100]
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

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "realworld"))

import generate  # noqa: E402

from digit_recognizer import modelfile, predict, preprocess  # noqa: E402


def photos(n: int, seed: int = 0) -> list[bytes]:
    """``n`` 640x480 JPEG photos of a printed digit on unevenly lit paper."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        shape = generate.font_shape(str(i % 10), generate.FONTS[i % len(generate.FONTS)], int(rng.integers(90, 250)))
        out.append(generate.photo(shape, rng))
    return out


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
    args = parser.parse_args(argv)

    model = modelfile.load(args.model or modelfile.default_model_path())
    data = photos(1)[0]
    image = preprocess.load_image(data)
    ex = preprocess.extract(image)
    rows = [
        ("decode the JPEG (load_image)", median_ms(lambda: preprocess.load_image(data), args.repeats)),
        ("preprocess a decoded image (extract)", median_ms(lambda: preprocess.extract(image), args.repeats)),
        ("network on its 28x28 input", median_ms(lambda: model.predict_proba(ex.pool), args.repeats)),
        ("predict_image, decoded image", median_ms(lambda: predict.predict_image(model, image), args.repeats)),
        ("predict_image, JPEG bytes", median_ms(lambda: predict.predict_image(model, data), args.repeats)),
    ]
    print(f"640x480 photo, one core, median of {args.repeats}\n")
    print("| step | wall ms | CPU ms |\n|---|---:|---:|")
    for name, (wall, cpu) in rows:
        print(f"| {name} | {wall:.2f} | {cpu:.2f} |")

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


if __name__ == "__main__":
    main()
