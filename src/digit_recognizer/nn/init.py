"""Weight initialisers (He/Kaiming and Glorot/Xavier), PyTorch fan conventions.

For a weight of shape (out, in, *kernel): fan_in = in * prod(kernel), fan_out = out * prod(kernel).
"""

import math

import numpy as np

from . import rng as _rng


def fans(shape: tuple) -> tuple[int, int]:
    """(fan_in, fan_out) of a Dense (out, in) or Conv2D (out, in, kh, kw) weight."""
    receptive = math.prod(shape[2:]) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


def he_normal(shape, rng=None, dtype=np.float32):
    """N(0, 2 / fan_in): keeps activation variance constant through ReLU layers."""
    std = math.sqrt(2.0 / fans(shape)[0])
    return (_rng.resolve(rng).standard_normal(shape) * std).astype(dtype)


def he_uniform(shape, rng=None, dtype=np.float32):
    """U(-b, b) with b = sqrt(6 / fan_in)."""
    bound = math.sqrt(6.0 / fans(shape)[0])
    return _rng.resolve(rng).uniform(-bound, bound, shape).astype(dtype)


def glorot_normal(shape, rng=None, dtype=np.float32):
    """N(0, 2 / (fan_in + fan_out)): suits tanh/sigmoid layers."""
    fan_in, fan_out = fans(shape)
    std = math.sqrt(2.0 / (fan_in + fan_out))
    return (_rng.resolve(rng).standard_normal(shape) * std).astype(dtype)


def glorot_uniform(shape, rng=None, dtype=np.float32):
    """U(-b, b) with b = sqrt(6 / (fan_in + fan_out))."""
    fan_in, fan_out = fans(shape)
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    return _rng.resolve(rng).uniform(-bound, bound, shape).astype(dtype)


INITIALISERS = {
    "he": he_normal,
    "he_normal": he_normal,
    "he_uniform": he_uniform,
    "glorot": glorot_uniform,
    "glorot_uniform": glorot_uniform,
    "glorot_normal": glorot_normal,
}


def initialise(name: str, shape, rng=None) -> np.ndarray:
    """Look up an initialiser by name (``"he"``, ``"glorot"``, ...) and draw a float32 weight."""
    try:
        fn = INITIALISERS[name]
    except KeyError:
        raise ValueError(f"unknown initialiser {name!r}; choose one of {sorted(INITIALISERS)}") from None
    return fn(tuple(shape), rng=rng)
