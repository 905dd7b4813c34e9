"""`digits predict [--model MODEL] PATH... [--json] [--top-k K] [--show-steps DIR] [--csv FILE]`,
and on Ray: `digits predict DIR_OR_GLOB --cluster ray --out FILE [--resume]` (see ``cli.bulk``).

A thin layer over ``predict.predict_paths``: every input is read even when
others fail; the exit code is 1 when any input failed. An image read and found to be
no digit ("not a digit") is an answer, not a failure.
"""

from __future__ import annotations

import csv
import io
import json
import sys

from digit_recognizer.cli import bulk
from digit_recognizer.errors import DigitsError


def register(subparsers):
    p = subparsers.add_parser(
        "predict",
        help="recognise the digits in image files",
        description="Recognise the digit, or the number, in each image (photos, scans, "
        "canvas drawings). Folders are searched for image files.",
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders")
    p.add_argument("--model", default=None, help="model file (default: the model shipped with the package)")
    p.add_argument("--json", action="store_true", help="print one JSON list on stdout")
    p.add_argument("--top-k", type=int, default=3, metavar="K", help="how many ranked digits to report (default 3)")
    p.add_argument("--show-steps", metavar="DIR", help="write the intermediate images (what the network saw) to DIR")
    p.add_argument("--csv", metavar="FILE", help="also write the results as a CSV table")
    p.add_argument("--deskew", action="store_true", help="straighten slanted digits before recognising them")
    bulk.add_arguments(p)
    p.set_defaults(func=run)


def load_model(path):
    from digit_recognizer import modelfile

    return modelfile.load(path)  # None: the shipped model, with its own message if missing


def run(args, prog: str = "digits") -> int:
    from digit_recognizer import predict

    if args.top_k < 1:
        raise DigitsError("--top-k must be at least 1")
    if bulk.wanted(args):
        return bulk.run(args, prog)
    model = load_model(args.model)
    results = predict.predict_paths(model, args.paths, args.top_k, deskew=args.deskew, steps_dir=args.show_steps)
    if not results:
        raise DigitsError("no image files found in " + ", ".join(args.paths))
    if args.csv:
        write_csv(args.csv, results)
    if args.json:
        sys.stdout.write(json_lines(results))
    else:
        for r in results:
            if predict.failed(r.get("error")):
                print(f"{prog}: error: {printable(r['path'])}: {r['error']}", file=sys.stderr)
            else:
                print(describe(r))
    return 1 if any(predict.failed(r.get("error")) for r in results) else 0


def json_lines(results: list[dict]) -> str:
    """One JSON list with one input's result per line (top-k pairs stay on their line)."""
    return "[\n" + ",\n".join("  " + json.dumps(r) for r in results) + "\n]\n"


def reading(result: dict) -> str:
    """What was read: the class name, the lines (one per line), the number, or the digit."""
    if "lines" in result:
        return "\n".join(result["lines"])
    return result.get("class") or result.get("number") or str(result["digit"])


def describe(result: dict) -> str:
    """For people: ``photo.jpg: 7 (99.8%)``, with the runners-up when unsure; several
    lines of digits are printed one per line under ``page.jpg: 2 lines (97.0%)``;
    ``letter.png: not a digit (96.0%)``."""
    if "error" in result:  # "not a digit", with how sure the model is of that
        return f"{printable(result['path'])}: {result['error']} ({100 * result['not_a_digit']:.1f}%)"
    if "lines" in result:
        head = f"{printable(result['path'])}: {len(result['lines'])} lines ({100 * result['confidence']:.1f}%)"
        line = "\n".join([head] + [f"  {text}" for text in result["lines"]])
        return line + ("  low confidence" if result["low_confidence"] else "")
    line = f"{printable(result['path'])}: {reading(result)} ({100 * result['confidence']:.1f}%)"
    if result["low_confidence"]:
        alternatives = ", ".join(f"{k} {100 * p:.0f}%" for k, p in result["top_k"][1:])
        line += f"  low confidence; next: {alternatives}" if alternatives else "  low confidence"
    return line


def printable(path: str) -> str:
    """A file name for a terminal: bytes that are not UTF-8 shown as \\xNN escapes."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def write_csv(path, results) -> None:
    """The results as a CSV table, written whole or not at all. File names that are not
    valid UTF-8 keep their original bytes (as the file system holds them)."""
    from digit_recognizer.files import atomic_write

    table = io.StringIO(newline="")
    writer = csv.writer(table)
    writer.writerow(["path", "reading", "confidence", "low_confidence", "top_k", "error"])
    for r in results:
        if "error" in r:
            writer.writerow([r["path"], "", "", "", "", r["error"]])
        else:
            top = " ".join(f"{k}:{p}" for k, p in r["top_k"])
            writer.writerow([r["path"], reading(r), r["confidence"], r["low_confidence"], top, ""])
    try:
        atomic_write(path, table.getvalue().encode("utf-8", "surrogateescape"))
    except OSError as error:
        raise DigitsError(f"cannot write {path}: {error.strerror or error}") from None
