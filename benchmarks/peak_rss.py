"""Peak resident memory (RSS) of a command, by default a full-MNIST training run.

    python benchmarks/peak_rss.py                       # digits train --model cnn --epochs 1
    python benchmarks/peak_rss.py --json benchmarks/results/peak_rss.json
    python benchmarks/peak_rss.py -- digits train --model cnn --epochs 12 --out runs/x

Runs the command as a child process and reads the kernel's high-water mark of its
resident set (getrusage RUSAGE_CHILDREN, ru_maxrss). Goal for a full-MNIST training
run: <= 1 GB. The default run trains into a temporary folder that is removed at the
end, so its output (which names files in that folder) is not shown.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import write_json

GOAL_MB = 1024


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        usage="python benchmarks/peak_rss.py [--json PATH] [-- COMMAND ...]",
        epilog="Without a command: a one-epoch full-MNIST training of the cnn in a temporary folder.")
    parser.add_argument("--json", metavar="PATH", help="also write the table as JSON (see benchmarks/common.py)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command to measure, after --")
    args = parser.parse_args(argv)
    if args.command and args.command[0] == "--":
        args.command = args.command[1:]
    return args


def measure(command, quiet):
    """(exit code, seconds) of ``command``. When ``quiet`` its output, which names files in a
    folder removed afterwards, is shown only if it fails."""
    start = time.perf_counter()
    if not quiet:
        return subprocess.run(command).returncode, time.perf_counter() - start
    done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode:
        sys.stderr.write(done.stderr)
    return done.returncode, time.perf_counter() - start


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            command = args.command or [sys.executable, "-m", "digit_recognizer", "train", "--model", "cnn",
                                       "--epochs", "1", "--quiet", "--out", str(Path(tmp) / "run")]
            code, seconds = measure(command, quiet=not args.command)
    except FileNotFoundError:
        print(f"peak_rss.py: error: no such command: {args.command[0]}", file=sys.stderr)
        return 2
    shown = " ".join(args.command) if args.command else "digits train --model cnn --epochs 1 (temporary run folder)"
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # kB on Linux
    print(f"peak RSS {peak_mb:.0f} MB (goal: <= {GOAL_MB} MB for a full-MNIST training run), "
          f"{seconds:.0f} s, exit {code}: {shown}")
    if args.json and code == 0:
        write_json(args.json, "peak_rss", ["command", "peak RSS (MB)", "goal (MB)", "seconds"],
                   [[shown, round(peak_mb), GOAL_MB, round(seconds)]],
                   notes="Peak resident memory of the largest process the command ran "
                         "(getrusage RUSAGE_CHILDREN, ru_maxrss).")
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
