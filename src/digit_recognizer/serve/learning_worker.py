"""The training process behind the page's "watch it learn" view.

    python -m digit_recognizer.serve.learning_worker SETTINGS_JSON OUT_DIR

Trains one network with the engine's ``Trainer`` on a stratified subset of the
MNIST training split, at the lowest CPU priority and on one thread, so that the
server beside it keeps answering. It reports on stdout, one JSON object a line:

    {"event": "start", "settings": {...}, "grid": ["data:...", ...], "grid_labels": [...], ...}
    {"event": "step", "step": 12, "epoch": 1, "loss": 0.91, "accuracy": 0.72}      every batch
    {"event": "eval", "step": 12, ..., "val_loss": 0.62, "val_accuracy": 0.81,
     "grid_predictions": [...], "filters": "data:..."}                             a few times an epoch
    {"event": "done", "status": "finished" | "stopped", "model": "OUT_DIR/model.safetensors", ...}
    {"event": "failed", "error": "one line"}

The validation images are a fixed, stratified 1,000 of the training split outside the
subset (the test split is never touched). A line "stop" on stdin, or stdin closing (the
server went away), ends the training after the current batch; the weights reached so
far are still saved.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

from digit_recognizer import __version__, data, models, modelfile, nn
from digit_recognizer.errors import DigitsError
from digit_recognizer.serve import pictures
from digit_recognizer.training import Callback, Trainer, make_optimizer

VALIDATION_SIZE = 1000
GRID_SIZE = 40          # validation digits shown turning from wrong to right
EVALS_PER_EPOCH = 4     # validation points per epoch on the accuracy curve
MAX_FILTERS = 32        # first-layer filters (or dense units) shown

# A small CNN for the page: two conv blocks of 8 and 16 channels, then the class scores.
# About 0.4 M multiply-adds per image, a twentieth of the default "cnn": it trains in seconds.
SMALL_CNN = [
    {"type": "Conv2D", "in_channels": 1, "out_channels": 8, "kernel_size": 5, "padding": 2},
    {"type": "MaxPool2D", "kernel_size": 2},
    {"type": "ReLU"},
    {"type": "Conv2D", "in_channels": 8, "out_channels": 16, "kernel_size": 5, "padding": 2},
    {"type": "MaxPool2D", "kernel_size": 2},
    {"type": "ReLU"},
    {"type": "Flatten"},
    {"type": "Dense", "in_features": 784, "out_features": 10},
]
ARCHITECTURES = {"mlp": models.ARCHITECTURES["mlp"], "lenet5": models.ARCHITECTURES["lenet5"],
                 "small-cnn": SMALL_CNN, "cnn": models.ARCHITECTURES["cnn"]}


def emit(event: dict) -> None:
    sys.stdout.write(json.dumps(event, separators=(",", ":")) + "\n")
    sys.stdout.flush()


class Stopped(Exception):
    """The server asked the training to stop."""


def first_layer_picture(net) -> str:
    """The first weight layer's filters as tiles: a conv's kernels, or a dense layer's first
    units as 28x28 weight images (what each unit looks for in the input)."""
    layer = next(layer for layer in net.layers if layer.parameters())
    w = layer.weight.data
    if w.ndim == 4:
        maps = w[:MAX_FILTERS, 0]
    else:
        maps = w[:MAX_FILTERS].reshape(-1, 28, 28)
    return pictures.data_url(pictures.tiles(maps))


class Progress(Callback):
    """Emits a "step" event after every batch and an "eval" event a few times an epoch;
    raises ``Stopped`` before a batch once ``stop`` is set."""

    def __init__(self, stop: threading.Event, validation, grid_size: int, steps_per_epoch: int):
        self.stop, (self.x_val, self.y_val), self.grid_size = stop, validation, grid_size
        self.steps_per_epoch = steps_per_epoch
        self.every = max(1, steps_per_epoch // EVALS_PER_EPOCH)
        self.last_eval = None

    def on_batch_begin(self, trainer, step):
        if self.stop.is_set():
            raise Stopped

    def on_batch_end(self, trainer, step, logs):
        epoch = (step - 1) // self.steps_per_epoch + 1
        emit({"event": "step", "step": step, "epoch": epoch, "loss": round(logs["loss"], 5),
              "accuracy": round(logs["accuracy"], 4)})
        if step % self.every == 0:
            self.evaluate(trainer, step)

    def evaluate(self, trainer, step: int) -> dict:
        if self.last_eval and self.last_eval["step"] == step:
            return self.last_eval
        logits = np.concatenate([
            trainer.net.forward(data.normalize(self.x_val[i:i + 500], trainer.mean, trainer.std), training=False)
            for i in range(0, len(self.x_val), 500)])
        loss, _ = nn.softmax_cross_entropy(logits, self.y_val.astype(np.int64))
        predicted = logits.argmax(axis=1)
        self.last_eval = {
            "event": "eval", "step": step, "epoch": round(step / self.steps_per_epoch, 3),
            "val_loss": round(float(loss), 5), "val_accuracy": round(float((predicted == self.y_val).mean()), 4),
            "grid_predictions": [int(k) for k in predicted[:self.grid_size]],
            "filters": first_layer_picture(trainer.net),
        }
        emit(self.last_eval)
        return self.last_eval


def _watch_stdin(stop: threading.Event) -> None:
    for line in sys.stdin:
        if line.strip() == "stop":
            break
    stop.set()  # "stop", or the server closed the pipe (it stopped or died)


def train(settings: dict, out_dir: Path, stop: threading.Event) -> dict:
    """Run one training; returns the "done" event (and emits everything before it)."""
    name = settings["architecture"]
    if name not in ARCHITECTURES:
        raise DigitsError(f"unknown architecture {name!r}; choose from {', '.join(ARCHITECTURES)}")
    ds = data.get_dataset("mnist")
    images, labels = data.load(ds, "train", quiet=True)
    seed = int(settings.get("seed", 0))
    rest, val_idx = data.train_val_split(labels, VALIDATION_SIZE, seed=seed)
    n = min(int(settings["images"]), len(rest))
    pick = rest if n >= len(rest) else rest[data.train_val_split(labels[rest], n, seed=seed + 1)[1]]
    x_train, y_train = images[pick], labels[pick]
    x_val, y_val = images[val_idx], labels[val_idx]
    # The grid: the first validation images, ordered 0-9 so the page shows every class.
    grid_order = np.argsort(y_val, kind="stable")
    grid_order = np.concatenate([grid_order[y_val[grid_order] == c][:GRID_SIZE // 10] for c in range(10)])
    x_val = np.concatenate([x_val[grid_order], np.delete(x_val, grid_order, axis=0)])
    y_val = np.concatenate([y_val[grid_order], np.delete(y_val, grid_order)])

    nn.manual_seed(seed)
    spec = models.resolve(ARCHITECTURES[name], n_classes=len(ds.classes))
    net = models.build(spec, n_classes=len(ds.classes))
    batch_size = int(settings["batch_size"])
    if len(x_train) < batch_size:
        raise DigitsError(f"{len(x_train)} training images is fewer than one batch of {batch_size}")
    steps_per_epoch = len(x_train) // batch_size
    optimizer = make_optimizer("adam", net.parameters(), float(settings["learning_rate"]))
    progress = Progress(stop, (x_val, y_val), GRID_SIZE, steps_per_epoch)
    trainer = Trainer(net, optimizer, mean=ds.mean, std=ds.std, batch_size=batch_size,
                      callbacks=[progress], seed=seed, progress=False)
    emit({"event": "start", "settings": settings, "n_train": len(x_train), "n_val": len(x_val),
          "steps_per_epoch": steps_per_epoch, "epochs": int(settings["epochs"]),
          "parameters": int(sum(p.data.size for p in net.parameters())),
          "grid": [pictures.data_url(Image.fromarray(image)) for image in x_val[:GRID_SIZE]],
          "grid_labels": [int(k) for k in y_val[:GRID_SIZE]], "filters": first_layer_picture(net)})
    started = time.perf_counter()
    status = "finished"
    try:
        trainer.fit(x_train, y_train, int(settings["epochs"]))
    except Stopped:
        status = "stopped"
    final = progress.evaluate(trainer, trainer.step) if trainer.step else None
    seconds = round(time.perf_counter() - started, 2)
    metadata = {
        "name": name, "spec": spec, "mean": ds.mean, "std": ds.std, "classes": ds.classes,
        "dataset": ds.name, "input_shape": list(models.INPUT_SHAPE), "version": __version__,
        "command": "digits serve: watch it learn",
        "training": {"settings": settings, "steps": trainer.step, "seconds": seconds, "status": status},
        "metrics": ({"split": "validation", "accuracy": final["val_accuracy"], "loss": final["val_loss"],
                     "n": len(y_val)} if final else None),
    }
    path = modelfile.save(out_dir / "model.safetensors", net, metadata)
    return {"event": "done", "status": status, "model": str(path), "steps": trainer.step, "seconds": seconds,
            "val_accuracy": final["val_accuracy"] if final else None}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        os.nice(19)  # the server's requests come first
    except OSError:
        pass
    nn.threads(1)
    stop = threading.Event()
    threading.Thread(target=_watch_stdin, args=(stop,), daemon=True).start()
    try:
        settings, out_dir = json.loads(argv[0]), Path(argv[1])
        emit(train(settings, out_dir, stop))
    except DigitsError as error:
        emit({"event": "failed", "error": str(error)})
        return 1
    except Exception as error:  # reported to the page as one line; the server stays up
        emit({"event": "failed", "error": f"training failed: {type(error).__name__}: {error}"})
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
