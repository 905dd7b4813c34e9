"""Parameter, the Layer base class and Sequential.

Every layer implements ``forward(x, training=False)`` and ``backward(grad_out) -> grad_in``.
``forward(training=True)`` caches what the backward pass needs; ``training=False`` keeps
nothing between calls, so inference holds no extra memory and threads may share a network
for prediction. Computation runs in the input's dtype: float32 normally, float64 for
gradient checks.
"""

import numpy as np

from . import parallel

FLOAT_DTYPES = (np.float32, np.float64)


class Parameter:
    """A trainable array ``.data`` and its gradient ``.grad`` (None until a backward pass).

    Backward passes accumulate into ``.grad`` (as PyTorch does); ``optimizer.zero_grad()``
    resets it to None.
    """

    __slots__ = ("data", "grad")

    def __init__(self, data):
        data = np.asarray(data)
        self.data = data if data.dtype in FLOAT_DTYPES else data.astype(np.float32)
        self.grad = None

    @property
    def shape(self):
        return self.data.shape

    def accumulate(self, grad: np.ndarray) -> None:
        """grad (same shape as data) is added to ``.grad``, stored in ``.data``'s dtype."""
        grad = grad.astype(self.data.dtype, copy=False)
        if self.grad is None:
            self.grad = grad
        else:
            self.grad = self.grad + grad

    def __repr__(self):
        return f"Parameter(shape={self.data.shape}, dtype={self.data.dtype})"


def check_input(layer, x, expected: str, ndim: int | None = None, channels: int | None = None,
                features: int | None = None) -> None:
    """Raise ValueError naming ``layer`` and the ``expected`` shape unless x is a float32/float64
    array with ``ndim`` dimensions, ``channels`` on axis 1 and ``features`` on the last axis."""
    ok = (isinstance(x, np.ndarray) and x.dtype in FLOAT_DTYPES and x.ndim >= 1
          and (ndim is None or x.ndim == ndim)
          and (channels is None or x.shape[1] == channels)
          and (features is None or x.shape[-1] == features))
    if not ok:
        got = (f"shape {x.shape}, dtype {x.dtype}" if isinstance(x, np.ndarray)
               else f"a {type(x).__name__}")
        raise ValueError(f"{layer!r} expected a float32 or float64 array of shape {expected}, got {got}")


def memory_order(x: np.ndarray) -> tuple[int, ...]:
    """x's axes from the largest stride to the smallest: (0, 1, 2, 3) for (N, C, H, W) memory,
    (1, 2, 3, 0) for the (C, H, W, N) memory a Conv2D output is a view of."""
    return tuple(sorted(range(x.ndim), key=lambda axis: -x.strides[axis]))


def empty(shape, dtype, order: tuple[int, ...]) -> np.ndarray:
    """An uninitialised array of ``shape`` whose memory is laid out in ``order`` (see memory_order)."""
    return np.empty([shape[axis] for axis in order], dtype).transpose(np.argsort(order))


def zeros(shape, dtype, order: tuple[int, ...]) -> np.ndarray:
    """Zeros of ``shape`` laid out in ``order`` (see memory_order)."""
    return np.zeros([shape[axis] for axis in order], dtype).transpose(np.argsort(order))


def with_order(a: np.ndarray, order: tuple[int, ...]) -> np.ndarray:
    """a itself if its memory is laid out in ``order``, else a copy that is.

    Element-wise NumPy operations on operands of different layouts run several times slower,
    so a gradient arriving in another layout is converted once, up front.
    """
    if memory_order(a) == order:
        return a
    out = empty(a.shape, a.dtype, order)
    out[...] = a
    return out


class Layer:
    """Base class. Subclasses list their Parameters in ``_params`` and buffers in ``_buffers``."""

    _params: tuple[str, ...] = ()
    _buffers: tuple[str, ...] = ()
    _cache = None  # what forward(training=True) keeps for backward

    def _cached(self):
        """The training forward pass's cache; RuntimeError if there is none to backpropagate."""
        if self._cache is None:
            raise RuntimeError(f"{self!r}: backward() needs a forward(training=True) first")
        return self._cache

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        raise NotImplementedError

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def forward_inplace(self, x: np.ndarray) -> np.ndarray:
        """Inference that may overwrite x, an intermediate array no one else holds.

        Element-wise layers override it to reuse x's memory: one pass over it instead of a new
        array. Sequential calls it at inference on every array but the caller's input."""
        return self.forward(x)

    def __call__(self, x, training=False):
        return self.forward(x, training=training)

    def parameters(self) -> list[Parameter]:
        return [getattr(self, name) for name in self._params]

    def config(self) -> dict:
        """Constructor kwargs: ``type(layer)(**layer.config())`` rebuilds an equal layer."""
        return {}

    def state_dict(self) -> dict[str, np.ndarray]:
        state = {name: getattr(self, name).data.copy() for name in self._params}
        state.update({name: getattr(self, name).copy() for name in self._buffers})
        return state

    def load_state_dict(self, state: dict) -> None:
        expected = set(self._params) | set(self._buffers)
        given = set(state) - {"num_batches_tracked"}  # PyTorch BatchNorm extra, not used here
        if given != expected:
            raise ValueError(f"{self!r}: state_dict keys {sorted(given)} != expected {sorted(expected)}")
        for name in expected:
            current = getattr(self, name)
            current = current.data if isinstance(current, Parameter) else current
            value = np.asarray(state[name])
            if value.shape != current.shape:
                raise ValueError(f"{self!r}: {name} has shape {value.shape}, expected {current.shape}")
            current[...] = value

    def astype(self, dtype) -> "Layer":
        """Cast parameters and buffers in place (float64 for gradient checks); returns self."""
        for name in self._params:
            p = getattr(self, name)
            p.data = p.data.astype(dtype)
            p.grad = None
        for name in self._buffers:
            setattr(self, name, getattr(self, name).astype(dtype))
        return self

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"


class Sequential:
    """Layers applied in order: forward left to right, backward right to left.

    ``state_dict()`` keys follow ``torch.nn.Sequential``: ``"<index>.<name>"``.
    """

    def __init__(self, *layers: Layer):
        if len(layers) == 1 and isinstance(layers[0], (list, tuple)):
            layers = tuple(layers[0])
        for layer in layers:
            if not isinstance(layer, Layer):
                raise TypeError(f"Sequential takes layers, got {type(layer).__name__}")
        self.layers = list(layers)
        self._cost = (None, 0)  # (input shape, dtype, layers) -> _flops_per_sample
        self._large_step = False  # whether the last training forward pass was split

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        parts = self._split_batch(x)
        if training:
            # A large batch runs with BLAS at one thread throughout: the layers split their
            # large blocks over the engine's threads instead, and BLAS's own (spinning) threads
            # would only compete with them. A small batch leaves the threading to BLAS.
            self._large_step = len(parts) > 1
            with parallel.blas_at_one_thread(self._large_step):
                for layer in self.layers:
                    x = layer.forward(x, training=True)
            return x
        if len(parts) == 1:
            return self._infer(x)
        # Inference keeps no state in the layers, so parts of a large batch run side by side,
        # one per thread: a single hand-off for the whole network.
        return np.concatenate(parallel.run([lambda s=s, e=e: self._infer(x[s:e]) for s, e in parts]))

    def _split_batch(self, x) -> list[tuple[int, int]]:
        """x's batch in one part per thread if a pass over it is worth splitting, else whole."""
        if isinstance(x, np.ndarray) and x.ndim >= 1 and len(x) > 1:
            return parallel.split(len(x), len(x) * self._flops_per_sample(x))
        return [(0, None)]

    def _flops_per_sample(self, x):
        """About the FLOPs of one sample's inference: 2 x each layer's parameters x its output
        positions (exact for Dense and Conv2D) + its output elements. Found with one sample of
        zeros, once per input shape."""
        key = (x.shape[1:], x.dtype, tuple(map(id, self.layers)))
        if self._cost[0] != key:
            h, flops = np.zeros((1,) + x.shape[1:], x.dtype), 0
            try:
                for layer in self.layers:
                    h = layer.forward(h)
                    params = sum(p.data.size for p in layer.parameters())
                    flops += 2 * params * int(np.prod(h.shape[2:])) + h.size
            except ValueError:  # a wrong input: the pass itself will say so, with the caller's shape
                return 0
            self._cost = (key, flops)
        return self._cost[1]

    def _infer(self, x):
        given = x
        for layer in self.layers:
            # The caller's array (or a view of it) is never overwritten; intermediates may be.
            x = layer.forward(x) if np.may_share_memory(x, given) else layer.forward_inplace(x)
        return x

    __call__ = forward

    def backward(self, grad: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        """Backpropagate dL/d(output); fills every parameter's ``.grad`` and returns dL/dx.

        With ``input_grad=False`` (training, where dL/dx is not wanted) the layers below the
        first layer with parameters are skipped, and that layer does not compute its input
        gradient; returns None.
        """
        with parallel.blas_at_one_thread(self._large_step):
            if input_grad:
                for layer in reversed(self.layers):
                    grad = layer.backward(grad)
                return grad
            first = next((i for i, layer in enumerate(self.layers) if layer.parameters()), None)
            if first is not None:
                for layer in reversed(self.layers[first + 1:]):
                    grad = layer.backward(grad)
                self.layers[first].backward(grad, input_grad=False)
            return None

    def parameters(self) -> list[Parameter]:
        return [p for layer in self.layers for p in layer.parameters()]

    def state_dict(self) -> dict[str, np.ndarray]:
        return {f"{i}.{k}": v for i, layer in enumerate(self.layers) for k, v in layer.state_dict().items()}

    def load_state_dict(self, state: dict) -> None:
        per_layer: dict[int, dict] = {}
        for key, value in state.items():
            index, _, name = key.partition(".")
            if not index.isdigit() or int(index) >= len(self.layers):
                raise ValueError(f"unexpected state_dict key {key!r} for a Sequential of {len(self)} layers")
            per_layer.setdefault(int(index), {})[name] = value
        for i, layer in enumerate(self.layers):
            wanted = layer._params + layer._buffers
            if wanted or i in per_layer:
                if i not in per_layer:
                    raise ValueError(f"state_dict has no entries for layer {i} ({layer!r})")
                layer.load_state_dict(per_layer[i])

    def astype(self, dtype) -> "Sequential":
        for layer in self.layers:
            layer.astype(dtype)
        return self

    def __getitem__(self, index):
        if isinstance(index, slice):
            return Sequential(*self.layers[index])
        return self.layers[index]

    def __len__(self):
        return len(self.layers)

    def __iter__(self):
        return iter(self.layers)

    def __repr__(self):
        inner = "".join(f"\n  ({i}): {layer!r}" for i, layer in enumerate(self.layers))
        return f"Sequential({inner}\n)"
