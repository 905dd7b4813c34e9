"""Work cut into parts for the threads of ``nn.threads``: never along a summed dimension."""

import numpy as np

from .. import thread_policy as threads
from .memory import memory_order

# Narrower parts of a product run well below BLAS's speed.
MIN_ROWS = 32


def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a (m, k) @ b (k, n), in parts along m or n, whichever is longer (never k: that would
    add partial products, and the sum would depend on how the work was cut)."""
    (m, k), n = a.shape, b.shape[1]
    out = np.empty((m, n), np.result_type(a, b))
    flops = 2.0 * m * k * n
    if m >= n:
        threads.run(lambda s: np.matmul(a[s], b, out=out[s]), threads.parts(m, flops, min_length=MIN_ROWS))
    else:
        threads.run(lambda s: np.matmul(a, b[:, s], out=out[:, s]), threads.parts(n, flops, min_length=MIN_ROWS))
    return out


def elementwise(fn, x: np.ndarray, *others: np.ndarray) -> None:
    """fn(x[part], *(o[part] for o in others)) over parts of x's outermost axis in memory
    (so each part is one block of memory); the arrays share x's shape and memory order."""
    axis = memory_order(x)[0]
    index = (slice(None),) * axis
    threads.run(lambda s: fn(*(a[index + (s,)] for a in (x,) + others)),
                threads.parts(x.shape[axis], x.size, threads.PART_ELEMENTS))
