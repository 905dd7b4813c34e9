"""Wall time of training with this engine until 99.0% MNIST test accuracy.

    OMP_NUM_THREADS=2 python benchmarks/time_to_accuracy.py            # the recipe below
    python benchmarks/time_to_accuracy.py --model models/fast.toml --epochs 3 --every 0.25

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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

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
    p.add_argument("--json", action="store_true")
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
    result = {"target": args.target, "reached": reached is not None,
              "seconds": reached["train_seconds"] if reached else None,
              "epochs": reached["epoch"] if reached else None,
              "final_test_accuracy": probe.points[-1]["test_accuracy"], "points": probe.points,
              "peak_rss_mb": round(peak_rss_mb), "threads": threads,
              "recipe": {k: v for k, v in vars(args).items() if k != "json"}}
    if args.json:
        print(json.dumps(result, indent=2))
    elif reached:
        print(f"reached {100 * reached['test_accuracy']:.2f}% after {reached['train_seconds']} s of "
              f"training ({reached['epoch']} epochs); peak RSS {result['peak_rss_mb']} MB")
    else:
        print(f"did not reach {100 * args.target:.1f}% (last {100 * result['final_test_accuracy']:.2f}%); "
              f"peak RSS {result['peak_rss_mb']} MB")
    return 0 if reached else 1


if __name__ == "__main__":
    sys.exit(main())
