"""`digits train`: train a model into a run directory (or `--resume` one)."""

from __future__ import annotations

import argparse
import json
import shlex
from dataclasses import fields
from pathlib import Path

from digit_recognizer.errors import DigitsError

# Settings that --resume takes from the run's config.json instead of the command line.
_SETTINGS = ("model", "dataset", "epochs", "batch_size", "learning_rate", "optimizer",
             "weight_decay", "schedule", "label_smoothing", "seed", "augment", "elastic",
             "val_size", "patience", "limit", "negatives", "data_dir", "out")


def add_arguments(p: argparse.ArgumentParser, underscore_aliases: bool = False) -> None:
    """The training flags; ``underscore_aliases`` also accepts --batch_size etc. (src/train.py)."""
    from digit_recognizer.training import OPTIMIZERS, SCHEDULES, TrainConfig

    d = TrainConfig()

    def flag(name: str, **kw):
        names = [f"--{name}"]
        if underscore_aliases and "-" in name:
            names.append(f"--{name.replace('-', '_')}")
        p.add_argument(*names, default=None, **kw)

    flag("model", metavar="NAME|SPEC.toml",
         help="digits (the shipped model's recipe: network and settings), cnn, lenet5, mlp, or a "
              "TOML spec file, whose [training] table, if any, sets the defaults (default: digits)")
    flag("dataset", metavar="NAME", help=f"mnist or fashion-mnist (default: {d.dataset})")
    flag("epochs", type=int, metavar="N", help=f"epochs (default: {d.epochs})")
    flag("batch-size", type=int, metavar="N", help=f"mini-batch size (default: {d.batch_size})")
    flag("learning-rate", type=float, metavar="F",
         help=f"(peak) learning rate (default: {d.learning_rate})")
    flag("optimizer", choices=OPTIMIZERS, help=f"(default: {d.optimizer})")
    flag("weight-decay", type=float, metavar="F", help=f"(default: {d.weight_decay})")
    flag("schedule", choices=SCHEDULES, help=f"learning-rate schedule (default: {d.schedule})")
    flag("label-smoothing", type=float, metavar="F", help=f"(default: {d.label_smoothing})")
    flag("seed", type=int, metavar="N", help=f"fixes initialisation, data order, augmentation "
                                             f"and dropout (default: {d.seed})")
    flag("augment", action=argparse.BooleanOptionalAction,
         help="random rotation, scale and shift of training images (default: on)")
    flag("elastic", type=float, metavar="PIXELS",
         help="also apply elastic distortion of this typical size, e.g. 2 (default: off)")
    flag("val-size", type=int, metavar="N", help="images held out of the training split for "
         "validation and model selection (default: 5000, or a tenth with --limit)")
    flag("patience", type=int, metavar="N",
         help="stop after N epochs without validation improvement (default: never)")
    flag("limit", type=int, metavar="N", help="train on a stratified subset of N images")
    flag("negatives", type=int, metavar="N", help="add N generated non-digits (letters, symbols, "
         "clothing, strokes, noise) as a last class, \"not a digit\" (default: 0)")
    flag("data-dir", type=Path, metavar="DIR", help="data cache folder")
    flag("out", type=Path, metavar="RUN_DIR", help="run directory (default: runs/MODEL-DATASET-TIME)")
    p.add_argument("--resume", type=Path, default=None, metavar="RUN_DIR",
                   help="continue an interrupted run with its saved settings")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the run summary as one JSON document")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train", help="train a model into a run directory",
        description="Train a model. The run directory receives config.json, history.csv, "
                    "model.safetensors (best epoch), last.safetensors (for --resume), "
                    "metrics.json, plots and report.html.")
    add_arguments(p)
    p.set_defaults(func=run)


def config_from_args(args):
    """A TrainConfig from parsed flags (unset flags keep their defaults)."""
    from digit_recognizer.training import TrainConfig

    from digit_recognizer import models

    config = TrainConfig()
    names = {f.name for f in fields(TrainConfig)}
    model = getattr(args, "model", None) or models.DEFAULT_RECIPE
    for name, value in models.load_training(model).items():  # the recipe's settings, then the flags
        if name not in names - {"model", "data_dir"}:
            raise DigitsError(f"model spec {model}: unknown training setting {name!r}")
        setattr(config, name, dict(config.augmentation, **value) if name == "augmentation" else value)
    config.model = model
    for name in names:
        value = getattr(args, name, None)
        if value is not None:
            setattr(config, name, str(value) if name == "data_dir" else value)
    if getattr(args, "elastic", None) is not None:
        config.augmentation = dict(config.augmentation, elastic_alpha=float(args.elastic))
    return config


def command_line(args, prog: str = "digits train") -> str:
    """The command, rebuilt from the flags that were given (recorded in the model's metadata)."""
    parts = [prog]
    for name in _SETTINGS:
        value = getattr(args, name, None)
        if value is True:
            parts.append(f"--{name.replace('_', '-')}")
        elif value is False:
            parts.append(f"--no-{name.replace('_', '-')}")
        elif value is not None:
            parts += [f"--{name.replace('_', '-')}", shlex.quote(str(value))]
    return " ".join(parts)


def run(args, prog: str = "digits train") -> int:
    from digit_recognizer.training import train

    if args.resume is not None:
        given = [f"--{n.replace('_', '-')}" for n in _SETTINGS if getattr(args, n, None) is not None]
        if given:
            raise DigitsError(f"--resume continues a run with its saved settings; drop {', '.join(given)}")
        summary = train(None, args.resume, resume=True, progress=not args.quiet)
    else:
        summary = train(config_from_args(args), args.out, command=command_line(args, prog),
                        progress=not args.quiet)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"model: {summary['model']}\nreport: {summary['report']}")
    return 0
