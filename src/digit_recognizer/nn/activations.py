"""Element-wise activations and Softmax. Each caches only what its backward needs."""

import math

import numpy as np

from .losses import softmax
from .module import Layer, check_input


class _Activation(Layer):
    """Shared plumbing: validate, compute, keep the cache only when training."""

    def forward(self, x, training=False):
        check_input(self, x, "(N, ...)")
        y, cache = self._forward(x)
        self._cache = cache if training else None
        return y

    def backward(self, grad_out):
        return self._backward(grad_out, self._cached())


class ReLU(_Activation):
    """y = max(x, 0);  dx = dy * [y > 0]."""

    def _forward(self, x):
        y = np.maximum(x, 0)
        return y, y

    def _backward(self, dy, y):
        return dy * (y > 0)


class LeakyReLU(_Activation):
    """y = x if x > 0 else a*x;  dx = dy * (1 if x > 0 else a)."""

    def __init__(self, negative_slope: float = 0.01):
        self.negative_slope = float(negative_slope)

    def config(self):
        return {"negative_slope": self.negative_slope}

    def _forward(self, x):
        slope = (x > 0).astype(x.dtype)  # the local derivative: 1 or a
        slope *= 1.0 - self.negative_slope
        slope += self.negative_slope
        return x * slope, slope

    def _backward(self, dy, slope):
        return dy * slope


class Sigmoid(_Activation):
    """y = 1 / (1 + e^-x), computed as (1 + tanh(x/2)) / 2 to avoid overflow;  dx = dy * y (1 - y)."""

    def _forward(self, x):
        y = np.tanh(x * 0.5)
        y += 1.0
        y *= 0.5
        return y, y

    def _backward(self, dy, y):
        return dy * y * (1.0 - y)


class Tanh(_Activation):
    """y = tanh(x);  dx = dy * (1 - y^2)."""

    def _forward(self, x):
        y = np.tanh(x)
        return y, y

    def _backward(self, dy, y):
        return dy * (1.0 - y * y)


class GELU(_Activation):
    """Gaussian error linear unit, tanh form (torch GELU(approximate="tanh")).

    y = x/2 (1 + tanh(z)),  z = sqrt(2/pi) (x + 0.044715 x^3)
    dx = dy * (1/2 (1 + t) + x/2 (1 - t^2) sqrt(2/pi) (1 + 3*0.044715 x^2)),  t = tanh(z)
    """

    _C = math.sqrt(2.0 / math.pi)
    _A = 0.044715

    def _forward(self, x):
        t = np.tanh(self._C * (x + self._A * x ** 3))
        return 0.5 * x * (1.0 + t), (x, t)

    def _backward(self, dy, cache):
        x, t = cache
        dz = self._C * (1.0 + 3.0 * self._A * x * x)
        return dy * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * dz)


class Softmax(_Activation):
    """Softmax over axis 1: y = e^x / sum e^x;  dx = y * (dy - sum(dy * y)).

    For classification train on logits with softmax_cross_entropy instead (more stable).
    """

    def _forward(self, x):
        y = softmax(x, axis=1)
        return y, y

    def _backward(self, dy, y):
        return y * (dy - (dy * y).sum(axis=1, keepdims=True))
