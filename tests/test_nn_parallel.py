"""The engine's own threads: splitting work gives the same numbers, errors surface, BLAS is lent."""

import threading

import numpy as np
import pytest
from threadpoolctl import threadpool_info

from digit_recognizer import nn
from digit_recognizer.nn import parallel


@pytest.fixture
def threads():
    """Restores the thread count a test changes."""
    before = nn.get_num_threads()
    yield
    nn.set_num_threads(before)


def assert_float32_close(actual, desired):
    """Equal up to float32 rounding. Sums taken in another order (other parts, another BLAS
    kernel: AVX2, AVX-512) differ in the last bits, so the error is measured against the
    tensor's largest value; values that cancel to about zero (a bias ahead of BatchNorm) are
    sums of terms of order 1 at most, so an absolute 1e-6 (~ eps32 * sqrt(terms)) is allowed."""
    actual, desired = np.asarray(actual), np.asarray(desired)
    assert actual.shape == desired.shape
    scale = float(np.abs(desired).max())
    error = float(np.abs(actual.astype(np.float64) - desired).max())
    assert error <= 1e-5 * scale + 1e-6, f"max error {error:.1e}, largest value {scale:.1e}"


def blas_threads():
    return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]


def cnn():
    nn.manual_seed(0)
    return nn.Sequential(nn.Conv2D(1, 8, 3, padding=1), nn.BatchNorm2D(8), nn.ReLU(), nn.MaxPool2D(2),
                         nn.Conv2D(8, 16, 3), nn.ReLU(), nn.Flatten(), nn.Dense(16 * 12 * 12, 32), nn.ReLU(),
                         nn.Dense(32, 10))


@pytest.mark.parametrize("n", [0, -1, 1.5, True, "2"])
def test_set_num_threads_rejects_non_positive_integers(n):
    with pytest.raises(ValueError, match="set_num_threads"):
        nn.set_num_threads(n)


def test_set_num_threads_sets_blas_too(threads):
    nn.set_num_threads(1)
    assert nn.get_num_threads() == 1 and set(blas_threads()) == {1}
    nn.set_num_threads(2)
    assert nn.get_num_threads() == 2 and set(blas_threads()) == {2}


def test_split_gives_every_part_at_least_the_minimum_work(threads):
    nn.set_num_threads(4)
    assert parallel.split(10, 1e9, 1e8) == [(0, 2), (2, 5), (5, 7), (7, 10)]  # one part per thread
    assert parallel.split(10, 2.5e8, 1e8) == [(0, 5), (5, 10)]  # work for two parts only
    assert parallel.split(10, 1.9e8, 1e8) == [(0, 10)]
    assert parallel.split(3, 1e12, 1e8) == [(0, 1), (1, 2), (2, 3)]  # no more parts than items
    nn.set_num_threads(1)
    assert parallel.split(10, 1e12, 1e8) == [(0, 10)]


def test_blas_runs_at_one_thread_inside_split_work_and_gets_its_threads_back(threads):
    nn.set_num_threads(2)
    inside = parallel.run([blas_threads, blas_threads])
    assert inside == [[1] * len(blas_threads())] * 2
    assert set(blas_threads()) == {2}


def test_run_returns_results_in_order_and_nested_splits_run_inline(threads):
    nn.set_num_threads(3)
    all_started = threading.Barrier(3, timeout=10)

    def part(i):
        all_started.wait()
        return i, threading.current_thread().name, parallel.run([lambda: threading.current_thread().name] * 2)
    names = parallel.run([lambda i=i: part(i) for i in range(3)])
    assert [i for i, _, _ in names] == [0, 1, 2]
    assert len({name for _, name, _ in names}) == 3  # three threads
    assert all(inner == [name, name] for _, name, inner in names)  # nested: same thread


def test_an_error_in_one_part_is_raised_after_every_part_has_finished(threads):
    nn.set_num_threads(2)
    finished = threading.Event()

    def slow():
        finished.wait(0.05)
        finished.set()

    def fail():
        raise ValueError("part failed")
    with pytest.raises(ValueError, match="part failed"):
        parallel.run([fail, slow])
    assert finished.is_set()
    assert set(blas_threads()) == {2}  # given back


def test_split_work_gives_the_same_training_step_and_inference(threads, monkeypatch):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((12, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, 12)

    def step():
        net = cnn()
        logits = net.forward(x, training=True)
        _, dlogits = nn.softmax_cross_entropy(logits, y)
        dx = net.backward(dlogits)
        return [logits, dx, net.forward(x)] + [p.grad for p in net.parameters()]

    nn.set_num_threads(1)
    serial = step()
    monkeypatch.setattr(parallel, "MIN_PARALLEL_FLOPS", 0)
    monkeypatch.setattr(parallel, "MIN_PARALLEL_ELEMENTS", 0)
    nn.set_num_threads(3)
    split = step()
    for a, b in zip(serial, split):
        assert_float32_close(a, b)


def test_split_work_is_reproducible_bit_for_bit(threads, monkeypatch):
    """Fixed parts and a fixed order of summing partial results: the same numbers every run."""
    monkeypatch.setattr(parallel, "MIN_PARALLEL_FLOPS", 0)
    monkeypatch.setattr(parallel, "MIN_PARALLEL_ELEMENTS", 0)
    nn.set_num_threads(2)
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((16, 1, 28, 28)).astype(np.float32), rng.integers(0, 10, 16)

    def three_steps():
        net = cnn()
        opt = nn.Adam(net.parameters(), lr=1e-2)
        for _ in range(3):
            _, dlogits = nn.softmax_cross_entropy(net.forward(x, training=True), y)
            net.backward(dlogits, input_grad=False)
            opt.step()
            opt.zero_grad()
        return net.forward(x)
    np.testing.assert_array_equal(three_steps(), three_steps())


def test_large_batch_inference_is_split_and_leaves_the_input_alone(threads, monkeypatch):
    nn.set_num_threads(2)
    net = cnn()
    x = np.random.default_rng(1).standard_normal((64, 1, 28, 28)).astype(np.float32)
    original = x.copy()
    expected = np.concatenate([net.forward(x[i:i + 1]) for i in range(len(x))])  # one by one: inline
    calls = []
    run = parallel.run
    monkeypatch.setattr(parallel, "run", lambda tasks: calls.append(len(tasks)) or run(tasks))
    monkeypatch.setattr(parallel, "MIN_PARALLEL_FLOPS", 1000)
    assert_float32_close(net.forward(x), expected)
    assert 2 in calls  # the batch, in halves
    np.testing.assert_array_equal(x, original)


def test_a_small_batch_is_not_split(threads, monkeypatch):
    nn.set_num_threads(2)
    calls = []
    monkeypatch.setattr(parallel, "run", lambda tasks: calls.append(len(tasks)) or [t() for t in tasks])
    nn.Sequential(nn.Flatten(), nn.Dense(784, 32), nn.ReLU(), nn.Dense(32, 10)).forward(
        np.zeros((64, 1, 28, 28), np.float32))
    assert all(n == 1 for n in calls)
