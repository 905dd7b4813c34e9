#!/usr/bin/env python
"""Recognise the digit in an image: the classic entry point, the same code as `digits predict`.

    python src/inference.py --image_path path/to/image.png

Both spellings of every flag work (--image_path and --image-path). The model
defaults to the one shipped with the package; --model picks another.
"""

from __future__ import annotations

import argparse
import sys

from digit_recognizer.cli import run_command
from digit_recognizer.extras import run_script
from digit_recognizer.cli.predict import run

PROG = "python src/inference.py"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("--image_path", "--image-path", dest="paths", nargs="+", required=True,
                        metavar="PATH", help="image file(s) or folder(s)")
    parser.add_argument("--model", default=None, help="model file (default: the shipped model)")
    parser.add_argument("--top_k", "--top-k", dest="top_k", type=int, default=3, metavar="K")
    parser.add_argument("--json", action="store_true", help="print one JSON list on stdout")
    parser.add_argument("--show_steps", "--show-steps", dest="show_steps", metavar="DIR",
                        help="write the intermediate images to DIR")
    parser.add_argument("--csv", metavar="FILE", help="also write the results as a CSV table")
    parser.add_argument("--deskew", action="store_true", help="straighten slanted digits first")
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_command(lambda args: run(args, prog=PROG), build_parser().parse_args(argv), PROG)


if __name__ == "__main__":
    sys.exit(run_script(main, PROG))
