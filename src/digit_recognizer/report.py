"""A run's evaluation artifacts: metrics.json, the PNG figures and a self-contained report.html.

report.html carries everything inline (CSS in a <style> block, figures as base64 PNG data
URIs), so it can be mailed, archived or opened from any folder and still reads on its own.
"""

from __future__ import annotations

import base64
import csv
import datetime as _dt
import html
import json
from pathlib import Path

import numpy as np

from digit_recognizer import __version__, plotting
from digit_recognizer.errors import DigitsError
from digit_recognizer.files import atomic_write

MAX_MISCLASSIFIED_SHOWN = 40
INPUT_SHAPE = (1, 1, 28, 28)


def read_history(path) -> list[dict]:
    """Rows of a run's history.csv as dicts of floats (epoch as int); [] if the file is absent."""
    path = Path(path)
    if not path.is_file():
        return []
    rows = []
    try:
        with path.open(newline="") as f:
            for raw in csv.DictReader(f):
                row = {key: (float(value) if value not in (None, "") else None) for key, value in raw.items()}
                if row.get("epoch") is not None:
                    row["epoch"] = int(row["epoch"])
                rows.append(row)
    except (OSError, UnicodeDecodeError, ValueError, TypeError) as error:
        raise DigitsError(f"cannot read the training history {path}: {error}") from None
    return rows


def architecture_rows(net, input_shape=INPUT_SHAPE) -> list[dict]:
    """One row per layer: index, type, constructor arguments, output shape, parameter count.

    Shapes come from pushing one zero image through the layers in inference mode.
    """
    x = np.zeros(input_shape, dtype=np.float32)
    rows = []
    for index, layer in enumerate(net.layers):
        if x is not None:
            try:
                x = layer.forward(x, training=False)
            except ValueError:  # a network built for another input size: leave shapes out
                x = None
        rows.append({
            "index": index,
            "type": type(layer).__name__,
            "config": layer.config(),
            "output_shape": None if x is None else ("N",) + tuple(x.shape[1:]),
            "parameters": int(sum(p.data.size for p in layer.parameters())),
        })
    return rows


# --------------------------------------------------------------------------- HTML

_CSS = """
:root { --ink: #1d2733; --muted: #5b6877; --line: #d9dee4; --accent: #1f4e79; --bad: #a33; }
* { box-sizing: border-box; }
body { font: 15px/1.5 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       color: var(--ink); max-width: 1100px; margin: 2rem auto; padding: 0 1.2rem; }
h1 { font-size: 1.7rem; margin: 0 0 .2rem; }
h2 { font-size: 1.25rem; border-bottom: 2px solid var(--line); padding-bottom: .25rem; margin-top: 2.2rem; }
.sub { color: var(--muted); margin: 0 0 1.2rem; }
.cards { display: flex; flex-wrap: wrap; gap: .8rem; margin: 1rem 0; }
.card { border: 1px solid var(--line); border-radius: 8px; padding: .7rem 1rem; min-width: 150px; }
.card .v { font-size: 1.6rem; font-weight: 700; color: var(--accent); }
.card .k { color: var(--muted); font-size: .85rem; }
table { border-collapse: collapse; margin: .6rem 0; font-size: .92rem; }
th, td { border-bottom: 1px solid var(--line); padding: .3rem .7rem; text-align: left; vertical-align: top; }
th { background: #f3f5f7; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.worst td { color: var(--bad); font-weight: 600; }
code { background: #f3f5f7; padding: .05rem .3rem; border-radius: 4px; font-size: .88rem; }
figure { margin: 1rem 0; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); border-radius: 6px; }
figcaption { color: var(--muted); font-size: .88rem; }
.matrices figure img { width: 100%; max-width: 900px; }
details { margin: .6rem 0; }
summary { cursor: pointer; }
footer { color: var(--muted); font-size: .8rem; margin-top: 3rem; border-top: 1px solid var(--line); padding-top: .5rem; }
"""


def _e(value) -> str:
    return html.escape(str(value))


def _table(header, rows, numeric=(), row_classes=None) -> str:
    """An HTML table; cells are inserted as given (escape them first), ``header=None`` for none."""
    head = "".join(f'<th class="num">{_e(h)}</th>' if i in numeric else f"<th>{_e(h)}</th>"
                   for i, h in enumerate(header or ()))
    head = f"<thead><tr>{head}</tr></thead>" if header else ""
    body = []
    for r, row in enumerate(rows):
        cls = f' class="{row_classes[r]}"' if row_classes and row_classes[r] else ""
        cells = "".join(f'<td class="num">{c}</td>' if i in numeric else f"<td>{c}</td>"
                        for i, c in enumerate(row))
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<table>{head}<tbody>{''.join(body)}</tbody></table>"


def _figure_html(png: bytes | None, alt: str, caption: str) -> str:
    if png is None:
        return ""
    data = base64.b64encode(png).decode("ascii")
    return (f'<figure><img alt="{_e(alt)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{_e(caption)}</figcaption></figure>")


# Shown in the Model table already (or not a setting), so left out of the settings table.
_SHOWN_ELSEWHERE = ("spec", "command", "classes", "mean", "std", "model_name")


def _settings(config: dict) -> dict:
    """A run's config.json without what the report shows elsewhere, nor augmentation
    settings of a run that did not augment."""
    config = {key: value for key, value in config.items() if key not in _SHOWN_ELSEWHERE}
    settings = config.get("settings")
    if isinstance(settings, dict) and settings.get("augment") is False:
        config["settings"] = {key: value for key, value in settings.items() if key != "augmentation"}
    return config


def _settings_rows(config: dict, prefix: str = "") -> list[tuple[str, str]]:
    """Flatten nested settings into ('a.b', value) rows."""
    rows = []
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            rows.extend(_settings_rows(value, prefix=f"{name}."))
        else:
            rows.append((name, value if isinstance(value, str) else json.dumps(value)))
    return rows


def _top_confusions(cm: np.ndarray, classes: list[str], k: int = 5) -> list[tuple[str, str, int]]:
    off = cm.copy()
    np.fill_diagonal(off, 0)
    order = np.argsort(-off, axis=None, kind="stable")[:k]
    return [(classes[i], classes[j], int(off[i, j])) for i, j in zip(*np.unravel_index(order, cm.shape))
            if off[i, j] > 0]


def render_html(metrics: dict, model=None, config: dict | None = None, figures: dict | None = None,
                title: str = "Evaluation report") -> str:
    """The report page as one self-contained HTML string.

    ``figures`` maps "curves", "confusion_matrix", "confusion_matrix_normalized",
    "misclassified" to PNG bytes (missing ones are left out).
    """
    figures = figures or {}
    full_config, config = config or {}, _settings(config or {})
    metadata = dict(getattr(model, "metadata", None) or {})
    classes = metrics["classes"]
    cm = np.asarray(metrics["confusion_matrix"])
    dataset = metrics.get("dataset") or metadata.get("dataset") or full_config.get("dataset") or "unknown"
    split = metrics.get("split", "test")
    n_wrong = int(metrics["n"] - np.trace(cm))
    generated = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    model_name = metrics.get("model") or metadata.get("name") or "model"

    parts = [f"<h1>{_e(title)}</h1>",
             f'<p class="sub">{_e(model_name)} on {_e(dataset)} ({_e(split)} split, {metrics["n"]:,} images)</p>']

    cards = [("Accuracy", f"{100 * metrics['accuracy']:.2f}%"),
             ("Errors", f"{n_wrong:,} of {metrics['n']:,}"),
             ("Loss (cross-entropy)", f"{metrics['loss']:.4f}"),
             *([("ECE (15 bins)", f"{metrics['ece']:.4f}")] if "ece" in metrics else []),
             *([('Refused as "not a digit"', f"{100 * metrics['refused']:.2f}%")] if "refused" in metrics else []),
             ("Macro F1", f"{metrics['macro_avg']['f1']:.4f}")]
    parts.append('<div class="cards">' + "".join(
        f'<div class="card"><div class="v">{_e(v)}</div><div class="k">{_e(k)}</div></div>' for k, v in cards)
        + "</div>")

    if figures.get("curves") is not None:
        parts.append("<h2>Training curves</h2>")
        parts.append(_figure_html(figures["curves"], "Training curves",
                                  "Loss and accuracy per epoch on the training batches (solid) and the validation "
                                  "split (dashed); learning rate at the end of each epoch."))

    # Per-class
    parts.append("<h2>Per-class results</h2>")
    per_class = metrics["per_class"]
    worst = min(range(len(per_class)), key=lambda k: per_class[k]["f1"])
    rows = [(_e(c["class"]), f"{c['precision']:.4f}", f"{c['recall']:.4f}", f"{c['f1']:.4f}", f"{c['support']:,}")
            for c in per_class]
    for name in ("macro_avg", "weighted_avg"):
        avg = metrics[name]
        rows.append((f"<em>{name.replace('_avg', ' average')}</em>", f"{avg['precision']:.4f}",
                     f"{avg['recall']:.4f}", f"{avg['f1']:.4f}", f"{metrics['n']:,}"))
    row_classes = ["worst" if k == worst else "" for k in range(len(rows))]
    parts.append(_table(["Class", "Precision", "Recall", "F1", "Support"], rows, numeric=(1, 2, 3, 4),
                        row_classes=row_classes))
    parts.append(f"<p>Lowest F1 (highlighted): class {_e(per_class[worst]['class'])}.</p>")

    # Confusions
    parts.append("<h2>Confusion matrix</h2>")
    confusions = _top_confusions(cm, classes)
    if confusions:
        parts.append("<p>Most frequent confusions (true \u2192 predicted): " + ", ".join(
            f"{_e(t)} \u2192 {_e(p)} ({n})" for t, p, n in confusions) + ".</p>")
    parts.append('<div class="matrices">'
                 + _figure_html(figures.get("confusion_matrix"), "Confusion matrix (counts)",
                                "Counts: rows are true classes, columns predictions.")
                 + _figure_html(figures.get("confusion_matrix_normalized"), "Confusion matrix (row-normalised)",
                                "Each row divided by its total: the fraction of a true class given each prediction.")
                 + "</div>")

    if metrics.get("reliability"):
        parts.append("<h2>Calibration</h2>")
        temperature = metadata.get("temperature")
        how = (f"The probabilities are softmax(logits / T) with T = {temperature:.3f}, fitted on the "
               "validation split at the end of training. " if temperature else "")
        parts.append(f"<p>{how}Expected calibration error over 15 confidence bins: "
                     f"<strong>{metrics['ece']:.4f}</strong> (the answers' mean |accuracy &minus; confidence|, "
                     "weighted by how many answers fall in each bin).</p>")
        parts.append(_figure_html(figures.get("reliability"), "Reliability diagram",
                                  "Accuracy per bin of confidence; a calibrated model's bars reach the diagonal."))

    if metrics.get("sweeps"):
        parts.append("<h2>Robustness sweeps</h2>")
        sweeps = metrics["sweeps"]
        n_sweep = metrics.get("sweep_n")
        parts.append("<p>The same " + (f"{n_sweep:,} " if n_sweep else "") + f"{_e(split)} images, changed "
                     "by one thing at a time: rotated, scaled, their strokes thinned or thickened, Gaussian "
                     "noise added, blurred.</p>")
        parts.append(_figure_html(figures.get("sweeps"), "Robustness sweeps",
                                  "Accuracy (solid) and the share refused as \"not a digit\" (dashed) per level."))
        rows = []
        for name, sweep in sweeps.items():
            for r in sweep["levels"]:
                rows.append((_e(name), f"{r['level']:g}", f"{100 * r['accuracy']:.2f}%",
                             f"{100 * r['refused']:.2f}%" if "refused" in r else "",
                             f"{r['confidence']:.3f}"))
        parts.append("<details><summary><strong>Sweep figures</strong></summary>")
        parts.append(_table(["Sweep", "Level", "Accuracy", "Refused", "Mean confidence"], rows,
                            numeric=(1, 2, 3, 4)))
        parts.append("</details>")

    parts.append("<h2>Misclassified images</h2>")
    shown = min(n_wrong, MAX_MISCLASSIFIED_SHOWN)
    parts.append(f"<p>{n_wrong:,} {_e(split)} images are misclassified; the {shown} most confident mistakes are "
                 "shown, each titled true class \u2192 predicted class (probability of the prediction).</p>")
    parts.append(_figure_html(figures.get("misclassified"), "Misclassified images", "Most confident mistakes first."))

    # Model
    parts.append("<h2>Model</h2>")
    facts = [("Dataset", dataset), ("Classes", ", ".join(classes)),
             ("Package version", metadata.get("version", __version__))]
    if metadata.get("command"):
        facts.append(("Trained with", f"<code>{_e(metadata['command'])}</code>"))
    if metadata.get("mean") is not None:
        facts.append(("Input normalisation", f"(x - mean) / std, mean={metadata['mean']}, std={metadata.get('std')}"))
    parts.append(_table(None, [(f"<strong>{_e(k)}</strong>", v if k == "Trained with" else _e(v))
                               for k, v in facts]))
    net = getattr(model, "net", None)
    if net is not None:
        layers = architecture_rows(net)
        total = sum(r["parameters"] for r in layers)
        rows = [(r["index"], _e(r["type"]),
                 _e(", ".join(f"{k}={v}" for k, v in r["config"].items())),
                 _e("?" if r["output_shape"] is None else "\u00d7".join(map(str, r["output_shape"]))),
                 f"{r['parameters']:,}") for r in layers]
        parts.append(_table(["#", "Layer", "Arguments", "Output shape", "Parameters"], rows, numeric=(0, 4)))
        parts.append(f"<p>{total:,} trainable parameters in {len(layers)} layers.</p>")

    # Settings: every one, folded away; the figures above matter more to a reader
    if config:
        rows = _settings_rows(config)
        parts.append(f"<details><summary><strong>Training settings</strong> ({len(rows)})</summary>")
        parts.append(_table(["Setting", "Value"], [(_e(k), _e(v)) for k, v in rows]))
        parts.append("</details>")

    parts.append(f"<footer>Generated {generated} by digit-recognizer {_e(__version__)}.</footer>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{_e(title)}: {_e(model_name)}</title><style>{_CSS}</style></head>"
            f"<body>{''.join(parts)}</body></html>\n")


def write_run_artifacts(run_dir, history_rows, metrics: dict, images, labels, model,
                        title: str = "Evaluation report") -> dict[str, Path]:
    """Write metrics.json, curves.png, confusion_matrix(.png, _normalized.png), misclassified.png
    and report.html into ``run_dir``; returns {name: path} of what was written.

    ``metrics`` comes from :func:`digit_recognizer.evaluation.evaluate` on ``images`` (uint8
    (N, 28, 28)) and ``labels``; ``history_rows`` are the per-epoch dicts of a training run
    (empty or None when there is no history, e.g. evaluating a downloaded model: no curves).
    Settings are read from ``run_dir/config.json`` when it exists.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)  # fail before the slow plotting if it cannot exist
    images = np.asarray(images)
    if len(images) != metrics["n"] or len(labels) != metrics["n"]:
        raise ValueError(f"metrics cover {metrics['n']} images, got {len(images)} images and {len(labels)} labels")
    classes = metrics["classes"]
    cm = np.asarray(metrics["confusion_matrix"])
    wrong = metrics["misclassified"][:MAX_MISCLASSIFIED_SHOWN]

    figures = {
        "confusion_matrix": plotting.plot_confusion_matrix(cm, classes),
        "confusion_matrix_normalized": plotting.plot_confusion_matrix(cm, classes, normalize=True),
        "misclassified": plotting.plot_misclassified(
            images[[m["index"] for m in wrong]] if wrong else images[:0],
            [m["true"] for m in wrong], [m["predicted"] for m in wrong],
            [m["confidence"] for m in wrong], classes),
    }
    if history_rows:
        figures["curves"] = plotting.plot_curves(history_rows)
    if metrics.get("reliability"):
        figures["reliability"] = plotting.plot_reliability(metrics["reliability"], metrics.get("ece"))
    if metrics.get("sweeps"):
        figures["sweeps"] = plotting.plot_sweeps(metrics["sweeps"])
    pngs = {name: plotting.to_png(fig) for name, fig in figures.items()}

    written = {}
    for name, png in pngs.items():
        written[name] = run_dir / f"{name}.png"
        atomic_write(written[name], png)
    written["metrics"] = run_dir / "metrics.json"
    atomic_write(written["metrics"], (json.dumps(metrics, indent=2) + "\n").encode())

    config_path = run_dir / "config.json"
    try:
        config = json.loads(config_path.read_text()) if config_path.is_file() else {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DigitsError(f"cannot read {config_path}: {error}") from None
    written["report"] = run_dir / "report.html"
    atomic_write(written["report"], render_html(metrics, model, config, pngs, title).encode("utf-8"))
    return written
