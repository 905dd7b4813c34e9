#!/usr/bin/env python
"""Train a digit recogniser: the classic entry point, the same code as `digits train`.

    python src/train.py --epochs 20 --batch_size 64 --learning_rate 0.001

Both spellings of every flag work (--batch_size and --batch-size). Run
`python src/train.py --help` for the rest (--model, --augment, --out, --resume, ...).
"""

from __future__ import annotations

import argparse
import sys

from digit_recognizer.cli.train import add_arguments, run
from digit_recognizer.errors import DigitsError

PROG = "python src/train.py"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    add_arguments(parser, underscore_aliases=True)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args, prog=PROG)
    except DigitsError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
