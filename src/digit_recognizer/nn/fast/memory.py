"""Memory order: which axis of an array is outermost in memory, and arrays laid out to match.

Element-wise NumPy operations on operands laid out differently run several times slower, so
the fast path keeps every array of a pass in the memory order of the first (see ``fast``).
"""

import numpy as np


def memory_order(x: np.ndarray) -> tuple[int, ...]:
    """x's axes from the largest stride to the smallest: (0, 1, 2, 3) for (N, C, H, W) memory,
    (1, 2, 3, 0) for the (C, H, W, N) memory a fast Conv2D output is a view of."""
    return tuple(sorted(range(x.ndim), key=lambda axis: -x.strides[axis]))


def empty(shape, dtype, order: tuple[int, ...]) -> np.ndarray:
    """An uninitialised array of ``shape`` whose memory is laid out in ``order``."""
    return np.empty([shape[axis] for axis in order], dtype).transpose(np.argsort(order))


def zeros(shape, dtype, order: tuple[int, ...]) -> np.ndarray:
    """Zeros of ``shape`` laid out in ``order``."""
    return np.zeros([shape[axis] for axis in order], dtype).transpose(np.argsort(order))


def with_order(a: np.ndarray, order: tuple[int, ...]) -> np.ndarray:
    """a itself if its memory is laid out in ``order``, else a copy that is."""
    if memory_order(a) == order:
        return a
    out = empty(a.shape, a.dtype, order)
    out[...] = a
    return out
