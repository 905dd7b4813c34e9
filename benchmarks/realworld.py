"""Accuracy on realistic images, per category: photos, canvas drawings, print, numbers.

Generates the test set with ``tests/realworld/generate.py`` (MNIST *test*
digits and matplotlib's fonts; never training digits), reads every image with
``predict.predict_paths`` exactly as ``digits predict`` does, and prints a
Markdown table. An image counts as right when the whole reading matches: the
digit for single-digit images (a spurious second digit is wrong), every digit
in order for numbers.

    python benchmarks/realworld.py [--model MODEL] [--per-category 200] [--seed 2026] [--out DIR]
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

from digit_recognizer import predict  # noqa: E402


def reading(result: dict) -> str:
    """What the user is told the image says: the number, the digit, or the error."""
    if "error" in result:
        return f"error: {result['error']}"
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


def table(score: dict[str, tuple[int, int]]) -> str:
    """Markdown: each category, the totals the aims are about, then the harder extras."""
    def row(name, cats, bold=False):
        right = sum(score[c][0] for c in cats if c in score)
        total = sum(score[c][1] for c in cats if c in score)
        if total:
            mark = "**" if bold else ""
            lines.append(f"| {mark}{name}{mark} | {total} | {mark}{100 * right / total:.1f}%{mark} |")

    lines = ["| category | images | accuracy |", "|---|---:|---:|"]
    for c in generate.SINGLE + generate.NUMBERS:
        row(c, [c])
    row("all single digits", generate.SINGLE, bold=True)
    row("all numbers (exact)", generate.NUMBERS, bold=True)
    for c in generate.HARDER:
        row(f"{c} (harder; not in the totals)", [c])
    return "\n".join(lines)


def main(argv=None) -> None:
    from digit_recognizer import data, modelfile

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model file (default: the shipped model)")
    parser.add_argument("--per-category", type=int, default=200)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--out", default=None, help="keep the generated images here")
    parser.add_argument("--show-failures", action="store_true")
    args = parser.parse_args(argv)

    model = modelfile.load(args.model or modelfile.default_model_path())
    images, labels = data.load("mnist", "test")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out or tmp)
        labels_csv = generate.generate(out, images, labels, args.per_category, args.seed)
        start = time.perf_counter()
        failures: list = []
        score = evaluate(model, labels_csv, failures)
        seconds = time.perf_counter() - start
    print(table(score))
    n = sum(t for _, t in score.values())
    print(f"\n{n} images, seed {args.seed}, {seconds:.1f} s ({1000 * seconds / n:.1f} ms per image)")
    if args.show_failures:
        for path, label, got in failures:
            print(f"{path}: expected {label}, read {got}")


if __name__ == "__main__":
    main()
