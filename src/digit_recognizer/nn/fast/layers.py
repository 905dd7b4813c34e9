"""Fast Dense, Flatten, Dropout, ReLU and BatchNorm: products in parts, arrays in the memory
order of their input, inference in place on the pass's own arrays."""

import numpy as np

from .. import rng as _rng
from ..activations import ReLU as _ReLU
from ..layers import Dense as _Dense
from ..layers import Dropout as _Dropout
from ..layers import Flatten as _Flatten
from ..module import check_input
from ..normalization import BatchNorm1D, BatchNorm2D
from . import Cache
from .memory import empty, memory_order, with_order
from .split import elementwise, matmul


class Dense:
    """y = x W^T + b, dW = dy^T x, dx = dy W as products in parts. x may be the transposed view
    Flatten makes of (C, H, W, N) memory: BLAS multiplies it as it is."""

    @staticmethod
    def forward(layer, x, training, owned):
        check_input(layer, x, f"(N, {layer.in_features})", ndim=2, features=layer.in_features)
        w = layer.weight.data.astype(x.dtype, copy=False)
        y = matmul(x, w.T)
        y += layer.bias.data.astype(x.dtype, copy=False)
        layer._cache = Cache((x,)) if training else None
        return y

    @staticmethod
    def backward(layer, grad_out, input_grad):
        (x,) = layer._cached()
        layer.weight.accumulate(matmul(grad_out.T, x))
        layer.bias.accumulate(grad_out.sum(axis=0))
        if not input_grad:
            return None
        w = layer.weight.data.astype(grad_out.dtype, copy=False)
        if x.flags.f_contiguous and not x.flags.c_contiguous:
            # x came from Flatten of (C, H, W, N) memory: dx in the same layout, (W^T dy^T)^T,
            # reshapes back to that memory without a copy.
            return matmul(w.T, grad_out.T).T
        return matmul(grad_out, w)


class Flatten:
    """A reshape that keeps x's memory: on (C, H, W, N) memory a free transposed view."""

    @staticmethod
    def forward(layer, x, training, owned):
        y = layer.forward(x)
        layer._cache = Cache((x.shape, memory_order(x))) if training else None
        return y

    @staticmethod
    def backward(layer, grad_out, input_grad):
        shape, order = layer._cached()
        return with_order(grad_out.reshape(shape), order)


class ReLU:
    """max(x, 0) in parts; at inference in place on the pass's own arrays."""

    @staticmethod
    def forward(layer, x, training, owned):
        check_input(layer, x, "(N, ...)")
        y = x if owned and not training else empty(x.shape, x.dtype, memory_order(x))
        elementwise(lambda x, y: np.maximum(x, 0, out=y), x, y)
        layer._cache = Cache((y,)) if training else None
        return y

    @staticmethod
    def backward(layer, grad_out, input_grad):
        (y,) = layer._cached()
        dy, dx = with_order(grad_out, memory_order(y)), np.empty_like(y)
        # a multiply: np.where is several times slower here
        elementwise(lambda y, dy, dx: np.multiply(dy, y > 0, out=dx), y, dy, dx)
        return dx


class Dropout:
    """The mask is drawn in x's memory order, so that both multiplies run on matching layouts
    (on (C, H, W, N) memory the same seed therefore drops other elements than the reference)."""

    @staticmethod
    def forward(layer, x, training, owned):
        if not training or layer.p == 0.0:
            return layer.forward(x, training)
        check_input(layer, x, "(N, ...)")
        order = memory_order(x)
        u = empty(x.shape, np.float32, order)
        _rng.resolve(layer.rng).random(dtype=np.float32, out=u.transpose(order))
        mask = np.multiply(u >= layer.p, 1.0 / (1.0 - layer.p), dtype=x.dtype)
        layer._cache = Cache((mask,))
        return x * mask

    @staticmethod
    def backward(layer, grad_out, input_grad):
        (mask,) = layer._cached()
        return grad_out * mask


class BatchNorm:
    """Inference in place on the pass's own arrays; training as the reference."""

    @staticmethod
    def forward(layer, x, training, owned):
        if training or not owned:
            return layer.forward(x, training)
        layer._check(x)
        return layer._normalise(x, out=x)

    backward = None  # never reached: every forward that leaves a cache is the reference's


KERNELS = {_Dense: Dense, _Flatten: Flatten, _ReLU: ReLU, _Dropout: Dropout,
           BatchNorm1D: BatchNorm, BatchNorm2D: BatchNorm}
