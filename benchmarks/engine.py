"""Throughput of the NumPy engine's two paths against PyTorch on the CPU, same networks, batch and threads.

    python benchmarks/engine.py [--batch 64] [--threads 2] [--reps 15] [--nets mlp,lenet5,cnn] [--json PATH]
    python benchmarks/engine.py --profile cnn [--threads 1]     # the engine's fast path only, per layer

For each network the engine's fast path, its reference path and PyTorch run the same
training step (forward, softmax cross-entropy, backward, SGD with momentum) and the same
inference pass, with the same weights, interleaved: fast, reference, torch, fast, ... in
short turns (0.2 s by default), so that all three see the same machine load, whose swings
on a shared machine last seconds. The engine runs under ``nn.threads(--threads)``: the fast
path splits its work over that many threads with BLAS at one thread; the reference path
is single-threaded (its products are single BLAS calls, at one thread).
Each figure is the median over the repetitions (min-max spread in brackets). GFLOP/s
counts the multiply-adds of the dense and convolution layers (a training step: forward +
weight gradients + input gradients of all but the first layer). The peak memory is the
engine's, traced with tracemalloc over one training step at batch 128.
"""

import argparse
import os
import sys
import time


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--reps", type=int, default=15, help="interleaved repetitions per measurement")
    parser.add_argument("--seconds", type=float, default=0.2, help="time per repetition and library")
    parser.add_argument("--nets", default="mlp,lenet5,cnn")
    parser.add_argument("--memory-batch", type=int, default=128)
    parser.add_argument("--profile", metavar="NET", help="per-layer CPU time of one engine training step")
    parser.add_argument("--json", metavar="PATH", help="also write the table as JSON (benchmarks/common.py)")
    return parser.parse_args(argv)


ARGS = parse_args()

import tracemalloc  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))
from digit_recognizer import nn  # noqa: E402

nn.threads(ARGS.threads)  # the engine's threading policy for this program

if not ARGS.profile:
    try:
        import torch
    except ImportError:
        from digit_recognizer.extras import install_command
        sys.exit(f"benchmarks/engine.py: error: the comparison needs torch: {install_command('torch')} "
                 "(or --profile NET for the engine alone)")
    torch.set_num_threads(ARGS.threads)


def networks():
    """name -> (builder of our Sequential, input shape of one image)."""
    return {
        "mlp": (lambda: nn.Sequential(nn.Flatten(), nn.Dense(784, 256), nn.ReLU(), nn.Dense(256, 128), nn.ReLU(),
                                      nn.Dense(128, 10)), (1, 28, 28)),
        "lenet5": (lambda: nn.Sequential(nn.Conv2D(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2D(2),
                                         nn.Conv2D(6, 16, 5), nn.ReLU(), nn.MaxPool2D(2), nn.Flatten(),
                                         nn.Dense(400, 120), nn.ReLU(), nn.Dense(120, 84), nn.ReLU(),
                                         nn.Dense(84, 10)), (1, 28, 28)),
        # PyTorch's examples/mnist network (dropout included).
        "cnn": (lambda: nn.Sequential(nn.Conv2D(1, 32, 3), nn.ReLU(), nn.Conv2D(32, 64, 3), nn.ReLU(),
                                      nn.MaxPool2D(2), nn.Dropout(0.25), nn.Flatten(), nn.Dense(9216, 128),
                                      nn.ReLU(), nn.Dropout(0.5), nn.Dense(128, 10)), (1, 28, 28)),
    }


def to_torch(net):
    """The same network in torch.nn, with the engine's weights copied."""
    modules = []
    for layer in net:
        cfg, kind = layer.config(), type(layer).__name__
        if kind == "Dense":
            m = torch.nn.Linear(cfg["in_features"], cfg["out_features"])
        elif kind == "Conv2D":
            m = torch.nn.Conv2d(cfg["in_channels"], cfg["out_channels"], cfg["kernel_size"],
                                stride=cfg["stride"], padding=cfg["padding"])
        elif kind == "MaxPool2D":
            m = torch.nn.MaxPool2d(cfg["kernel_size"], cfg["stride"])
        elif kind == "Flatten":
            m = torch.nn.Flatten()
        elif kind == "Dropout":
            m = torch.nn.Dropout(cfg["p"])
        else:
            m = getattr(torch.nn, kind)()
        with torch.no_grad():
            for key, value in layer.state_dict().items():
                getattr(m, key).copy_(torch.from_numpy(value))
        modules.append(m)
    return torch.nn.Sequential(*modules)


def gemm_flops(net, shape):
    """(forward, training-step) multiply-add FLOPs per image of the Dense and Conv2D layers."""
    x = np.zeros((1,) + shape, np.float32)
    forward, per_layer = 0, []
    for layer in net:
        y = layer.forward(x)
        if isinstance(layer, nn.Dense):
            per_layer.append(2 * layer.in_features * layer.out_features)
        elif isinstance(layer, nn.Conv2D):
            per_layer.append(2 * y[0].size * layer.in_channels * layer.kernel_size ** 2)
        x = y
    forward = sum(per_layer)
    return forward, 3 * forward - per_layer[0]  # no input gradient for the first layer


def engine_steps(net, x, y, fast=True):
    """(train, infer) on the engine's fast or reference path."""
    opt = nn.SGD(net.parameters(), lr=0.01, momentum=0.9)

    def train():
        with nn.use_fast(fast):
            logits = net.forward(x, training=True)
            _, dlogits = nn.softmax_cross_entropy(logits, y)
            net.backward(dlogits, input_grad=False)
        opt.step()
        opt.zero_grad()

    def infer():
        with nn.use_fast(fast):
            net.forward(x)
    return train, infer


def torch_steps(tnet, x, y):
    x, y = torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))
    opt = torch.optim.SGD(tnet.parameters(), lr=0.01, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()

    def train():
        tnet.train()
        loss = loss_fn(tnet(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad()

    def infer():
        tnet.eval()
        with torch.inference_mode():
            tnet(x)
    return train, infer


def time_per_call(fn, seconds):
    """Seconds per call, calling fn repeatedly for about ``seconds``."""
    fn()
    calls, start = 0, time.perf_counter()
    while True:
        fn()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return elapsed / calls


def interleaved(groups, reps, seconds):
    """groups: {label: (fn, fn, ...)} -> {label: ([times of fn], [times of fn], ...)}, in turns."""
    times = {label: tuple([] for _ in fns) for label, fns in groups.items()}
    for _ in range(reps):
        for label, fns in groups.items():
            for fn, fn_times in zip(fns, times[label]):
                fn_times.append(time_per_call(fn, seconds))
    return times


def peak_training_memory(build, shape, batch):
    """Peak bytes allocated by two training steps: activations, caches, gradients, optimizer
    state and scratch buffers; the weights and the input batch are not counted."""
    net = build()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch,) + shape).astype(np.float32)
    y = rng.integers(0, 10, batch)
    train, _ = engine_steps(net, x, y)
    tracemalloc.start()
    train()
    train()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def profile(name, batch, reps=20):
    """Per-layer forward and backward CPU time (minimum over reps) of one training step.

    CPU time, not wall time, so that other processes on the machine disturb it little."""
    build, shape = networks()[name]
    nn.manual_seed(0)
    net = build()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch,) + shape).astype(np.float32)
    y = rng.integers(0, 10, batch)
    first = next(i for i, layer in enumerate(net) if layer.parameters())
    fwd, bwd = np.full(len(net), np.inf), np.full(len(net), np.inf)
    for _ in range(reps):
        h = x
        for i, layer in enumerate(net):
            start = time.process_time()
            h = nn.Sequential(layer).forward(h, training=True)
            fwd[i] = min(fwd[i], time.process_time() - start)
        _, g = nn.softmax_cross_entropy(h, y)
        for i in range(len(net) - 1, first - 1, -1):
            start = time.process_time()
            g = nn.Sequential(net[i]).backward(g, input_grad=i != first)
            bwd[i] = min(bwd[i], time.process_time() - start)
    print(f"{name}, batch {batch}, threads {ARGS.threads}: CPU ms per layer (minimum of {reps} steps)")
    for i, layer in enumerate(net):
        back = f"{bwd[i] * 1e3:8.2f}" if np.isfinite(bwd[i]) else "       -"
        print(f"{i:3d} {layer!r:72.72} forward {fwd[i] * 1e3:7.2f}  backward {back}")
    total = fwd.sum() + bwd[np.isfinite(bwd)].sum()
    print(f"    total {total * 1e3:.1f} ms = {batch / total:.0f} images per CPU-second")


def main():
    if ARGS.profile:
        return profile(ARGS.profile, ARGS.batch)
    batch = ARGS.batch
    coretype = os.environ.get("OPENBLAS_CORETYPE", "(unset)")
    print(f"batch {batch}, threads: engine {nn.get_num_threads()}, torch {torch.get_num_threads()}; "
          f"numpy {np.__version__}, torch {torch.__version__}, OPENBLAS_CORETYPE={coretype}")
    import threadpoolctl  # a dependency of the engine
    for info in threadpoolctl.threadpool_info():
        if info["user_api"] == "blas":
            print(f"  BLAS: {info['internal_api']} {info.get('version')} {info.get('architecture')} "
                  f"({info['filepath'].rsplit('/', 1)[-1]}), {info['num_threads']} threads")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{ARGS.reps} interleaved repetitions of ~{ARGS.seconds}s each; medians, [min-max]; "
          f"ratio = engine images/s / torch images/s; load average {load:.1f} on {os.cpu_count()} cores\n")

    header = (f"{'network':8} {'mode':6} {'fast img/s':>20} {'reference img/s':>20} {'torch img/s':>20} "
              f"{'fast ratio':>10} {'ref ratio':>9} {'fast GFLOP/s':>12}")
    print(header)
    print("-" * len(header))
    rows = []
    for name in ARGS.nets.split(","):
        build, shape = networks()[name]
        nn.manual_seed(0)
        net = build()
        tnet = to_torch(net)
        rng = np.random.default_rng(0)
        x = rng.standard_normal((batch,) + shape).astype(np.float32)
        y = rng.integers(0, 10, batch)
        fwd, trn = gemm_flops(net, shape)
        f_train, f_infer = engine_steps(net, x, y, fast=True)
        r_train, r_infer = engine_steps(net, x, y, fast=False)
        t_train, t_infer = torch_steps(tnet, x, y)
        times = interleaved({"train": (f_train, r_train, t_train), "infer": (f_infer, r_infer, t_infer)},
                            ARGS.reps, ARGS.seconds)
        for mode, flops in (("train", trn), ("infer", fwd)):
            fast, ref, theirs = (np.array(t) for t in times[mode])
            rate_f, rate_r, rate_t = (batch / np.median(t) for t in (fast, ref, theirs))
            spread = lambda t: f"[{batch / t.max():.0f}-{batch / t.min():.0f}]"  # noqa: E731
            print(f"{name:8} {mode:6} {rate_f:>7.0f} {spread(fast):>12} {rate_r:>7.0f} {spread(ref):>12} "
                  f"{rate_t:>7.0f} {spread(theirs):>12} {rate_f / rate_t:>10.2f} {rate_r / rate_t:>9.2f} "
                  f"{rate_f * flops / 1e9:>12.1f}")
            rows.append([name, mode, round(rate_f / rate_t, 2), round(rate_r / rate_t, 2),
                         round(rate_f), round(rate_r), round(rate_t)])
    print()
    memory = []
    for name in ARGS.nets.split(","):
        build, shape = networks()[name]
        peak = peak_training_memory(build, shape, ARGS.memory_batch)
        memory.append(f"{name} {peak / 2**20:.1f} MiB")
        print(f"peak memory of one engine training step (fast path), {name}, batch {ARGS.memory_batch}: "
              f"{peak / 2**20:.1f} MiB")
    if ARGS.json:
        from common import write_json
        write_json(ARGS.json, "engine",
                   ["network", "mode", "fast / torch", "reference / torch", "fast img/s",
                    "reference img/s", "torch img/s"], rows,
                   notes=(f"batch {batch}, {ARGS.threads} threads (nn.threads for the engine, "
                          "torch.set_num_threads); medians of interleaved turns; ratios above 1 "
                          "mean the engine is faster. The reference path runs on one thread. "
                          f"Load average {load:.1f} on {os.cpu_count()} cores when the run started "
                          "(threads that wait for each other stall on a busy machine). "
                          f"Peak memory of a fast training step at batch {ARGS.memory_batch}: "
                          + ", ".join(memory) + "."))


if __name__ == "__main__":
    main()
