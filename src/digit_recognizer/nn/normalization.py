"""Batch normalisation (as torch.nn.BatchNorm1d/2d: eps=1e-5, momentum=0.1, affine)."""

import numpy as np

from .module import Layer, Parameter, check_input


class _BatchNorm(Layer):
    """Normalise each feature over the batch (and positions), then scale and shift.

    forward (training): mu, var = mean, biased variance over the reduced axes (m values)
              xhat = (x - mu) / sqrt(var + eps);   y = gamma * xhat + beta
              running stats <- (1 - momentum) * running + momentum * (mu, unbiased var)
    forward (eval):     the same with the running statistics.
    backward: dgamma = sum dy*xhat,  dbeta = sum dy,
              dx = gamma / sqrt(var + eps) * (dy - mean(dy) - xhat * mean(dy * xhat))
    """

    _params = ("weight", "bias")
    _buffers = ("running_mean", "running_var")
    _axes: tuple[int, ...] = ()
    _ndim = 0
    _expected = ""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1):
        self.num_features, self.eps, self.momentum = int(num_features), float(eps), float(momentum)
        self.weight = Parameter(np.ones(self.num_features, np.float32))
        self.bias = Parameter(np.zeros(self.num_features, np.float32))
        self.running_mean = np.zeros(self.num_features, np.float32)
        self.running_var = np.ones(self.num_features, np.float32)

    def config(self):
        return {"num_features": self.num_features, "eps": self.eps, "momentum": self.momentum}

    def _shape(self, v):
        """Broadcast a (C,) vector against the input: (1, C) or (1, C, 1, 1)."""
        return v.reshape((1, -1) + (1,) * (self._ndim - 2))

    def forward(self, x, training=False):
        self._check(x)
        if not training:
            return self._normalise(x, out=None)
        dt = x.dtype
        gamma, beta = self.weight.data.astype(dt, copy=False), self.bias.data.astype(dt, copy=False)

        m = x.size // self.num_features
        if m < 2:
            raise ValueError(f"{self!r} needs more than one value per channel in training, got shape {x.shape}")
        mean = x.mean(axis=self._axes)
        xhat = x - self._shape(mean)  # centred here, scaled in place below
        var = np.mean(np.square(xhat), axis=self._axes)
        inv_std = 1.0 / np.sqrt(var + self.eps)
        xhat *= self._shape(inv_std)
        mom = self.momentum
        self.running_mean *= 1.0 - mom
        self.running_mean += (mom * mean).astype(self.running_mean.dtype)
        self.running_var *= 1.0 - mom
        self.running_var += (mom * var * (m / (m - 1))).astype(self.running_var.dtype)
        self._cache = (xhat, inv_std)
        y = xhat * self._shape(gamma)
        y += self._shape(beta)
        return y

    def _check(self, x):
        check_input(self, x, self._expected.format(self.num_features), ndim=self._ndim, channels=self.num_features)

    def _normalise(self, x, out):
        """Inference: an affine map per channel, x * scale + shift, into ``out`` (a new array if None)."""
        self._cache = None
        gamma, beta = self.weight.data.astype(x.dtype, copy=False), self.bias.data.astype(x.dtype, copy=False)
        scale = gamma / np.sqrt(self.running_var.astype(x.dtype) + self.eps)
        y = np.multiply(x, self._shape(scale), out=out)
        y += self._shape(beta - self.running_mean.astype(x.dtype) * scale)
        return y

    def backward(self, grad_out, input_grad=True):
        xhat, inv_std = self._cached()
        dbeta = grad_out.sum(axis=self._axes)
        dgamma = (grad_out * xhat).sum(axis=self._axes)
        self.weight.accumulate(dgamma)
        self.bias.accumulate(dbeta)
        if not input_grad:
            return None
        m = grad_out.size // self.num_features
        scale = self.weight.data.astype(grad_out.dtype, copy=False) * inv_std
        dx = xhat * self._shape(-dgamma / m)
        dx += grad_out
        dx -= self._shape(dbeta / m)
        dx *= self._shape(scale)
        return dx


class BatchNorm1D(_BatchNorm):
    """BatchNorm over (N, F) inputs: statistics per feature over the batch."""

    _axes = (0,)
    _ndim = 2
    _expected = "(N, {})"


class BatchNorm2D(_BatchNorm):
    """BatchNorm over (N, C, H, W) inputs: statistics per channel over batch and positions."""

    _axes = (0, 2, 3)
    _ndim = 4
    _expected = "(N, {}, H, W)"
