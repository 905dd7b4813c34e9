"""The engine's threads: large blocks of work split over cores.

NumPy's BLAS threads each matrix product by itself, cheaply (its idle threads spin, ready for
the next product), but everything between products (im2col copies, activations, pooling,
col2im) runs on one core. For such work the engine splits large blocks over a small pool of
its own threads: a range of a convolution's output rows, a range of channels, half of a batch.
NumPy releases the GIL inside these operations, so the threads run side by side. A hand-off to
a Python thread costs 25-125 us, so only blocks of half a millisecond or more per thread are split;
while they run, BLAS is held at one thread (the engine's threads call it), and it gets its
threads back afterwards.

    nn.set_num_threads(2)   # default: the thread count NumPy's BLAS started with (OMP_NUM_THREADS, ...)
"""

import itertools
import os
import threading
from contextlib import contextmanager
from concurrent.futures import ThreadPoolExecutor

import numpy as np

# Work below these sizes per thread stays on the calling thread.
MIN_PARALLEL_FLOPS = 50_000_000    # multiply-adds x 2
MIN_PARALLEL_ELEMENTS = 1 << 19    # elements of an element-wise pass

_num_threads = None      # None until set_num_threads, or the default is first read
_blas_setters = None     # n -> None for each BLAS library loaded with NumPy
_blas_default = None     # BLAS's own thread count when the engine first looked
_holds = 0               # blas_at_one_thread blocks open now, in any thread
_lock = threading.Lock()
_pool, _pool_key = None, None  # the pool and the (pid, threads) it was made for
_local = threading.local()     # .busy: this thread runs part of a split, so nested splits run inline


def _find_blas():
    """Thread-count setters of the BLAS libraries NumPy loaded, and their current thread count."""
    global _blas_setters, _blas_default
    try:
        from threadpoolctl import ThreadpoolController
        libraries = ThreadpoolController().select(user_api="blas").lib_controllers
    except ImportError:
        libraries = []
    setters = []
    for lib in libraries:
        setter = lib.set_num_threads
        if lib.internal_api == "openblas":
            # OpenBLAS's own setter: threadpoolctl's obeys only the first thread that calls it,
            # and blocks may start on any thread.
            names = (f"{pre}openblas_set_num_threads{suf}"
                     for pre, suf in itertools.product(("", "scipy_"), ("", "64_", "_64")))
            setter = next((getattr(lib.dynlib, name) for name in names if hasattr(lib.dynlib, name)), setter)
        setters.append(setter)
    _blas_default = max((lib.num_threads or 1 for lib in libraries), default=None)
    _blas_setters = setters


def _set_blas_threads(n: int) -> None:
    if _blas_setters is None:
        _find_blas()
    for setter in _blas_setters:
        setter(n)


def set_num_threads(n: int) -> None:
    """Use n threads (n >= 1), for BLAS and for the engine's own blocks (as torch.set_num_threads)."""
    global _num_threads
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"set_num_threads: n must be an integer >= 1, got {n!r}")
    with _lock:
        _num_threads = int(n)
        if _holds == 0:
            _set_blas_threads(_num_threads)


def get_num_threads() -> int:
    global _num_threads
    if _num_threads is None:
        if _blas_setters is None:
            _find_blas()
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        _num_threads = _blas_default or cores or 1
    return _num_threads


def _executor() -> ThreadPoolExecutor:
    global _pool, _pool_key
    key = (os.getpid(), get_num_threads())
    with _lock:
        if _pool_key != key:  # (a forked child, or a new thread count)
            if _pool is not None and _pool_key[0] == key[0]:
                _pool.shutdown(wait=False)
            _pool = ThreadPoolExecutor(max(1, key[1] - 1), thread_name_prefix="nn")
            _pool_key = key
        return _pool


def _marked(task):
    _local.busy = True
    try:
        return task()
    finally:
        _local.busy = False


@contextmanager
def blas_at_one_thread(active: bool = True):
    """Inside, NumPy's BLAS runs at one thread (process-wide, counted across threads), so that
    the engine's threads can call it side by side; it gets its threads back afterwards."""
    global _holds
    if not active:
        yield
        return
    with _lock:
        _holds += 1
        if _holds == 1:
            _set_blas_threads(1)
    try:
        yield
    finally:
        with _lock:
            _holds -= 1
            if _holds == 0:
                _set_blas_threads(get_num_threads())


def run(tasks: list) -> list:
    """Call each of ``tasks`` (no-argument callables) in parallel; their results, in order.

    The calling thread runs the first task itself; inside a task, further splits run inline."""
    if len(tasks) == 1 or getattr(_local, "busy", False):
        return [task() for task in tasks]
    with blas_at_one_thread():
        futures = [_executor().submit(_marked, task) for task in tasks[1:]]
        try:
            first = _marked(tasks[0])
        finally:  # a failing task must not leave the others writing into arrays after we return
            errors = [future.exception() for future in futures]
    for error in errors:
        if error is not None:
            raise error
    return [first] + [future.result() for future in futures]


def split(n: int, work: float, min_work: float | None = None) -> list[tuple[int, int]]:
    """range(n) as contiguous (start, stop) parts, as many as there are threads but each with
    at least ``min_work`` (default MIN_PARALLEL_FLOPS) of the ``work``; one part if fewer than two."""
    threads = _num_threads or get_num_threads()
    min_work = MIN_PARALLEL_FLOPS if min_work is None else min_work
    if threads == 1 or work < 2 * min_work:
        return [(0, n)]
    parts = max(1, int(min(n, threads, work // max(min_work, 1e-300))))
    return [(n * i // parts, n * (i + 1) // parts) for i in range(parts)]


def matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """a (m, k) @ b (k, n); a large product is split over the threads along the largest of m, n, k
    (k: the threads' partial products are summed)."""
    (m, k), n = a.shape, b.shape[1]
    parts = split(max(m, n, k), 2.0 * m * k * n)
    if len(parts) == 1:
        return np.matmul(a, b, out=out)
    if out is None:
        out = np.empty((m, n), np.result_type(a, b))
    if k > max(m, n):
        partial = run([lambda s=s, e=e: a[:, s:e] @ b[s:e] for s, e in parts])
        np.add(partial[0], partial[1], out=out)
        for p in partial[2:]:
            out += p
    elif m >= n:
        run([lambda s=s, e=e: np.matmul(a[s:e], b, out=out[s:e]) for s, e in parts])
    else:
        run([lambda s=s, e=e: np.matmul(a, b[:, s:e], out=out[:, s:e]) for s, e in parts])
    return out


def map_slices(fn, x: np.ndarray, *others: np.ndarray, axis: int) -> None:
    """fn(x[part], *(o[part] for o in others)) over parts of ``axis``, in parallel when x is large.

    The arrays must share that axis's length; give the axis of largest stride, so that each
    part is one block of memory."""
    parts = split(x.shape[axis], x.size, MIN_PARALLEL_ELEMENTS)
    if len(parts) == 1:
        fn(x, *others)
        return
    index = (slice(None),) * axis
    run([lambda s=s, e=e: fn(*(a[index + (slice(s, e),)] for a in (x,) + others)) for s, e in parts])


def map_elements(fn, x: np.ndarray, *others: np.ndarray) -> None:
    """map_slices for element-wise work on arrays laid out as x: split along the axis of largest
    stride among those at least as long as the thread count."""
    if x.size < MIN_PARALLEL_ELEMENTS * (_num_threads or get_num_threads()):
        fn(x, *others)
        return
    by_stride = sorted(range(x.ndim), key=lambda axis: -x.strides[axis])
    axis = next((axis for axis in by_stride if x.shape[axis] >= get_num_threads()), by_stride[0])
    map_slices(fn, x, *others, axis=axis)
