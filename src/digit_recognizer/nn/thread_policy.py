"""The engine's threading policy, held by one object: ``nn.threads``.

    with nn.threads(2):        # two threads inside the block; the previous policy afterwards
        trainer.fit(...)
    nn.threads(1)              # from here on (a command's start, a worker process)

Inside ``nn.threads(n)`` the fast path (``nn.fast``) cuts each large piece of work into parts
along a dimension that is not summed over (the rows or columns of a product's output,
channels, images) and n threads compute the parts side by side; NumPy releases the GIL inside
its loops and BLAS calls. BLAS runs at one thread meanwhile, as each part is one call on one
thread. The parts depend on the shapes only, never on n, and no part's result is added to
another's, so 1, 2 or 3 threads give the same numbers bit for bit.

Outside any ``nn.threads`` the engine runs on the calling thread and leaves BLAS as it found
it. Nothing in a forward or backward pass changes the policy; only ``nn.threads`` does.
"""

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

# A part is worth a thread's hand-off (25-125 us) from this much work on.
PART_FLOPS = 20_000_000       # multiply-adds x 2 of a product
PART_ELEMENTS = 1 << 18       # elements of an element-wise pass
# Part counts: each splits evenly over 2 threads (and 6 and 12 over 3, 4 or 6), so no thread
# waits for another's extra part.
PART_COUNTS = (1, 2, 4, 6, 12)
MAX_PARTS = PART_COUNTS[-1]


class _Policy:
    """The current thread count, BLAS's own count from before the policy, and the pool."""

    def __init__(self):
        self.count = None          # None: no policy set (engine on the caller, BLAS untouched)
        self.blas_before = None    # BLAS's thread counts when a policy was first set
        self.lock = threading.Lock()
        self.pool, self.pool_key = None, None
        self.local = threading.local()  # .busy: this thread computes a part (nested work runs inline)

    def apply(self, count):
        """Set the thread count (None: no policy); returns the previous one."""
        with self.lock:
            previous, self.count = self.count, count
            libraries = _blas_libraries()
            if count is not None and self.blas_before is None:
                self.blas_before = [lib.num_threads for lib in libraries]
            if count is None and self.blas_before is not None:
                for lib, n in zip(libraries, self.blas_before):
                    lib.set_num_threads(n)
                self.blas_before = None
            elif count is not None:
                for lib in libraries:
                    lib.set_num_threads(1)
            return previous

    def executor(self) -> ThreadPoolExecutor:
        key = (os.getpid(), self.count)  # a forked child has no pool threads: make its own
        with self.lock:
            if self.pool_key != key:
                if self.pool is not None and self.pool_key[0] == key[0]:
                    self.pool.shutdown(wait=False)
                self.pool = ThreadPoolExecutor(self.count - 1, thread_name_prefix="nn")
                self.pool_key = key
            return self.pool


_POLICY = _Policy()
_BLAS = {}  # pid -> threadpoolctl controllers of the BLAS libraries NumPy loaded


def _blas_libraries():
    if os.getpid() not in _BLAS:
        try:
            from threadpoolctl import ThreadpoolController
            _BLAS[os.getpid()] = ThreadpoolController().select(user_api="blas").lib_controllers
        except ImportError:  # pragma: no cover - threadpoolctl is a dependency
            _BLAS[os.getpid()] = []
    return _BLAS[os.getpid()]


class threads:
    """Use n threads (default: every core this process may use) for the engine's work, BLAS at one.

    Takes effect when called; as a context manager it restores the previous policy on exit."""

    def __init__(self, n: int | None = None):
        n = threads.default() if n is None else n
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"nn.threads: n must be an integer >= 1, got {n!r}")
        self.n = int(n)
        self._previous = _POLICY.apply(self.n)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        _POLICY.apply(self._previous)

    def __repr__(self):
        return f"nn.threads({self.n})"

    @staticmethod
    def default() -> int:
        """nn.threads()'s n: the cores this process may run on."""
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def get_num_threads() -> int:
    """The engine's thread count now (1 outside any nn.threads)."""
    return _POLICY.count or 1


def parts(length: int, work: float, part_work: float | None = None, min_length: int = 1) -> list[slice]:
    """range(length) as contiguous slices, each at least ``min_length`` long and with at least
    ``part_work`` (default PART_FLOPS) of the ``work``; as many as allowed, rounded down to one
    of PART_COUNTS. They depend on the sizes only, not on the thread count."""
    part_work = PART_FLOPS if part_work is None else part_work
    allowed = min(length // min_length, work // part_work)
    count = max(c for c in PART_COUNTS if c <= max(1, allowed))
    return [slice(length * i // count, length * (i + 1) // count) for i in range(count)]


def run(compute, slices: list[slice]) -> list:
    """[compute(s) for s in slices], the slices shared out over the threads in contiguous
    runs (the calling thread takes the first); results in order. Inside a part, or with one
    thread, everything runs on the calling thread."""
    n = get_num_threads()
    if n == 1 or len(slices) == 1 or getattr(_POLICY.local, "busy", False):
        return [compute(s) for s in slices]
    groups = [slices[len(slices) * t // n:len(slices) * (t + 1) // n] for t in range(n)]
    groups = [group for group in groups if group]

    def compute_group(group):
        _POLICY.local.busy = True
        try:
            return [compute(s) for s in group]
        finally:
            _POLICY.local.busy = False

    futures = [_POLICY.executor().submit(compute_group, group) for group in groups[1:]]
    try:
        results = compute_group(groups[0])
    finally:  # a failing part must not leave the others writing into arrays after we return
        errors = [future.exception() for future in futures]
    for error in errors:
        if error is not None:
            raise error
    for future in futures:
        results += future.result()
    return results
