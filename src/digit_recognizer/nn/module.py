"""Parameter and the Layer base class.

Every layer implements ``forward(x, training=False)`` and ``backward(grad_out) -> grad_in``.
``forward(training=True)`` caches what the backward pass needs; ``training=False`` keeps
nothing between calls, so inference holds no extra memory and threads may share a network
for prediction. Computation runs in the input's dtype: float32 normally, float64 for
gradient checks.
"""

import numpy as np

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
