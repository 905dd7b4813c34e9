"""Dense, Flatten and Dropout."""

import numpy as np

from . import init as _init
from . import rng as _rng
from .module import Layer, Parameter, check_input


class Dense(Layer):
    """Fully connected layer.

    forward:  y = x W^T + b              x (N, in), W (out, in), b (out,), y (N, out)
    backward: dW = dy^T x,  db = sum_n dy,  dx = dy W
    """

    _params = ("weight", "bias")

    def __init__(self, in_features: int, out_features: int, init: str = "he", rng=None):
        self.in_features, self.out_features, self.init = int(in_features), int(out_features), init
        self.weight = Parameter(_init.initialise(init, (self.out_features, self.in_features), rng))
        self.bias = Parameter(np.zeros(self.out_features, np.float32))

    def config(self):
        return {"in_features": self.in_features, "out_features": self.out_features, "init": self.init}

    def forward(self, x, training=False):
        check_input(self, x, f"(N, {self.in_features})", ndim=2, features=self.in_features)
        w, b = self.weight.data.astype(x.dtype, copy=False), self.bias.data.astype(x.dtype, copy=False)
        self._cache = x if training else None
        return x @ w.T + b

    def backward(self, grad_out, input_grad=True):
        x = self._cached()
        self.weight.accumulate(grad_out.T @ x)
        self.bias.accumulate(grad_out.sum(axis=0))
        if not input_grad:
            return None
        return grad_out @ self.weight.data.astype(grad_out.dtype, copy=False)


class Flatten(Layer):
    """(N, d1, d2, ...) -> (N, d1*d2*...) in C order (as torch.flatten); backward reshapes back."""

    def forward(self, x, training=False):
        check_input(self, x, "(N, ...) with at least 2 dimensions")
        if x.ndim < 2:
            raise ValueError(f"{self!r} expected an array of shape (N, ...) with at least 2 dimensions, "
                             f"got shape {x.shape}")
        self._cache = x.shape if training else None
        return x.reshape(x.shape[0], int(np.prod(x.shape[1:])))

    def backward(self, grad_out):
        return grad_out.reshape(self._cached())


class Dropout(Layer):
    """Inverted dropout: in training y = x * m / (1 - p) with m ~ Bernoulli(1 - p); identity otherwise.

    backward: dx = dy * m / (1 - p).
    """

    def __init__(self, p: float = 0.5, rng=None):
        if not 0.0 <= p < 1.0:
            raise ValueError(f"Dropout probability must be in [0, 1), got {p}")
        self.p, self.rng = float(p), rng

    def config(self):
        return {"p": self.p}

    def forward(self, x, training=False):
        check_input(self, x, "(N, ...)")
        if not training or self.p == 0.0:
            self._cache = 1.0 if training else None
            return x
        u = _rng.resolve(self.rng).random(x.shape, dtype=np.float32)
        # One array holding 0 or 1/(1-p): the same multiply serves forward and backward.
        self._cache = np.multiply(u >= self.p, 1.0 / (1.0 - self.p), dtype=x.dtype)
        return x * self._cache

    def backward(self, grad_out):
        return grad_out * self._cached()
