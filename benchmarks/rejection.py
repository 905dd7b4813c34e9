"""How often the model refuses: non-digits it never trained on, and real-looking digits.

    python benchmarks/rejection.py --json benchmarks/results/rejection.json

Four measurements of the same model (default: the shipped one):

  held-out non-digits   the kinds ``data.negatives.HELDOUT_KINDS`` (Computer Modern
                        letters, unseen clothing, closed scribbles, stars and lattices,
                        thresholded smooth noise), as 28x28 network inputs
  photographed          the same kinds drawn as photos and canvas drawings
                        (``tests/realworld/generate.py``) and read end to end by
                        ``predict.predict_image``, as a user's file would be
  MNIST test            the share of the 10,000 test digits answered "not a digit"
  realistic digits      the realistic digit images of ``tests/realworld/generate.py``
                        (photos, canvas drawings, print, numbers, pages), end to end

A non-digit counts as refused when the answer is "not a digit" (or preprocessing
finds no digit at all, reported apart); a digit counts as refused on "not a digit".
None of these images, nor any image of these kinds, is used in training.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests" / "realworld"))

import generate  # noqa: E402  (tests/realworld/generate.py)
from common import write_json  # noqa: E402

from digit_recognizer import data, evaluation, modelfile, predict  # noqa: E402
from digit_recognizer.data import negatives  # noqa: E402
from digit_recognizer.errors import DigitsError  # noqa: E402


def held_out_inputs(model, per_kind: int, seed: int) -> dict[str, float]:
    """Share refused per held-out kind, on 28x28 network inputs."""
    kinds = negatives.HELDOUT_KINDS
    images, which = negatives.generate(per_kind * len(kinds), kinds, seed=seed)
    refused = np.asarray(model.predict_proba(images)).argmax(axis=1) == model.not_a_digit_index
    return {kind: float(refused[which == k].mean()) for k, kind in enumerate(kinds)}


def photographed(model, per_kind: int, seed: int) -> dict[str, dict]:
    """Per held-out kind: shares answered "not a digit", "no digit found", or a digit, end to end."""
    kinds = negatives.HELDOUT_KINDS
    rng = np.random.default_rng(seed + 1)
    counts = {kind: {"not a digit": 0, "no digit found": 0, "digit": 0} for kind in kinds}
    for k, drawing in negatives.drawings(per_kind * len(kinds), kinds, seed=seed):
        ink = np.asarray(drawing, np.float32) / 255.0
        source = generate.photo(ink, rng) if rng.random() < 0.5 else generate.canvas(ink, rng)
        try:
            result = predict.predict_image(model, source)
            outcome = "not a digit" if result.get("error") == predict.NOT_A_DIGIT else "digit"
        except DigitsError:
            outcome = "no digit found"
        counts[kinds[k]][outcome] += 1
    return {kind: {key: value / per_kind for key, value in c.items()} for kind, c in counts.items()}


def realistic_digits(model, per_category: int, seed: int) -> dict[str, tuple[int, int, int]]:
    """Per category of tests/realworld: (images, refused, flagged low_confidence)."""
    images, labels = data.load("mnist", "test", quiet=True)
    out: dict[str, list[int]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        labels_csv = generate.generate(Path(tmp), images, labels, per_category, seed)
        import csv

        with open(labels_csv) as f:
            rows = list(csv.DictReader(f))
        results = predict.predict_paths(model, [Path(tmp) / r["path"] for r in rows])
        for row, result in zip(rows, results):
            c = out.setdefault(row["category"], [0, 0, 0])
            c[0] += 1
            c[1] += result.get("error") == predict.NOT_A_DIGIT
            c[2] += bool(result.get("low_confidence"))
    return {k: tuple(v) for k, v in out.items()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None, help="model file (default: the shipped model)")
    p.add_argument("--per-kind", type=int, default=300, help="non-digits per held-out kind (default: 300)")
    p.add_argument("--photos-per-kind", type=int, default=60,
                   help="photographed non-digits per held-out kind (default: 60)")
    p.add_argument("--per-category", type=int, default=30,
                   help="realistic digit images per category (default: 30)")
    p.add_argument("--seed", type=int, default=2027, help="not the seeds used in training")
    p.add_argument("--json", metavar="PATH", help="also write the table to PATH (benchmarks/common.py)")
    args = p.parse_args(argv)

    model = modelfile.load(args.model)
    if model.not_a_digit_index is None:
        print("this model has no \"not a digit\" class: it never refuses", file=sys.stderr)
        return 1
    start = time.perf_counter()
    inputs = held_out_inputs(model, args.per_kind, args.seed)
    photos = photographed(model, args.photos_per_kind, args.seed)
    test_images, test_labels = data.load("mnist", "test", quiet=True)
    mnist = evaluation.evaluate(model, test_images, test_labels)
    digits = realistic_digits(model, args.per_category, args.seed)

    rows = []
    for kind in negatives.HELDOUT_KINDS:
        rows.append(["non-digits, 28x28 inputs", kind, args.per_kind, round(100 * inputs[kind], 2), ""])
    for kind, shares in photos.items():
        rows.append(["non-digits, photographed", kind, args.photos_per_kind,
                     round(100 * shares["not a digit"], 2), round(100 * shares["no digit found"], 2)])
    rows.append(["digits", "MNIST test", mnist["n"], round(100 * mnist["refused"], 2), ""])
    n_real = sum(v[0] for v in digits.values())
    for category, (n, refused, _) in digits.items():
        rows.append(["digits, realistic", category, n, round(100 * refused / n, 2), ""])
    refused_real = sum(v[1] for v in digits.values())
    low = sum(v[2] for v in digits.values())

    width = max(len(r[1]) for r in rows)
    print(f"{'set':<26} {'kind':<{width}} {'images':>7} {'refused %':>10} {'no digit found %':>17}")
    for r in rows:
        print(f"{r[0]:<26} {r[1]:<{width}} {r[2]:>7} {r[3]:>10} {r[4]:>17}")
    all_inputs = np.mean(list(inputs.values()))
    all_photos = np.mean([s["not a digit"] + s["no digit found"] for s in photos.values()])
    print(f"\nheld-out non-digits refused: {100 * all_inputs:.1f}% as inputs, {100 * all_photos:.1f}% "
          f"photographed (\"not a digit\" or \"no digit found\"); digits refused: MNIST test "
          f"{100 * mnist['refused']:.2f}%, realistic {100 * refused_real / n_real:.2f}% of {n_real} "
          f"({100 * low / n_real:.1f}% flagged low confidence); {time.perf_counter() - start:.0f} s")
    if args.json:
        write_json(args.json, "rejection", ["set", "kind", "images", "refused %", "no digit found %"], rows,
                   notes=f"seed {args.seed}; held-out non-digits refused {100 * all_inputs:.1f}% (inputs), "
                         f"{100 * all_photos:.1f}% (photographed); realistic digits refused "
                         f"{100 * refused_real / n_real:.2f}% of {n_real}, low confidence {100 * low / n_real:.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
