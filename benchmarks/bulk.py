"""Bulk reading: files/s of `digits predict` in one process and on a local Ray, in one run.

Writes N scan-like images (MNIST test digits enlarged, dark on a light noisy page,
every seventh with two digits), then reads the folder with, in turn:

    one process   digits predict DIR --json
    one process, one BLAS thread      the same with OPENBLAS_NUM_THREADS=1 (as each Ray actor runs)
    Ray, 1 worker digits predict DIR --cluster ray --workers 1 --out T.parquet
    Ray, 2 workers                                 --workers 2

each as a fresh command, timed from start to exit (``end to end``: Python, Ray's
start and its actors included) and, for Ray, also over the reading alone (from the
summary line: actors' start included, Ray's start not). The configurations take
turns, round after round, so that a load that comes and goes on a shared machine
falls on all of them. Goal: 2 workers >= 1.8x one process.

    python benchmarks/bulk.py [--files 10000] [--rounds 1] [--json PATH]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from common import write_json  # noqa: E402

SUMMARY = re.compile(r"(\d+) files read in ([\d.]+) s .* after ([\d.]+) s starting Ray \(driver CPU ([\d.]+) s\)")


def make_scans(folder: Path, n: int) -> None:
    import numpy as np
    from PIL import Image

    from digit_recognizer import data

    images, _ = data.load("mnist", "test", quiet=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        digits = images[[i % len(images)]] if i % 7 else images[[i % len(images), (i + 1000) % len(images)]]
        ink = np.concatenate(list(digits), axis=1).astype(np.float32)
        page = 235 - ink * (180 / 255) + rng.normal(0, 6, ink.shape)
        picture = Image.fromarray(np.clip(page, 0, 255).astype(np.uint8)).resize(
            (ink.shape[1] * 4, ink.shape[0] * 4), Image.BILINEAR)
        picture.save(folder / f"scan{i:05d}.png")


def run(command: list[str], **env_extra) -> tuple[float, str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
           **env_extra}
    env.pop("RAY_ADDRESS", None)  # a local Ray, whatever this shell points at
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "digit_recognizer", *command], stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True, env=env)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"benchmarks/bulk.py: {' '.join(command)} failed:\n{done.stderr[-2000:]}")
    return elapsed, done.stderr


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python benchmarks/bulk.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=10_000, help="images to read (default 10000)")
    parser.add_argument("--rounds", type=int, default=1, help="turns of the configurations (default 1)")
    parser.add_argument("--json", metavar="PATH", help="also write the table with common.write_json")
    args = parser.parse_args(argv)

    configs = {"one process": None, "one process, one BLAS thread": 0, "Ray, 1 worker": 1, "Ray, 2 workers": 2}
    wall = {name: [] for name in configs}
    reading = {name: [] for name in configs}
    startup, driver_cpu = [], []
    load = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "scans"
        folder.mkdir()
        make_scans(folder, args.files)
        for _ in range(args.rounds):
            for name, workers in configs.items():
                load.append(os.getloadavg()[0])
                if not workers:
                    one_thread = {} if workers is None else {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
                    elapsed, _ = run(["predict", str(folder), "--json"], **one_thread)
                    reading[name].append(elapsed)
                else:
                    out = Path(tmp) / f"ray{workers}.parquet"
                    out.unlink(missing_ok=True)
                    elapsed, err = run(["predict", str(folder), "--cluster", "ray", "--workers", str(workers),
                                        "--out", str(out)])
                    files, seconds, started, cpu = SUMMARY.search(err).groups()
                    assert int(files) == args.files
                    reading[name].append(float(seconds))
                    startup.append(float(started))
                    driver_cpu.append(float(cpu) / float(seconds))
                wall[name].append(elapsed)
                print(f"{name}: {args.files / elapsed:.0f} files/s end to end", file=sys.stderr)

    base = args.files / statistics.median(wall["one process"])
    table = []
    for name in configs:
        end_to_end = args.files / statistics.median(wall[name])
        alone = args.files / statistics.median(reading[name])
        table.append([name, round(end_to_end, 1), round(end_to_end / base, 2), round(alone, 1),
                      round(alone / base, 2)])
    columns = ["configuration", "files/s end to end", "x one process", "files/s reading", "x one process (reading)"]
    print(f"{args.files} files, {args.rounds} round(s); load average before each run: "
          f"{', '.join(f'{x:.1f}' for x in load)}; {os.cpu_count()} cores")
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in table:
        print("| " + " | ".join(str(x) for x in row) + " |")
    print(f"Ray's start: {statistics.median(startup):.1f} s; driver CPU: "
          f"{100 * statistics.median(driver_cpu):.0f}% of one core while reading")
    if args.json:
        write_json(args.json, "bulk", columns, table, notes=(
            f"{args.files} generated scans; one process = digits predict DIR --json; Ray = local Ray "
            f"(--cluster ray --workers N); end to end includes Python's and Ray's start "
            f"({statistics.median(startup):.1f} s), reading excludes Ray's start; the driver used "
            f"{100 * statistics.median(driver_cpu):.0f}% of one core while reading; load average before "
            f"each run: {', '.join(f'{x:.1f}' for x in load)} (a shared machine)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
