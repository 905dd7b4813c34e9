"""The ``digits`` command: git-style subcommands over the library.

Each subcommand lives in its own module here and exposes
``register(subparsers)``, which adds its parser and sets ``func`` to a
function ``(args) -> int``. This module only dispatches and turns user-facing
errors into one line on stderr.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from digit_recognizer import __version__
from digit_recognizer.errors import DigitsError

SUBCOMMANDS = ("data", "train", "evaluate", "predict", "explain", "serve", "export")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="digits",
        description="Handwritten-digit recognition from first principles.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(f"digit_recognizer.cli.{name}").register(subparsers)
    return parser


def run_command(func, args: argparse.Namespace, prog: str = "digits") -> int:
    """Run ``func(args)``; a user-facing error becomes one line on stderr and a non-zero exit."""
    try:
        return int(func(args) or 0)
    except DigitsError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`digits predict --json | head`): quietly stop writing, as
        # Unix tools do; pointing stdout at /dev/null keeps the interpreter's final flush quiet.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return run_command(args.func, args)
