"""A small neural-network engine in NumPy with hand-written backward passes.

    from digit_recognizer import nn
    net = nn.Sequential(nn.Conv2D(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2D(2),
                        nn.Flatten(), nn.Dense(8 * 14 * 14, 10))
    logits = net.forward(x, training=True)              # x float32 (N, 1, 28, 28)
    loss, dlogits = nn.softmax_cross_entropy(logits, y)
    net.backward(dlogits)                                # fills every Parameter.grad
    opt = nn.Adam(net.parameters(), lr=1e-3); opt.step(); opt.zero_grad()

Weights are laid out as in PyTorch (Dense (out, in), Conv2D (out, in, kh, kw)) and
``state_dict()`` uses torch.nn.Sequential's keys.

The layers' own ``forward``/``backward`` are the reference: plain (N, C, H, W) NumPy, one
thread, each the formula in its docstring. ``Sequential`` runs the fast path (``nn.fast``:
the same layers computed for speed) unless ``nn.use_fast(False)``; ``nn.threads(n)`` gives
the fast path n threads (see ``nn.thread_policy``). It depends on NumPy, and on threadpoolctl to set
BLAS's threads.
"""

from . import init, schedules
from .activations import GELU, LeakyReLU, ReLU, Sigmoid, Softmax, Tanh
from .conv import AvgPool2D, Conv2D, GlobalAvgPool2D, MaxPool2D
from .fast import use_fast
from .layers import Dense, Dropout, Flatten
from .losses import log_softmax, mse_loss, softmax, softmax_cross_entropy
from .module import Layer, Parameter
from .normalization import BatchNorm1D, BatchNorm2D
from .optim import SGD, Adam, AdamW, Optimizer, RMSprop, clip_grad_norm
from .rng import get_rng_state, manual_seed, set_rng_state
from .schedules import CosineLR, LinearWarmup, OneCycleLR, StepLR
from .sequential import Sequential
from .thread_policy import get_num_threads, threads

__all__ = [
    "Parameter", "Layer", "Sequential",
    "Dense", "Conv2D", "MaxPool2D", "AvgPool2D", "GlobalAvgPool2D", "Flatten", "Dropout",
    "BatchNorm1D", "BatchNorm2D",
    "ReLU", "LeakyReLU", "Sigmoid", "Tanh", "GELU", "Softmax",
    "softmax", "log_softmax", "softmax_cross_entropy", "mse_loss",
    "Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "clip_grad_norm",
    "StepLR", "CosineLR", "OneCycleLR", "LinearWarmup", "schedules", "init",
    "manual_seed", "get_rng_state", "set_rng_state", "threads", "get_num_threads", "use_fast",
]
