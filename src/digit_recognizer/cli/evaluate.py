"""`digits evaluate`: accuracy, per-class scores and confusions of a model on a data split."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from digit_recognizer import data
from digit_recognizer.errors import DigitsError


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "evaluate", help="measure a model on a data split (metrics, confusion matrix, report)",
        description="Measure a model on a data split: accuracy, loss, precision/recall/F1 per class, "
                    "the confusion matrix; optionally write metrics.json, plots and report.html.")
    p.add_argument("model", nargs="?", type=Path, default=None, metavar="MODEL",
                   help="model file (default: the pretrained model shipped with the package)")
    p.add_argument("--dataset", choices=sorted(data.DATASETS), default=None,
                   help="data set (default: the one the model was trained on)")
    p.add_argument("--split", choices=data.SPLITS, default="test", help="(default: test)")
    p.add_argument("--data-dir", type=Path, default=None,
                   help="cache folder (default: $DIGITS_DATA_DIR, else the user cache dir)")
    p.add_argument("--json", action="store_true", help="print one JSON document with every metric")
    p.add_argument("--out", type=Path, default=None, metavar="DIR",
                   help="write metrics.json, confusion_matrix.png, misclassified.png and report.html here")
    p.add_argument("--batch-size", type=int, default=1000, metavar="N", help="images per forward pass (default: 1000)")
    p.add_argument("--sweeps", action="store_true",
                   help="also measure accuracy as the images are rotated, scaled, thinned or thickened, "
                        "noised and blurred (curves in the report)")
    p.add_argument("--sweep-size", type=int, default=2000, metavar="N",
                   help="images (a seeded random subset of the split) the sweeps use (default: 2000)")
    p.set_defaults(func=run)


def run(args) -> int:
    from digit_recognizer import evaluation, modelfile

    if args.batch_size < 1:
        raise DigitsError("--batch-size must be at least 1")
    if args.sweep_size < 1:
        raise DigitsError("--sweep-size must be at least 1")
    model_path = args.model or modelfile.default_model_path()
    model = modelfile.load(args.model)  # None: the shipped model, with its own message if missing
    ds = data.get_dataset(args.dataset or model.metadata.get("dataset") or "mnist")
    if model.classes not in (list(ds.classes), list(ds.classes) + [modelfile.NOT_A_DIGIT]):
        raise DigitsError(f"{model_path} predicts classes {', '.join(model.classes)}, "
                          f"but {ds.name} has {', '.join(ds.classes)}; pick the matching --dataset")
    images, labels = data.load(ds, args.split, args.data_dir, quiet=args.json)
    metrics = {"model": str(model_path), "dataset": ds.name, "split": args.split,
               **evaluation.evaluate(model, images, labels, args.batch_size)}
    if args.sweeps:
        from digit_recognizer import robustness

        keep = robustness.subset(labels, args.sweep_size)
        metrics["sweep_n"] = len(keep)
        metrics["sweeps"] = robustness.sweeps(model, images[keep], labels[keep])

    written = None
    if args.out is not None:
        from digit_recognizer import report  # matplotlib loads only when figures are wanted

        history = report.read_history(Path(model_path).parent / "history.csv")
        try:
            written = report.write_run_artifacts(args.out, history, metrics, images, labels, model)
        except OSError as error:
            raise DigitsError(f"cannot write the report into {args.out}: {error.strerror or error}") from None

    if args.json:
        json.dump(metrics, sys.stdout)
        sys.stdout.write("\n")
    else:
        print(format_metrics(metrics))
        if written:
            print(f"\nreport: {written['report']}")
    return 0


def format_metrics(metrics: dict) -> str:
    """A readable summary: headline, per-class table and the confusion matrix."""
    classes = metrics["classes"]
    n, errors = metrics["n"], len(metrics["misclassified"])
    lines = [
        f"model     {metrics['model']}",
        f"data      {metrics['dataset']} {metrics['split']}, {n:,} images",
        f"accuracy  {100 * metrics['accuracy']:.2f}%  ({errors:,} error{'s' if errors != 1 else ''}"
        + (f", of which {round(metrics['refused'] * n):,} answered \"not a digit\")" if "refused" in metrics else ")"),
        f"loss      {metrics['loss']:.4f}  (mean cross-entropy)",
        f"ECE       {metrics['ece']:.4f}  (expected calibration error, 15 bins)",
        "",
    ]
    if metrics.get("sweeps"):
        lines.append(f"robustness sweeps ({metrics['sweep_n']:,} images): accuracy per level")
        for name, sweep in metrics["sweeps"].items():
            cells = "  ".join(f"{r['level']:g}: {100 * r['accuracy']:.1f}%" for r in sweep["levels"])
            lines.append(f"  {name:<9}  {cells}  ({sweep['unit']})")
        lines.append("")
    width = max(7, *(len(c) for c in classes), len("weighted avg"))
    lines.append(f"{'class':<{width}}  {'precision':>9}  {'recall':>7}  {'f1':>7}  {'support':>8}")
    rows = [(c["class"], c, c["support"]) for c in metrics["per_class"]]
    rows += [("macro avg", metrics["macro_avg"], n), ("weighted avg", metrics["weighted_avg"], n)]
    for i, (name, s, support) in enumerate(rows):
        if i == len(metrics["per_class"]):
            lines.append("")
        lines.append(f"{name:<{width}}  {s['precision']:>9.4f}  {s['recall']:>7.4f}  {s['f1']:>7.4f}  {support:>8,}")

    cm = metrics["confusion_matrix"]
    cell = max(5, len(str(max(max(row) for row in cm))) + 1)
    columns, row_names = classes, classes
    if max(len(c) for c in classes) >= cell:  # long names: number the columns, name the rows
        columns = [str(k) for k in range(len(classes))]
        row_names = [f"{k} {c}" for k, c in enumerate(classes)]
    label = max(len(r) for r in row_names) + 1
    lines += ["", "confusion matrix (rows: true class, columns: predicted class)",
              " " * label + "".join(f"{c:>{cell}}" for c in columns)]
    lines += [f"{name:<{label}}" + "".join(f"{v:>{cell}}" for v in row) for name, row in zip(row_names, cm)]
    return "\n".join(lines)
