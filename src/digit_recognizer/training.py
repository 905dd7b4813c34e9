"""Training: the Trainer loop, its callbacks, and `train()`, which runs a whole experiment.

The loop is mini-batch gradient descent (Nielsen's ``network.py``, vectorised):

    for each epoch:  shuffle;  for each batch B:
        x = normalise(augment(images[B]));  z = net(x);  L = CE(z, y)
        net.backward(dL/dz);  optimizer.step()
    then validate on the held-out split and run the callbacks.

Reproducibility: one seed fixes everything. ``nn.manual_seed(seed)`` drives weight
initialisation and dropout; two generators spawned from the seed drive the batch order
and the augmentation. A checkpoint (``last.safetensors``) holds the weights, the
optimizer state, all three generator states, the history and the callbacks' state, so a
resumed run replays exactly the batches, augmentations and dropout masks that an
uninterrupted run would have drawn, and ends with the same weights.

The test split is never looked at here, except once at the very end of ``train()`` to
report the chosen model's accuracy; selection and early stopping use the validation split,
carved (stratified) from the training split.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from tqdm import tqdm

from digit_recognizer import __version__, calibration, data, evaluation, models, modelfile, nn
from digit_recognizer.data.augment import Augmentation
from digit_recognizer.errors import DigitsError
from digit_recognizer.files import atomic_write

HISTORY_COLUMNS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds")
OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
SCHEDULES = ("onecycle", "cosine", "step", "constant")


def _log(message: str) -> None:
    tqdm.write(message, file=sys.stderr)


# --------------------------------------------------------------------------- state <-> files

def _split_arrays(obj, prefix: str, arrays: dict):
    """Replace every ndarray in a nested dict/list by {"__array__": key}, collecting arrays.

    Turns any state (optimizer, callbacks) into JSON plus a flat dict of tensors.
    """
    if isinstance(obj, np.ndarray):
        arrays[prefix] = obj
        return {"__array__": prefix}
    if isinstance(obj, dict):
        return {str(k): _split_arrays(v, f"{prefix}/{k}", arrays) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_split_arrays(v, f"{prefix}/{i}", arrays) for i, v in enumerate(obj)]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def _join_arrays(obj, arrays: dict):
    """Inverse of :func:`_split_arrays`."""
    if isinstance(obj, dict):
        if set(obj) == {"__array__"}:
            return arrays[obj["__array__"]]
        return {k: _join_arrays(v, arrays) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_join_arrays(v, arrays) for v in obj]
    return obj


def history_csv(rows: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=HISTORY_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row[k]) for k in HISTORY_COLUMNS})
    return out.getvalue()


# --------------------------------------------------------------------------- callbacks

class Callback:
    """Hooks called by :class:`Trainer`; ``state_dict`` is saved in checkpoints."""

    def on_train_begin(self, trainer: "Trainer") -> None: ...
    def on_batch_begin(self, trainer: "Trainer", step: int) -> None: ...
    def on_batch_end(self, trainer: "Trainer", step: int, logs: dict) -> None: ...
    def on_epoch_end(self, trainer: "Trainer", epoch: int, logs: dict) -> None: ...
    def on_train_end(self, trainer: "Trainer") -> None: ...

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None: ...


class LearningRateScheduler(Callback):
    """Sets ``optimizer.lr = schedule(step)`` before every step (step counts from 0)."""

    def __init__(self, schedule):
        self.schedule = schedule

    def on_batch_begin(self, trainer, step):
        trainer.optimizer.lr = float(self.schedule(step))


class EarlyStopping(Callback):
    """Tracks the best epoch by ``monitor`` (lower is better for losses, higher otherwise),
    stops after ``patience`` epochs without improvement (never, if patience is None),
    and restores the best weights when training ends (``restore_best``)."""

    def __init__(self, monitor: str = "val_loss", patience: int | None = None,
                 min_delta: float = 0.0, restore_best: bool = True):
        self.monitor, self.patience, self.min_delta = monitor, patience, min_delta
        self.restore_best = restore_best
        self.sign = 1.0 if "loss" in monitor else -1.0  # compare sign*value, lower wins
        self.best = math.inf
        self.best_epoch = 0
        self.wait = 0
        self.best_weights: dict | None = None
        self.improved = False

    def on_epoch_end(self, trainer, epoch, logs):
        value = self.sign * logs[self.monitor]
        self.improved = value < self.best - self.min_delta
        if self.improved:
            self.best, self.best_epoch, self.wait = value, epoch, 0
            self.best_weights = trainer.net.state_dict()
        else:
            self.wait += 1
            if self.patience is not None and self.wait >= self.patience:
                trainer.stop_training = True
                _log(f"early stopping: no {self.monitor} improvement for {self.wait} epoch{'s' if self.wait != 1 else ''}; "
                     f"best was epoch {self.best_epoch}")

    def on_train_end(self, trainer):
        if self.restore_best and self.best_weights is not None:
            trainer.net.load_state_dict(self.best_weights)

    def state_dict(self):
        return {"best": self.best if math.isfinite(self.best) else None,
                "best_epoch": self.best_epoch, "wait": self.wait,
                "improved": self.improved, "best_weights": self.best_weights}

    def load_state_dict(self, state):
        self.best = math.inf if state["best"] is None else float(state["best"])
        self.best_epoch, self.wait = int(state["best_epoch"]), int(state["wait"])
        self.improved, self.best_weights = bool(state["improved"]), state["best_weights"]


class CSVLogger(Callback):
    """Rewrites ``history.csv`` after every epoch (atomically; it is small)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def on_epoch_end(self, trainer, epoch, logs):
        atomic_write(self.path, history_csv(trainer.history))


class Checkpoint(Callback):
    """After every epoch: ``last.safetensors`` (everything needed to resume) and, when
    ``best`` (an EarlyStopping) saw an improvement, ``model.safetensors``. Both are written
    to a temp file and renamed, so a kill at any moment leaves the previous good files.
    Put it last in the callback list, so the others' state is already updated."""

    def __init__(self, run_dir: str | Path, metadata: dict, best: EarlyStopping | None = None):
        self.run_dir, self.metadata, self.best = Path(run_dir), metadata, best

    def on_epoch_end(self, trainer, epoch, logs):
        if self.best is None or self.best.improved:
            meta = dict(self.metadata, epoch=epoch, validation={k: logs[k] for k in logs if k != "epoch"})
            modelfile.save(self.run_dir / "model.safetensors", trainer.net, meta)
        trainer.save_checkpoint(self.run_dir / "last.safetensors", self.metadata)


# --------------------------------------------------------------------------- trainer

class Trainer:
    """Mini-batch training of an ``nn.Sequential`` on uint8 images.

    ``fit(images, labels, epochs, validation_data)`` trains until ``epochs`` epochs are
    done in total (so a restored trainer continues where it stopped). Images stay uint8
    in memory; each batch is augmented and normalised, x' = (x/255 - mean)/std, on the fly.
    """

    def __init__(self, net: nn.Sequential, optimizer, *, mean: float, std: float,
                 batch_size: int = 128, augmentation: Augmentation | None = None,
                 label_smoothing: float = 0.0, callbacks=(), seed: int = 0,
                 progress: bool = True):
        self.net, self.optimizer = net, optimizer
        self.mean, self.std = float(mean), float(std)
        self.batch_size, self.augmentation = int(batch_size), augmentation
        self.label_smoothing = label_smoothing
        self.callbacks = list(callbacks)
        self.progress = progress
        shuffle_seed, augment_seed = np.random.SeedSequence(seed).spawn(2)
        self.shuffle_rng = np.random.default_rng(shuffle_seed)
        self.augment_rng = np.random.default_rng(augment_seed)
        self.epoch = 0          # epochs completed
        self.step = 0           # optimizer steps taken
        self.history: list[dict] = []
        self.stop_training = False

    # -- batches
    def _inputs(self, images_uint8: np.ndarray, augment: bool) -> np.ndarray:
        if augment and self.augmentation is not None:
            x = self.augmentation(images_uint8, self.augment_rng)  # float32 in [0, 255]
            x *= np.float32(1.0 / (255.0 * self.std))
            x -= np.float32(self.mean / self.std)
            return x[:, None]
        return data.normalize(images_uint8, self.mean, self.std)

    def evaluate(self, images, labels, batch_size: int = 1000) -> tuple[float, float]:
        """(mean loss, accuracy) in inference mode (no dropout, BN running statistics)."""
        total_loss, correct = 0.0, 0
        for i in range(0, len(images), batch_size):
            logits = self.net.forward(self._inputs(images[i:i + batch_size], False), training=False)
            y = labels[i:i + batch_size].astype(np.int64)
            loss, _ = nn.softmax_cross_entropy(logits, y)
            total_loss += loss * len(y)
            correct += int((logits.argmax(axis=1) == y).sum())
        return total_loss / len(images), correct / len(images)

    def _train_epoch(self, images, labels, epochs: int) -> tuple[float, float]:
        n_batches = len(images) // self.batch_size  # the ragged tail is dropped; order changes each epoch
        order = self.shuffle_rng.permutation(len(images))
        total_loss, correct, seen = 0.0, 0, 0
        # disable=None: the bar shows on a terminal only; logs get the one line per epoch.
        bar = tqdm(total=n_batches, desc=f"epoch {self.epoch + 1}/{epochs}", unit="batch",
                   file=sys.stderr, leave=False, disable=None if self.progress else True,
                   mininterval=0.5, dynamic_ncols=True)
        with bar:
            for b in range(n_batches):
                idx = np.sort(order[b * self.batch_size:(b + 1) * self.batch_size])
                y = labels[idx].astype(np.int64)
                x = self._inputs(images[idx], True)
                for callback in self.callbacks:
                    callback.on_batch_begin(self, self.step)
                with np.errstate(over="ignore", invalid="ignore"):  # divergence is reported below
                    logits = self.net.forward(x, training=True)
                    loss, dlogits = nn.softmax_cross_entropy(logits, y, self.label_smoothing)
                if not math.isfinite(loss):
                    raise TrainingDiverged(
                        f"the loss became {loss} at epoch {self.epoch + 1}, batch {b + 1} "
                        f"(learning rate {self.optimizer.lr:.3g}); training stopped"
                    )
                self.net.backward(dlogits, input_grad=False)
                self.optimizer.step()
                self.optimizer.zero_grad()
                self.step += 1
                batch_correct = int((logits.argmax(axis=1) == y).sum())
                total_loss += loss * len(y)
                correct += batch_correct
                seen += len(y)
                for callback in self.callbacks:
                    callback.on_batch_end(self, self.step, {"loss": float(loss), "accuracy": batch_correct / len(y)})
                bar.update(1)
                if b % 10 == 0 or b == n_batches - 1:
                    bar.set_postfix(loss=f"{total_loss / seen:.4f}", acc=f"{correct / seen:.4f}",
                                    lr=f"{self.optimizer.lr:.2e}", refresh=False)
        return total_loss / max(seen, 1), correct / max(seen, 1)

    def fit(self, images, labels, epochs: int, validation_data=None) -> list[dict]:
        """Train until ``epochs`` epochs are complete (or a callback stops); returns the history."""
        if len(images) < self.batch_size:
            raise DigitsError(f"{len(images)} training images is fewer than one batch of {self.batch_size}")
        for callback in self.callbacks:
            callback.on_train_begin(self)
        while self.epoch < epochs and not self.stop_training:
            start = time.perf_counter()
            loss, accuracy = self._train_epoch(images, labels, epochs)
            logs = {"epoch": self.epoch + 1, "loss": loss, "accuracy": accuracy}
            if validation_data is not None and len(validation_data[0]):
                logs["val_loss"], logs["val_accuracy"] = self.evaluate(*validation_data)
            logs["lr"] = self.optimizer.lr
            logs["seconds"] = round(time.perf_counter() - start, 2)
            self.epoch += 1
            self.history.append({k: logs.get(k) for k in HISTORY_COLUMNS})
            _log(_epoch_line(logs, epochs))
            for callback in self.callbacks:
                callback.on_epoch_end(self, self.epoch, logs)
        for callback in self.callbacks:
            callback.on_train_end(self)
        return self.history

    # -- checkpoints
    def state_dict(self) -> dict:
        return {
            "epoch": self.epoch, "step": self.step, "stop_training": self.stop_training,
            "history": self.history,
            "rng": {"shuffle": self.shuffle_rng.bit_generator.state,
                    "augment": self.augment_rng.bit_generator.state,
                    "nn": nn.get_rng_state()},
            "optimizer": self.optimizer.state_dict(),
            "callbacks": [callback.state_dict() for callback in self.callbacks],
        }

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.step = int(state["epoch"]), int(state["step"])
        self.stop_training = bool(state["stop_training"])
        self.history = [dict(row) for row in state["history"]]
        self.shuffle_rng.bit_generator.state = state["rng"]["shuffle"]
        self.augment_rng.bit_generator.state = state["rng"]["augment"]
        nn.set_rng_state(state["rng"]["nn"])
        self.optimizer.load_state_dict(state["optimizer"])
        if len(state["callbacks"]) != len(self.callbacks):
            raise DigitsError("the checkpoint was written with different callbacks")
        for callback, cb_state in zip(self.callbacks, state["callbacks"]):
            callback.load_state_dict(cb_state)

    def save_checkpoint(self, path: str | Path, metadata: dict) -> Path:
        """Weights + metadata + the trainer's state (JSON in the header, arrays as tensors)."""
        arrays: dict = {}
        skeleton = _split_arrays(self.state_dict(), "trainer", arrays)
        return modelfile.save(path, self.net, dict(metadata, checkpoint=skeleton), extra_tensors=arrays)

    def load_checkpoint(self, path: str | Path) -> None:
        tensors, metadata = modelfile.read(path)
        model = modelfile.from_tensors(path, tensors, metadata)
        if "checkpoint" not in metadata:
            raise DigitsError(f"{path} is a model file, not a training checkpoint")
        prefix = modelfile.CHECKPOINT_PREFIX
        arrays = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        try:
            state = _join_arrays(metadata["checkpoint"], arrays)
            self.net.load_state_dict(model.net.state_dict())
            self.load_state_dict(state)
        except (KeyError, TypeError, ValueError) as error:
            raise DigitsError(f"{path} is not a usable checkpoint for this run: {error}") from None


class TrainingDiverged(DigitsError):
    """The loss became NaN or infinite."""


def _epoch_line(logs: dict, epochs: int) -> str:
    line = (f"epoch {logs['epoch']:>3}/{epochs}  loss {logs['loss']:.4f}  "
            f"acc {100 * logs['accuracy']:.2f}%")
    if "val_loss" in logs:
        line += f"  val_loss {logs['val_loss']:.4f}  val_acc {100 * logs['val_accuracy']:.2f}%"
    return line + f"  lr {logs['lr']:.2e}  {logs['seconds']:.1f} s"


# --------------------------------------------------------------------------- a whole run

@dataclass
class TrainConfig:
    """Every setting of a training run (saved as config.json; ``--resume`` reads it back)."""

    model: str = "cnn"
    dataset: str = "mnist"
    epochs: int = 12
    batch_size: int = 128
    learning_rate: float = 3e-3
    optimizer: str = "adam"
    weight_decay: float = 0.0
    schedule: str = "onecycle"
    label_smoothing: float = 0.0
    seed: int = 0
    augment: bool = True
    augmentation: dict = field(default_factory=lambda: Augmentation().config())
    val_size: int | None = None   # None: 5000, or a tenth of the images if fewer than 50000
    patience: int | None = None   # None: never stop early (the best epoch is still kept)
    limit: int | None = None      # train on a stratified subset of this many images
    negatives: int = 0            # generated non-digits added as a last class, "not a digit"
    data_dir: str | None = None

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def check(self) -> None:
        """DigitsError for settings that cannot work."""
        if self.epochs < 1:
            raise DigitsError(f"--epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 1:
            raise DigitsError(f"--batch-size must be at least 1, got {self.batch_size}")
        if not (self.learning_rate > 0 and math.isfinite(self.learning_rate)):
            raise DigitsError(f"--learning-rate must be a positive number, got {self.learning_rate}")
        if self.optimizer not in OPTIMIZERS:
            raise DigitsError(f"unknown optimizer {self.optimizer!r}; choose from {', '.join(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            raise DigitsError(f"unknown schedule {self.schedule!r}; choose from {', '.join(SCHEDULES)}")
        if self.patience is not None and self.patience < 1:
            raise DigitsError(f"--patience must be at least 1, got {self.patience}")
        if self.limit is not None and self.limit < 2:
            raise DigitsError(f"--limit must be at least 2, got {self.limit}")
        if self.val_size is not None and self.val_size < 0:
            raise DigitsError(f"--val-size must be 0 or more, got {self.val_size}")
        if self.negatives < 0:
            raise DigitsError(f"--negatives must be 0 or more, got {self.negatives}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise DigitsError(f"--label-smoothing must be in [0, 1), got {self.label_smoothing}")


def make_optimizer(name: str, params, lr: float, weight_decay: float = 0.0):
    if name == "adam":
        return nn.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return nn.AdamW(params, lr=lr, weight_decay=weight_decay or 0.01)
    if name == "sgd":
        return nn.SGD(params, lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay)
    if name == "rmsprop":
        return nn.RMSprop(params, lr=lr, weight_decay=weight_decay)
    raise DigitsError(f"unknown optimizer {name!r}; choose from {', '.join(OPTIMIZERS)}")


def make_schedule(name: str, lr: float, total_steps: int):
    """schedule(step) -> lr over a run of total_steps optimizer steps."""
    total_steps = max(total_steps, 2)
    if name == "onecycle":
        return nn.OneCycleLR(lr, total_steps, pct_start=0.25)
    if name == "cosine":
        return nn.LinearWarmup(nn.CosineLR(lr, total_steps), warmup_steps=min(200, total_steps // 10))
    if name == "step":  # divide by 10 at 50% and 75% of the run
        return lambda step: lr * 0.1 ** ((step >= total_steps // 2) + (step >= 3 * total_steps // 4))
    if name == "constant":
        return lambda step: lr
    raise DigitsError(f"unknown schedule {name!r}; choose from {', '.join(SCHEDULES)}")


def default_run_dir(config: TrainConfig) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    name = Path(config.model).stem if config.model not in models.ARCHITECTURES else config.model
    return Path("runs") / f"{name}-{config.dataset}-{stamp}"


def _versions() -> dict:
    return {"digit_recognizer": __version__, "python": platform.python_version(),
            "numpy": np.__version__, "platform": platform.platform()}


# What a run leaves before its first epoch ends: its settings, a history without rows,
# and temporary files of writes a kill interrupted (".NAME.PID.tmp").
_UNFINISHED_RUN_FILES = ("config.json", "history.csv")


def _prepare_run_dir(run_dir: Path) -> None:
    """An empty folder for a new run. A folder holding only what a run killed before its
    first epoch leaves is emptied of those files and reused; any other files are refused."""
    if run_dir.exists() and not run_dir.is_dir():
        raise DigitsError(f"{run_dir} exists and is not a directory")
    if run_dir.is_dir():
        present = list(run_dir.iterdir())
        unfinished = [p for p in present if p.is_file() and (
            p.name in _UNFINISHED_RUN_FILES or (p.name.startswith(".") and p.name.endswith(".tmp")))]
        if present and len(unfinished) == len(present) and (run_dir / "config.json") in present:
            _log(f"{run_dir} holds a run that never finished an epoch; starting over in it")
            for path in unfinished:
                path.unlink(missing_ok=True)
        elif present:
            raise DigitsError(
                f"{run_dir} already holds files; use --resume {run_dir} to continue that run, "
                "or choose another --out"
            )
    run_dir.mkdir(parents=True, exist_ok=True)


def _select(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """A stratified, seeded subset of n indices (sorted)."""
    if n >= len(labels):
        return np.arange(len(labels))
    return data.train_val_split(labels, n, seed=seed + 1)[1]


def calibrate(model: modelfile.Model, images: np.ndarray, labels: np.ndarray) -> dict:
    """Fit the model's temperature on held-out (validation) images and record it in its
    metadata, with the validation NLL and ECE before and after; for a model with a "not a
    digit" class also its refusal threshold (``calibration.fit_refusal_threshold`` on the
    validation digits). Returns that record."""
    logits = model.logits(images)
    temperature = calibration.fit_temperature(logits, labels)
    record = {"split": "validation", "n": int(len(labels)), "temperature": temperature}
    for name, t in (("before", 1.0), ("after", temperature)):
        proba = nn.softmax(logits / np.float32(t))
        record[f"nll_{name}"] = calibration.nll(logits, labels, t)
        record[f"ece_{name}"] = calibration.expected_calibration_error(proba, labels)
    model.metadata["temperature"] = temperature
    _log(f"temperature {temperature:.3f} fitted on {len(labels)} validation images: "
         f"ECE {record['ece_before']:.4f} -> {record['ece_after']:.4f}")
    reject = model.not_a_digit_index
    if reject is not None and (labels != reject).any():
        p_reject = proba[:, reject]  # calibrated: the loop above ended at T = temperature
        digits = labels != reject
        threshold = calibration.fit_refusal_threshold(p_reject[digits])
        record["refusal_threshold"] = threshold
        record["digits_refused"] = float((p_reject[digits] >= threshold).mean())
        if (~digits).any():
            record["non_digits_refused"] = float((p_reject[~digits] >= threshold).mean())
        model.metadata["refusal_threshold"] = threshold
        _log(f"refusal threshold {threshold:.3f}: validation digits refused "
             f"{100 * record['digits_refused']:.2f}%, non-digits refused "
             f"{100 * record.get('non_digits_refused', float('nan')):.1f}%")
    model.metadata["calibration"] = record
    return record


#: Digits printed in the glyphs' fonts, per generated non-digit (see _add_negatives).
PRINTED_DIGITS_PER_NEGATIVE = 0.25


def _add_negatives(config: TrainConfig, label: int, train_set, val_set):
    """Append ``config.negatives`` generated non-digits, labelled ``label``, to the training
    and validation sets, shared in proportion to their sizes (same seed, same images), and
    a quarter as many digits printed in the same fonts as the letters among them, labelled
    with their digits: without them every font-drawn image the model sees is a non-digit,
    and it learns to refuse printed digits."""
    from digit_recognizer.data import negatives

    n_printed = round(config.negatives * PRINTED_DIGITS_PER_NEGATIVE)
    images, _ = negatives.generate(config.negatives, negatives.TRAIN_KINDS, seed=config.seed + 7,
                                   data_dir=config.data_dir)
    printed, digits = negatives.printed_digits(n_printed, seed=config.seed + 8)
    share = len(val_set[1]) / (len(train_set[1]) + len(val_set[1]))
    n_val, n_val_printed = round(config.negatives * share), round(n_printed * share)
    extra_labels = np.full(len(images), label, dtype=train_set[1].dtype)
    digits = digits.astype(train_set[1].dtype)
    parts = []
    for (x, y), neg, pr in ((train_set, slice(n_val, None), slice(n_val_printed, None)),
                            (val_set, slice(None, n_val), slice(None, n_val_printed))):
        parts.append((np.concatenate([x, images[neg], printed[pr]]),
                      np.concatenate([y, extra_labels[neg], digits[pr]])))
    return parts


def splits(config: TrainConfig):
    """The run's data: (data set, (x_train, y_train), (x_val, y_val), class names), the
    validation split seeded by ``config.seed`` and any generated negatives appended as a
    last class, "not a digit" (the same images on every call)."""
    ds = data.get_dataset(config.dataset)
    images, labels = data.load(ds, "train", config.data_dir)
    if config.limit:
        keep = _select(labels, config.limit, config.seed)
        images, labels = images[keep], labels[keep]
    val_size = config.val_size
    if val_size is None:
        val_size = 5000 if len(labels) >= 50000 else len(labels) // 10
    train_idx, val_idx = data.train_val_split(labels, val_size, seed=config.seed)
    train_set = images[train_idx], labels[train_idx]
    val_set = images[val_idx], labels[val_idx]
    classes = list(ds.classes)
    if config.negatives:
        train_set, val_set = _add_negatives(config, len(classes), train_set, val_set)
        classes.append(modelfile.NOT_A_DIGIT)
    return ds, train_set, val_set, classes


def train(config: TrainConfig, run_dir: str | Path | None = None, *, resume: bool = False,
          command: str | None = None, progress: bool = True) -> dict:
    """Run a whole experiment into ``run_dir``; returns a summary dict.

    Writes config.json, history.csv, last.safetensors and model.safetensors as it goes,
    then, with the best weights restored, evaluates once on the test split and writes
    metrics.json, the plots and report.html. Training runs the engine's fast path with a
    thread per core this process may use (``nn.threads()``); the results do not depend on it.
    """
    if resume:
        run_dir = Path(run_dir)
        try:
            saved = json.loads((run_dir / "config.json").read_text())
            config = TrainConfig.from_dict(saved["settings"])
        except FileNotFoundError:
            raise DigitsError(f"cannot resume: {run_dir / 'config.json'} not found") from None
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise DigitsError(f"cannot resume: {run_dir / 'config.json'} is unreadable ({error})") from None
        command = saved.get("command")
        if not (run_dir / "last.safetensors").is_file():
            _log(f"no epoch of {run_dir} had finished; starting that run over with its saved settings")
            resume = False
    config.check()
    run_dir = Path(run_dir) if run_dir is not None else default_run_dir(config)
    try:
        return _train(config, run_dir, resume, command, progress)
    except OSError as error:  # the run folder unwritable, the disk full, a file-size limit
        where = error.filename or run_dir
        raise DigitsError(f"cannot write {where}: {error.strerror or error}") from None


def _train(config: TrainConfig, run_dir: Path, resume: bool, command: str | None, progress: bool) -> dict:
    if not resume:
        _prepare_run_dir(run_dir)

    ds, (x_train, y_train), (x_val, y_val), classes = splits(config)
    name, spec = models.get_spec(config.model)
    if name in models.ARCHITECTURES and spec[-1]["type"] == "Dense":
        spec[-1]["out_features"] = len(classes)  # the zoo's networks fit any number of classes
    nn.manual_seed(config.seed)
    spec = models.resolve(spec, n_classes=len(classes))
    net = models.build(spec, n_classes=len(classes))
    optimizer = make_optimizer(config.optimizer, net.parameters(), config.learning_rate,
                               config.weight_decay)
    steps = config.epochs * (len(x_train) // config.batch_size)
    schedule = make_schedule(config.schedule, config.learning_rate, steps)

    metadata = {
        "name": name, "spec": spec, "mean": ds.mean, "std": ds.std, "classes": classes,
        "dataset": ds.name, "input_shape": list(models.INPUT_SHAPE), "version": __version__,
        "command": command, "training": asdict(config),
    }
    best = EarlyStopping("val_loss" if len(x_val) else "loss", config.patience)
    callbacks = [LearningRateScheduler(schedule), best,
                 CSVLogger(run_dir / "history.csv"), Checkpoint(run_dir, metadata, best)]
    trainer = Trainer(
        net, optimizer, mean=ds.mean, std=ds.std, batch_size=config.batch_size,
        augmentation=Augmentation(**config.augmentation) if config.augment else None,
        label_smoothing=config.label_smoothing, callbacks=callbacks, seed=config.seed,
        progress=progress,
    )
    if resume:
        trainer.load_checkpoint(run_dir / "last.safetensors")
        _log(f"resuming {run_dir} after epoch {trainer.epoch}/{config.epochs}")
    else:
        run_config = {
            "settings": asdict(config), "seed": config.seed, "command": command, "model_name": name,
            "spec": spec, "n_train": len(x_train), "n_val": len(x_val), "mean": ds.mean,
            "std": ds.std, "classes": classes, "steps": steps, "versions": _versions(),
            "threads": {"engine": nn.threads.default(),
                        **{k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}},
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        atomic_write(run_dir / "config.json", json.dumps(run_config, indent=2) + "\n")
        _log(f"training {name} on {ds.name}: {len(x_train)} images, {len(x_val)} for validation, "
             f"{config.epochs} epoch{'s' if config.epochs != 1 else ''} -> {run_dir}")

    try:
        with nn.threads():
            trainer.fit(x_train, y_train, config.epochs, (x_val, y_val))
    except TrainingDiverged as error:
        kept = (f"the last good checkpoint (epoch {trainer.epoch}) is {run_dir / 'last.safetensors'}"
                if trainer.epoch else "no epoch finished, so there is no checkpoint")
        raise TrainingDiverged(f"{error}; {kept}; try a lower --learning-rate") from None
    except KeyboardInterrupt:
        _log(f"interrupted; continue with: digits train --resume {run_dir}")
        raise

    # The best epoch's weights are back in `net` (EarlyStopping.restore_best).
    from digit_recognizer import report  # matplotlib is imported only when a report is written

    test_images, test_labels = data.load(ds, "test", config.data_dir)
    model = modelfile.Model(net, dict(metadata, epoch=best.best_epoch or trainer.epoch))
    if len(x_val):
        calibrate(model, x_val, y_val)
    metrics = evaluation.evaluate(model, test_images, test_labels)
    model.metadata["metrics"] = {"split": "test", "accuracy": metrics["accuracy"],
                                 "loss": metrics["loss"], "ece": metrics["ece"], "n": metrics["n"],
                                 **({"refused": metrics["refused"]} if "refused" in metrics else {})}
    model.save(run_dir / "model.safetensors")
    report.write_run_artifacts(run_dir, trainer.history, metrics, test_images, test_labels, model,
                              title="Training report")
    best_row = trainer.history[model.metadata["epoch"] - 1]
    summary = {
        "run_dir": str(run_dir), "model": str(run_dir / "model.safetensors"),
        "report": str(run_dir / "report.html"), "epochs": trainer.epoch,
        "best_epoch": model.metadata["epoch"], "val_accuracy": best_row.get("val_accuracy"),
        "test_accuracy": metrics["accuracy"], "test_loss": metrics["loss"], "test_ece": metrics["ece"],
        "temperature": model.temperature,
        "seconds": round(sum(row["seconds"] for row in trainer.history), 1),
    }
    _log(f"test accuracy {100 * metrics['accuracy']:.2f}% (best epoch {summary['best_epoch']})")
    return summary
