"""Wall time of training with this engine until 99.0% MNIST test accuracy (and PyTorch's).

    OMP_NUM_THREADS=2 python benchmarks/time_to_accuracy.py            # the recipe below
    python benchmarks/time_to_accuracy.py --model models/fast.toml --epochs 3 --every 0.25
    python benchmarks/time_to_accuracy.py --compare-torch --json benchmarks/results/time_to_accuracy.json

``--compare-torch`` then trains the same network in PyTorch (CPU, the same thread
count) with the same recipe in the same process: the same initial weights, the same
batches in the same order (and the same augmented images), Adam (or SGD) with the
same one-cycle schedule, the same probes; and reports the ratio of the two times.

The clock runs only while training (shuffling, augmentation, forward, backward,
updates); it stops while the test set is measured, every ``--every`` epochs. The
test split is only measured, never used for training or for choosing anything: the
recipe is fixed before the run, and the run simply reports the first checkpoint at or
above the target. Also prints the peak resident memory of the process.

Goal: <= 60 s on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from common import write_json  # noqa: E402

from digit_recognizer import data, models, nn  # noqa: E402
from digit_recognizer.data.augment import Augmentation  # noqa: E402
from digit_recognizer.training import (  # noqa: E402
    Callback, LearningRateScheduler, Trainer, make_optimizer, make_schedule,
)


class _Reached(Exception):
    pass


class TestProbe(Callback):
    """Every `interval` steps: stop the clock, measure test accuracy, restart the clock."""

    def __init__(self, every: float, epochs: int, test, target: float, steps_per_epoch: int):
        self.at = {round(k * every * steps_per_epoch) for k in range(1, int(epochs / every) + 1)}
        self.test, self.target = test, target
        self.steps_per_epoch = steps_per_epoch
        self.trained = 0.0
        self.started = None
        self.points = []
        self.last = None

    def on_train_begin(self, trainer):
        self.started = time.perf_counter()

    def probe(self, trainer, step):
        self.trained += time.perf_counter() - self.started
        self.last = step
        _, accuracy = trainer.evaluate(*self.test)
        self.points.append({"epoch": round(step / self.steps_per_epoch, 3),
                            "train_seconds": round(self.trained, 1), "test_accuracy": accuracy})
        print(f"  epoch {step / self.steps_per_epoch:5.2f}  {self.trained:6.1f} s  "
              f"test accuracy {100 * accuracy:.2f}%", file=sys.stderr, flush=True)
        if accuracy >= self.target:
            raise _Reached
        self.started = time.perf_counter()

    def on_batch_begin(self, trainer, step):
        if step in self.at:
            self.probe(trainer, step)

    def on_train_end(self, trainer):
        if self.last != trainer.step:
            self.probe(trainer, trainer.step)


def torch_network(net):
    """The same network in torch.nn, with the engine's (initial) weights copied in."""
    import torch

    modules = []
    for layer in net.layers:
        cfg, kind = layer.config(), type(layer).__name__
        if kind == "Dense":
            m = torch.nn.Linear(cfg["in_features"], cfg["out_features"])
        elif kind == "Conv2D":
            m = torch.nn.Conv2d(cfg["in_channels"], cfg["out_channels"], cfg["kernel_size"],
                                stride=cfg.get("stride", 1), padding=cfg.get("padding", 0))
        elif kind in ("MaxPool2D", "AvgPool2D"):
            m = getattr(torch.nn, kind[:-1] + "d")(cfg["kernel_size"], cfg.get("stride") or cfg["kernel_size"])
        elif kind in ("BatchNorm1D", "BatchNorm2D"):
            m = getattr(torch.nn, kind[:-1] + "d")(cfg["num_features"], eps=cfg.get("eps", 1e-5),
                                                   momentum=cfg.get("momentum", 0.1))
        elif kind == "Dropout":
            m = torch.nn.Dropout(cfg.get("p", 0.5))
        elif kind in ("Flatten", "ReLU", "Tanh", "Sigmoid"):
            m = getattr(torch.nn, kind)()
        else:
            raise SystemExit(f"--compare-torch: no PyTorch counterpart written for {kind}")
        with torch.no_grad():
            for key, value in layer.state_dict().items():
                getattr(m, key).copy_(torch.from_numpy(np.ascontiguousarray(value)))
        modules.append(m)
    return torch.nn.Sequential(*modules)


def torch_time_to_accuracy(args, net, images, labels, test, ds, steps_per_epoch) -> dict:
    """Train ``net``'s PyTorch twin with the engine run's batches, schedule and probes."""
    import torch

    torch.manual_seed(args.seed)
    torch.set_num_threads(nn.get_num_threads())
    tnet = torch_network(net)
    if args.optimizer == "adam":
        opt = torch.optim.Adam(tnet.parameters(), lr=args.learning_rate)
    else:
        opt = torch.optim.SGD(tnet.parameters(), lr=args.learning_rate, momentum=0.9, nesterov=True)
    schedule = make_schedule("onecycle", args.learning_rate, args.epochs * steps_per_epoch)
    loss_fn = torch.nn.CrossEntropyLoss()
    # Batches as Trainer makes them: the same generators, order and augmentation.
    batches = Trainer(net, None, mean=ds.mean, std=ds.std, batch_size=args.batch_size,
                      augmentation=Augmentation() if args.augment else None, seed=args.seed, progress=False)
    at = {round(k * args.every * steps_per_epoch) for k in range(1, int(args.epochs / args.every) + 1)}
    x_test = torch.from_numpy(data.normalize(test[0], ds.mean, ds.std))
    y_test = torch.from_numpy(test[1].astype(np.int64))
    points, trained, step = [], 0.0, 0

    def probe():
        tnet.eval()
        with torch.inference_mode():
            correct = sum(int((tnet(x_test[i:i + 1000]).argmax(1) == y_test[i:i + 1000]).sum())
                          for i in range(0, len(y_test), 1000))
        tnet.train()
        points.append({"epoch": round(step / steps_per_epoch, 3), "train_seconds": round(trained, 1),
                       "test_accuracy": correct / len(y_test)})
        print(f"  torch epoch {step / steps_per_epoch:5.2f}  {trained:6.1f} s  "
              f"test accuracy {100 * points[-1]['test_accuracy']:.2f}%", file=sys.stderr, flush=True)
        return points[-1]["test_accuracy"] >= args.target

    tnet.train()
    started = time.perf_counter()
    for _ in range(args.epochs):
        order = batches.shuffle_rng.permutation(len(images))
        for b in range(steps_per_epoch):
            if step in at:
                trained += time.perf_counter() - started
                if probe():
                    return {"reached": True, "points": points}
                started = time.perf_counter()
            idx = np.sort(order[b * args.batch_size:(b + 1) * args.batch_size])
            x = torch.from_numpy(batches._inputs(images[idx], True))
            y = torch.from_numpy(labels[idx].astype(np.int64))
            for group in opt.param_groups:
                group["lr"] = float(schedule(step))
            opt.zero_grad(set_to_none=True)
            loss_fn(tnet(x), y).backward()
            opt.step()
            step += 1
    trained += time.perf_counter() - started
    return {"reached": probe(), "points": points}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=str(ROOT / "models" / "fast.toml"))
    p.add_argument("--epochs", type=int, default=2, help="length of the one-cycle schedule")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--learning-rate", type=float, default=4e-3)
    p.add_argument("--optimizer", default="adam")
    p.add_argument("--augment", action=argparse.BooleanOptionalAction, default=False)
    p.add_argument("--every", type=float, default=0.25, help="measure every this many epochs")
    p.add_argument("--target", type=float, default=0.99)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--compare-torch", action="store_true",
                   help="also train the same network with PyTorch (CPU), same recipe, and report the ratio")
    p.add_argument("--json", metavar="PATH", help="also write the table to PATH (benchmarks/common.py)")
    args = p.parse_args(argv)

    ds = data.DATASETS["mnist"]
    images, labels = data.load(ds, "train", quiet=True)
    test = data.load(ds, "test", quiet=True)
    nn.manual_seed(args.seed)
    _, spec = models.get_spec(args.model)
    net = models.build(spec)
    optimizer = make_optimizer(args.optimizer, net.parameters(), args.learning_rate)
    steps_per_epoch = len(images) // args.batch_size
    schedule = make_schedule("onecycle", args.learning_rate, args.epochs * steps_per_epoch)
    probe = TestProbe(args.every, args.epochs, test, args.target, steps_per_epoch)
    trainer = Trainer(net, optimizer, mean=ds.mean, std=ds.std, batch_size=args.batch_size,
                      augmentation=Augmentation() if args.augment else None, seed=args.seed,
                      callbacks=[LearningRateScheduler(schedule), probe], progress=False)
    threads = os.environ.get("OMP_NUM_THREADS") or os.environ.get("OPENBLAS_NUM_THREADS")
    print(f"time to {100 * args.target:.1f}% test accuracy: {args.model}, batch {args.batch_size}, "
          f"{args.optimizer} lr {args.learning_rate} one-cycle over {args.epochs} epochs, "
          f"threads {threads or 'default'}", file=sys.stderr)
    try:
        trainer.fit(images, labels, args.epochs)
        reached = None
    except _Reached:
        reached = probe.points[-1]
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    final = probe.points[-1]["test_accuracy"]
    if reached:
        print(f"reached {100 * reached['test_accuracy']:.2f}% after {reached['train_seconds']} s of "
              f"training ({reached['epoch']} epochs); peak RSS {round(peak_rss_mb)} MB")
    else:
        print(f"did not reach {100 * args.target:.1f}% (last {100 * final:.2f}%); peak RSS {round(peak_rss_mb)} MB")
    rows = [["this engine", reached["train_seconds"] if reached else None,
             reached["epoch"] if reached else None, round(100 * final, 2)]]
    notes = (f"{os.path.relpath(args.model, ROOT)}, batch {args.batch_size}, {args.optimizer} lr {args.learning_rate} one-cycle over "
             f"{args.epochs} epochs, augmentation {'on' if args.augment else 'off'}, seed {args.seed}, "
             f"{nn.get_num_threads()} thread(s) each; the clock stops while the test set is measured every "
             f"{args.every} epochs; peak RSS {round(peak_rss_mb)} MB")
    if args.compare_torch:
        import torch

        nn.manual_seed(args.seed)
        fresh = models.build(spec)  # the same initial weights as the engine's run
        twin = torch_time_to_accuracy(args, fresh, images, labels, test, ds, steps_per_epoch)
        last = twin["points"][-1]
        rows.append([f"PyTorch {torch.__version__}", last["train_seconds"] if twin["reached"] else None,
                     last["epoch"] if twin["reached"] else None, round(100 * last["test_accuracy"], 2)])
        if reached and twin["reached"]:
            ratio = reached["train_seconds"] / last["train_seconds"]
            print(f"PyTorch reached {100 * last['test_accuracy']:.2f}% after {last['train_seconds']} s; "
                  f"this engine / PyTorch = {ratio:.2f}")
            notes += f"; this engine's time / PyTorch's = {ratio:.2f}"
        else:
            print(f"PyTorch {'reached' if twin['reached'] else 'did not reach'} the target "
                  f"(last {100 * last['test_accuracy']:.2f}% after {last['train_seconds']} s)")
    if args.json:
        write_json(args.json, "time_to_accuracy", ["framework", f"seconds to {100 * args.target:g}%",
                                                   "epochs", "last test accuracy %"], rows, notes=notes)
    return 0 if reached else 1


if __name__ == "__main__":
    sys.exit(main())
