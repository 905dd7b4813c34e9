"""Dense, Flatten and Dropout."""

import numpy as np

from . import init as _init
from . import parallel
from . import rng as _rng
from .module import Layer, Parameter, check_input, empty, memory_order, with_order


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
        w, b = self.weight.data, self.bias.data
        if w.dtype != x.dtype:
            w, b = w.astype(x.dtype), b.astype(x.dtype)
        y = parallel.matmul(x, w.T)
        y += b
        self._cache = x if training else None
        return y

    def backward(self, grad_out, input_grad=True):
        x = self._cached()
        self.weight.accumulate(parallel.matmul(grad_out.T, x))
        self.bias.accumulate(grad_out.sum(axis=0))
        if not input_grad:
            return None
        w = self.weight.data
        w = w if w.dtype == grad_out.dtype else w.astype(grad_out.dtype)
        if x.flags.f_contiguous and not x.flags.c_contiguous:
            # x was a transposed view (Flatten of (C, H, W, N) memory): return dx laid out the
            # same way, (W^T dy^T)^T, so that it reshapes back to that memory without a copy.
            return parallel.matmul(w.T, grad_out.T).T
        return parallel.matmul(grad_out, w)


class Flatten(Layer):
    """(N, d1, d2, ...) -> (N, d1*d2*...) in C order (as torch.flatten); backward reshapes back.

    On the (C, H, W, N) memory a Conv2D leaves, the reshape is a free (transposed) view that
    Dense multiplies as is; the gradient goes back in the memory layout of the input.
    """

    def forward(self, x, training=False):
        check_input(self, x, "(N, ...) with at least 2 dimensions")
        if x.ndim < 2:
            raise ValueError(f"{self!r} expected an array of shape (N, ...) with at least 2 dimensions, "
                             f"got shape {x.shape}")
        self._cache = (x.shape, memory_order(x)) if training else None
        return x.reshape(x.shape[0], int(np.prod(x.shape[1:])))

    def backward(self, grad_out):
        shape, order = self._cached()
        return with_order(grad_out.reshape(shape), order)


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
        # Draw the mask in x's memory layout, so that both multiplies run on matching layouts.
        order = memory_order(x)
        u = empty(x.shape, np.float32, order)
        _rng.resolve(self.rng).random(dtype=np.float32, out=u.transpose(order))
        # One array holding 0 or 1/(1-p): the same multiply serves forward and backward.
        self._cache = np.multiply(u >= self.p, 1.0 / (1.0 - self.p), dtype=x.dtype)
        return x * self._cache

    def backward(self, grad_out):
        return grad_out * self._cached()
