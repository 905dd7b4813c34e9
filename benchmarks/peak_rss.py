"""Peak resident memory (RSS) of a command, by default a full-MNIST training run.

    python benchmarks/peak_rss.py                       # digits train --model cnn --epochs 1
    python benchmarks/peak_rss.py -- digits train --model cnn --epochs 15 --out runs/x

Runs the command as a child process and reads the kernel's high-water mark of its
resident set (getrusage RUSAGE_CHILDREN, ru_maxrss). Goal for a full-MNIST training
run: <= 1 GB.
"""

from __future__ import annotations

import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main(argv: list[str]) -> int:
    if argv and argv[0] == "--":
        argv = argv[1:]
    with tempfile.TemporaryDirectory() as tmp:
        command = argv or [sys.executable, "-m", "digit_recognizer", "train", "--model", "cnn",
                           "--epochs", "1", "--quiet", "--out", str(Path(tmp) / "run")]
        start = time.perf_counter()
        code = subprocess.run(command).returncode
        seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # kB on Linux
    print(f"peak RSS {peak_mb:.0f} MB, {seconds:.0f} s, exit {code}: {' '.join(command)}")
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
