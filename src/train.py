#!/usr/bin/env python
"""Train a digit recogniser: the classic entry point, the same code as `digits train`.

    python src/train.py --epochs 20 --batch_size 64 --learning_rate 0.001

Both spellings of every flag work (--batch_size and --batch-size). Run
`python src/train.py --help` for the rest (--model, --augment, --out, --resume, ...).
"""

from __future__ import annotations

import argparse
import sys

from digit_recognizer.cli import run_command
from digit_recognizer.extras import run_script
from digit_recognizer.cli.train import add_arguments, run

PROG = "python src/train.py"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    add_arguments(parser, underscore_aliases=True)
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_command(lambda a: run(a, prog=PROG), build_parser().parse_args(argv), PROG)


if __name__ == "__main__":
    sys.exit(run_script(main, PROG))
