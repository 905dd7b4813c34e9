"""The fast path: the same layers computed for speed, chosen by one switch.

The layers' own ``forward``/``backward`` (in ``nn``) are the reference: plain (N, C, H, W)
arrays, one thread, each a transcription of the formula in its docstring. This package holds
everything that exists for speed only, for the layers that dominate the time of a network:

- Conv2D works on (C, H, W, N) memory (channels outermost, images innermost): im2col is
  then a copy with long contiguous runs, made a block of output rows at a time so that it
  stays in cache, and the product's result is already the next layer's memory. Layers hand
  (N, C, H, W) *views* of that memory on; MaxPool2D, ReLU, Flatten and Dense keep it.
- Inference overwrites the intermediate arrays it made itself (ReLU, BatchNorm) instead of
  allocating new ones.
- Large pieces of work are cut into parts over the threads of ``nn.threads`` (see there).

    nn.use_fast(False)             # the reference path from here on (the notebooks do this)
    with nn.use_fast(False): ...   # or only inside the block

``Sequential`` consults the switch at each forward pass; a layer without a fast version runs
its reference code on either path. A fast forward pass leaves a ``Cache`` for its backward, so
each backward takes the path its forward pass took. The two paths agree to float32 rounding,
which the tests check (the same gradient checks and PyTorch comparisons run on both).
"""

import numpy as np

_enabled = True


class use_fast:
    """Turn the fast path on or off (``nn.use_fast(False)``); as a context manager, only inside."""

    def __init__(self, enabled: bool = True):
        global _enabled
        self.enabled, self._previous = bool(enabled), _enabled
        _enabled = self.enabled

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        global _enabled
        _enabled = self._previous

    def __repr__(self):
        return f"nn.use_fast({self.enabled})"


def enabled() -> bool:
    """Whether Sequential runs the fast path."""
    return _enabled


class Cache(tuple):
    """What a fast forward pass keeps for its backward (a tuple marked as the fast path's)."""


def _kernels():
    from . import conv, layers
    return {**conv.KERNELS, **layers.KERNELS}


_KERNELS = {}  # layer class -> its fast version (module with forward(layer, x, ...), backward(...))


def kernel(layer):
    """The fast version of ``layer``'s class, or None."""
    if not _KERNELS:
        _KERNELS.update(_kernels())
    return _KERNELS.get(type(layer))


def forward(layers, x: np.ndarray, training: bool) -> np.ndarray:
    """The layers applied to x on the fast path. Arrays made along the way belong to this pass,
    so inference may overwrite them; the caller's x (and any view of it) is left alone."""
    given = x
    for layer in layers:
        fast = kernel(layer)
        if fast is None:
            x = layer.forward(x, training=training)
        else:
            x = fast.forward(layer, x, training, owned=not np.may_share_memory(x, given))
    return x


def backward(layer, grad: np.ndarray, input_grad: bool = True):
    """One layer's backward pass, on the path its forward pass took."""
    if isinstance(layer._cache, Cache):
        return kernel(layer).backward(layer, grad, input_grad)
    return layer.backward(grad) if input_grad else layer.backward(grad, input_grad=False)
