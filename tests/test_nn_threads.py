"""The engine's threading policy: nn.threads sets it and restores it, work is cut the same way
whatever the thread count (so results are bit-identical), errors surface, and the fast path
agrees with the reference path."""

import threading

import numpy as np
import pytest
from threadpoolctl import threadpool_info

from digit_recognizer import nn
from digit_recognizer.nn import thread_policy
from float32 import assert_float32_close


def blas_threads():
    return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]


def cnn(dropout=0.2):
    nn.manual_seed(0)
    return nn.Sequential(nn.Conv2D(1, 8, 3, padding=1), nn.BatchNorm2D(8), nn.ReLU(), nn.MaxPool2D(2),
                         nn.Conv2D(8, 16, 3), nn.ReLU(), nn.Dropout(dropout), nn.Flatten(), nn.Dense(16 * 12 * 12, 32),
                         nn.ReLU(), nn.Dense(32, 10))


@pytest.fixture
def small_parts(monkeypatch):
    """Every piece of work cut into parts however small (such parts normally run whole), and
    convolutions in blocks of one output row: the threads get something to share."""
    from digit_recognizer.nn.fast import conv, split
    monkeypatch.setattr(conv, "BLOCK_BYTES", 1)
    monkeypatch.setattr(conv, "MIN_PART_ROWS", 1)
    monkeypatch.setattr(split, "MIN_ROWS", 1)
    monkeypatch.setattr(thread_policy, "PART_FLOPS", 1)
    monkeypatch.setattr(thread_policy, "PART_ELEMENTS", 1)


@pytest.mark.parametrize("n", [0, -1, 1.5, True, "2"])
def test_threads_rejects_non_positive_integers(n):
    with pytest.raises(ValueError, match="nn.threads"):
        nn.threads(n)


def test_threads_sets_the_policy_and_restores_it():
    before_blas, before = blas_threads(), nn.get_num_threads()
    with nn.threads(3):
        assert nn.get_num_threads() == 3 and set(blas_threads()) == {1}  # each part is one BLAS call
        with nn.threads(2):
            assert nn.get_num_threads() == 2
        assert nn.get_num_threads() == 3 and set(blas_threads()) == {1}
        inside_parts = thread_policy.run(lambda _: blas_threads(), [slice(i, i + 1) for i in range(3)])
        assert all(set(seen) == {1} for seen in inside_parts)  # on the pool's threads too
    assert nn.get_num_threads() == before and blas_threads() == before_blas


def test_a_pass_leaves_the_policy_as_it_found_it(small_parts):
    x = np.random.default_rng(0).standard_normal((4, 1, 28, 28)).astype(np.float32)
    net = cnn()
    for n in (None, 2):
        with nn.threads(n or 1) if n else nn.use_fast(True):
            before = (nn.get_num_threads(), blas_threads())
            _, g = nn.softmax_cross_entropy(net.forward(x, training=True), np.arange(4))
            net.backward(g)
            net.forward(x)
            assert (nn.get_num_threads(), blas_threads()) == before


def test_parts_depend_on_the_sizes_only():
    assert thread_policy.parts(10, 1e12, 1e8) == thread_policy.parts(10, 1e12, 1e8)
    assert thread_policy.parts(10, 2.5e8, 1e8) == [slice(0, 5), slice(5, 10)]  # work for two parts only
    assert thread_policy.parts(10, 1.9e8, 1e8) == [slice(0, 10)]
    assert thread_policy.parts(3, 1e12, 1e8) == [slice(0, 1), slice(1, 3)]  # no more than items, an even count
    assert len(thread_policy.parts(100, 5e8, 1e8)) == 4  # work for five parts: four, an even split
    assert len(thread_policy.parts(100, 1e12, 1e8)) == thread_policy.MAX_PARTS
    assert thread_policy.parts(100, 1e12, 1e8, min_length=40) == [slice(0, 50), slice(50, 100)]


def test_the_part_sizes_can_be_changed_for_the_whole_engine(monkeypatch):
    flops = 2.0 * 64 * 784 * 256  # a Dense(784, 256) product at batch 64
    assert len(thread_policy.parts(256, flops)) == 1
    monkeypatch.setattr(thread_policy, "PART_FLOPS", flops / 4)
    assert len(thread_policy.parts(256, flops)) == 4


def test_run_returns_results_in_order_and_nested_work_runs_inline():
    all_started = threading.Barrier(3, timeout=10)

    def part(s):
        all_started.wait()
        inner = thread_policy.run(lambda _: threading.current_thread().name, [slice(0, 1), slice(1, 2)])
        return s.start, threading.current_thread().name, inner
    with nn.threads(3):
        names = thread_policy.run(part, [slice(i, i + 1) for i in range(3)])
    assert [i for i, _, _ in names] == [0, 1, 2]
    assert len({name for _, name, _ in names}) == 3  # three threads
    assert all(inner == [name, name] for _, name, inner in names)  # nested: same thread


def test_an_error_in_one_part_is_raised_after_every_part_has_finished():
    finished = threading.Event()

    def part(s):
        if s.start == 0:
            raise ValueError("part failed")
        finished.wait(0.05)
        finished.set()
    with nn.threads(2), pytest.raises(ValueError, match="part failed"):
        thread_policy.run(part, [slice(0, 1), slice(1, 2)])
    assert finished.is_set()


def training_step(x, y, dropout=0.2):
    """Logits, dx, inference and every gradient of one training step of a fresh cnn()."""
    net = cnn(dropout)
    nn.manual_seed(1)
    logits = net.forward(x, training=True)
    _, dlogits = nn.softmax_cross_entropy(logits, y)
    dx = net.backward(dlogits)
    return [logits, dx, net.forward(x)] + [p.grad for p in net.parameters()]


def test_one_two_and_three_threads_give_bit_identical_training_steps(small_parts):
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((12, 1, 28, 28)).astype(np.float32), rng.integers(0, 10, 12)
    results = {}
    for n in (1, 2, 3):
        with nn.threads(n):
            results[n] = training_step(x, y)
    for n in (2, 3):
        for a, b in zip(results[1], results[n]):
            np.testing.assert_array_equal(a, b)


def test_one_two_and_three_threads_give_bit_identical_training_runs_at_real_sizes():
    """The parts as they are cut at batch 64 (no small_parts): three Adam steps."""
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((64, 1, 28, 28)).astype(np.float32), rng.integers(0, 10, 64)

    def three_steps():
        net = cnn()
        opt = nn.Adam(net.parameters(), lr=1e-2)
        for _ in range(3):
            _, dlogits = nn.softmax_cross_entropy(net.forward(x, training=True), y)
            net.backward(dlogits, input_grad=False)
            opt.step()
            opt.zero_grad()
        return net.forward(x)
    results = []
    for n in (1, 2, 3):
        with nn.threads(n):
            results.append(three_steps())
    np.testing.assert_array_equal(results[0], results[1])
    np.testing.assert_array_equal(results[0], results[2])


def test_the_fast_path_agrees_with_the_reference_path(small_parts):
    """(Without dropout: the fast path draws its masks in the order of its memory layout.)"""
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((12, 1, 28, 28)).astype(np.float32), rng.integers(0, 10, 12)
    with nn.use_fast(False):
        reference = training_step(x, y, dropout=0.0)
    with nn.use_fast(True), nn.threads(3):
        fast = training_step(x, y, dropout=0.0)
    for a, b in zip(fast, reference):
        assert_float32_close(a, b)


def test_inference_in_parts_leaves_the_input_alone(small_parts):
    net = cnn()
    x = np.random.default_rng(1).standard_normal((16, 1, 28, 28)).astype(np.float32)
    original = x.copy()
    with nn.use_fast(False):
        expected = net.forward(x)
    with nn.threads(2):
        assert_float32_close(net.forward(x), expected)
    np.testing.assert_array_equal(x, original)


def test_a_small_batch_runs_on_the_calling_thread(monkeypatch):
    calls = []
    run = thread_policy.run
    monkeypatch.setattr(thread_policy, "run", lambda compute, parts: calls.append(len(parts)) or run(compute, parts))
    with nn.threads(2):
        nn.Sequential(nn.Flatten(), nn.Dense(784, 32), nn.ReLU(), nn.Dense(32, 10)).forward(
            np.zeros((8, 1, 28, 28), np.float32))
    assert calls and all(n == 1 for n in calls)
