"""Accuracy on realistic images, per category: photos, canvas drawings, print, numbers.

Generates the test set with ``tests/realworld/generate.py`` (MNIST *test*
digits and matplotlib's fonts; never training digits), reads every image with
``predict.predict_paths`` exactly as ``digits predict`` does, and prints a
Markdown table. An image counts as right when the whole reading matches: the
digit for single-digit images (a spurious second digit is wrong), every digit
in order for numbers, every line and every digit in order for several lines.

    python benchmarks/realworld.py [--model MODEL] [--per-category 200] [--seed 2026] [--out DIR]
                                   [--categories ruled,lines] [--json PATH]
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "realworld"))

import generate  # noqa: E402  (tests/realworld/generate.py)
from common import write_json  # noqa: E402

from digit_recognizer import predict  # noqa: E402


def reading(result: dict) -> str:
    """What the user is told the image says: the lines (joined as the labels join them),
    the number, the digit, or the error."""
    if "error" in result:
        return f"error: {result['error']}"
    if "lines" in result:
        return generate.LINE_BREAK.join(result["lines"])
    return result.get("number", str(result["digit"]))


def evaluate(model, labels_csv: Path, failures: list | None = None) -> dict[str, tuple[int, int]]:
    """{category: (right, total)} for the images listed in ``labels_csv``."""
    rows = list(csv.DictReader(open(labels_csv)))
    root = Path(labels_csv).parent
    results = predict.predict_paths(model, [root / r["path"] for r in rows])
    score = defaultdict(lambda: [0, 0])
    for row, result in zip(rows, results):
        ok = reading(result) == row["label"]
        score[row["category"]][0] += ok
        score[row["category"]][1] += 1
        if not ok and failures is not None:
            failures.append((row["path"], row["label"], reading(result)))
    return {c: tuple(v) for c, v in score.items()}


def rows(score: dict[str, tuple[int, int]]) -> list[tuple[str, int, float]]:
    """(category or total, images, accuracy %): each category, then the totals."""
    out = []

    def row(name, cats):
        right = sum(score[c][0] for c in cats if c in score)
        total = sum(score[c][1] for c in cats if c in score)
        if total:
            out.append((name, total, round(100 * right / total, 1)))

    for c in generate.CATEGORIES:
        row(c, [c])
    row("all single digits", generate.SINGLE + generate.HARDER + generate.PAGE_SINGLE)
    row("all numbers (exact)", generate.NUMBERS + generate.PAGE_NUMBERS)
    row("all several lines (exact)", generate.LINES)
    return out


def table(score: dict[str, tuple[int, int]]) -> str:
    """Markdown: each category, then the totals (in bold)."""
    lines = ["| category | images | accuracy |", "|---|---:|---:|"]
    for name, total, accuracy in rows(score):
        mark = "**" if name.startswith("all ") else ""
        lines.append(f"| {mark}{name}{mark} | {total} | {mark}{accuracy:.1f}%{mark} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    from digit_recognizer import data, modelfile

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model file (default: the shipped model)")
    parser.add_argument("--per-category", type=int, default=200)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--out", default=None, help="keep the generated images here")
    parser.add_argument("--categories", default=",".join(generate.CATEGORIES),
                        help="comma-separated categories (default: all)")
    parser.add_argument("--show-failures", action="store_true")
    parser.add_argument("--json", metavar="PATH", help="also write the table to PATH (benchmarks/common.py)")
    args = parser.parse_args(argv)

    model = modelfile.load(args.model or modelfile.default_model_path())
    images, labels = data.load("mnist", "test")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out or tmp)
        labels_csv = generate.generate(out, images, labels, args.per_category, args.seed,
                                       args.categories.split(","))
        start = time.perf_counter()
        failures: list = []
        score = evaluate(model, labels_csv, failures)
        seconds = time.perf_counter() - start
    print(table(score))
    n = sum(t for _, t in score.values())
    print(f"\n{n} images, seed {args.seed}, {seconds:.1f} s ({1000 * seconds / n:.1f} ms per image)")
    if args.json:
        write_json(args.json, "realworld", ["category", "images", "accuracy %"], rows(score),
                   notes=f"exact readings of generated images (MNIST test digits), seed {args.seed}")
    if args.show_failures:
        for path, label, got in failures:
            print(f"{path}: expected {label}, read {got}")


if __name__ == "__main__":
    main()
