"""Conv2D and pooling layers on (N, C, H, W) arrays.

Each layer reads its windows with ``sliding_window_view``: a strided view, no copy, in which
``windows[n, c, i, j, u, v] = x[n, c, s*i + u, s*j + v]`` is the (u, v) pixel of the window
at output position (i, j).
"""

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from . import init as _init
from .module import Layer, Parameter, check_input


def windows_of(x: np.ndarray, kernel: int, stride: int) -> np.ndarray:
    """The k x k windows of x (N, C, H, W) at stride s: (N, C, Ho, Wo, k, k), a view."""
    return sliding_window_view(x, (kernel, kernel), axis=(2, 3))[:, :, ::stride, ::stride]
def _positive_int(layer_name: str, name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{layer_name}: {name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def out_size(layer, size: int, kernel: int, stride: int, padding: int = 0) -> int:
    out = (size + 2 * padding - kernel) // stride + 1
    if out < 1:
        raise ValueError(f"{layer!r}: input of size {size} is smaller than the kernel {kernel}")
    return out


class Conv2D(Layer):
    """2-D convolution (cross-correlation, as PyTorch): square kernel k, stride s, zero padding p.

    forward:  y[n,o,i,j] = b[o] + sum_{c,u,v} W[o,c,u,v] * xp[n, c, s*i+u, s*j+v]  (xp: x padded)
              as one matrix product: cols[(n,i,j), (c,u,v)] = xp[n, c, s*i+u, s*j+v] (im2col),
              y = cols W^T + b with W as an (O, C*k*k) matrix
    backward: dW = dy^T cols,  db = sum_{n,i,j} dy,  dcols = dy W, and dx = col2im(dcols):
              each window's gradient is added back where the window was read from.
    x (N, C, H, W) -> y (N, O, Ho, Wo), Ho = (H + 2p - k) // s + 1.
    """

    _params = ("weight", "bias")

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int = 0, init: str = "he", rng=None):
        name = type(self).__name__
        self.in_channels = _positive_int(name, "in_channels", in_channels)
        self.out_channels = _positive_int(name, "out_channels", out_channels)
        self.kernel_size = _positive_int(name, "kernel_size", kernel_size)
        self.stride = _positive_int(name, "stride", stride)
        self.padding = _positive_int(name, "padding", padding, minimum=0)
        self.init = init
        k = self.kernel_size
        self.weight = Parameter(_init.initialise(init, (self.out_channels, self.in_channels, k, k), rng))
        self.bias = Parameter(np.zeros(self.out_channels, np.float32))

    def config(self):
        return {"in_channels": self.in_channels, "out_channels": self.out_channels,
                "kernel_size": self.kernel_size, "stride": self.stride, "padding": self.padding,
                "init": self.init}

    def forward(self, x, training=False):
        check_input(self, x, f"(N, {self.in_channels}, H, W)", ndim=4, channels=self.in_channels)
        (n, c, h, w), k, s, p = x.shape, self.kernel_size, self.stride, self.padding
        ho, wo = out_size(self, h, k, s, p), out_size(self, w, k, s, p)
        xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
        windows = windows_of(xp, k, s)                                # (N, C, Ho, Wo, k, k)
        cols = windows.transpose(0, 2, 3, 1, 4, 5).reshape(n * ho * wo, c * k * k)  # im2col (a copy)
        weights = self.weight.data.reshape(self.out_channels, -1).astype(x.dtype, copy=False)
        y = cols @ weights.T + self.bias.data.astype(x.dtype, copy=False)  # (N*Ho*Wo, O)
        self._cache = (x.shape, cols) if training else None
        return np.ascontiguousarray(y.reshape(n, ho, wo, self.out_channels).transpose(0, 3, 1, 2))

    def backward(self, grad_out, input_grad=True):
        (n, c, h, w), cols = self._cached()
        self._cache = None
        k, s, p = self.kernel_size, self.stride, self.padding
        ho, wo = grad_out.shape[2:]
        dy = grad_out.transpose(0, 2, 3, 1).reshape(n * ho * wo, self.out_channels)  # rows as cols'
        self.weight.accumulate((dy.T @ cols).reshape(self.weight.shape))
        self.bias.accumulate(dy.sum(axis=0))
        if not input_grad:
            return None
        weights = self.weight.data.reshape(self.out_channels, -1).astype(dy.dtype, copy=False)
        dcols = (dy @ weights).reshape(n, ho, wo, c, k, k)
        dxp = np.zeros((n, c, h + 2 * p, w + 2 * p), dy.dtype)
        for u in range(k):  # col2im: window pixel (u, v) of every window at once
            for v in range(k):
                dxp[:, :, u:u + s * ho:s, v:v + s * wo:s] += dcols[:, :, :, :, u, v].transpose(0, 3, 1, 2)
        return dxp[:, :, p:p + h, p:p + w]


class _Pool2D(Layer):
    """Shared by MaxPool2D and AvgPool2D: k x k windows, stride s (default k), no padding.
    x (N, C, H, W) -> y (N, C, Ho, Wo), Ho = (H - k) // s + 1."""

    def __init__(self, kernel_size: int, stride: int | None = None):
        name = type(self).__name__
        self.kernel_size = _positive_int(name, "kernel_size", kernel_size)
        self.stride = self.kernel_size if stride is None else _positive_int(name, "stride", stride)

    def config(self):
        return {"kernel_size": self.kernel_size, "stride": self.stride}

    def _windows(self, x):
        """x's windows, (N, C, Ho, Wo, k*k): each window's pixels in one row (a copy)."""
        check_input(self, x, "(N, C, H, W)", ndim=4)
        k, s = self.kernel_size, self.stride
        ho, wo = out_size(self, x.shape[2], k, s), out_size(self, x.shape[3], k, s)
        return windows_of(x, k, s).reshape(x.shape[0], x.shape[1], ho, wo, k * k)

    def _scatter(self, dx, windows_grad):
        """Adds windows_grad (N, C, Ho, Wo, k*k) back onto dx where each window was read from."""
        k, s = self.kernel_size, self.stride
        ho, wo = windows_grad.shape[2:4]
        for u in range(k):
            for v in range(k):
                dx[:, :, u:u + s * ho:s, v:v + s * wo:s] += windows_grad[..., u * k + v]
        return dx


class MaxPool2D(_Pool2D):
    """Max over each k x k window (stride defaults to k).

    forward:  y[n,c,i,j] = max_{u,v} x[n, c, s*i+u, s*j+v]
    backward: dy flows to the first maximal element of each window (as PyTorch), 0 elsewhere.
    """

    def forward(self, x, training=False):
        windows = self._windows(x)
        first_max = windows.argmax(axis=-1)[..., None]  # (N, C, Ho, Wo, 1)
        self._cache = (x.shape, first_max) if training else None
        return np.take_along_axis(windows, first_max, axis=-1)[..., 0]

    def backward(self, grad_out):
        shape, first_max = self._cached()
        k = self.kernel_size
        windows_grad = np.zeros(first_max.shape[:-1] + (k * k,), grad_out.dtype)
        np.put_along_axis(windows_grad, first_max, grad_out[..., None], axis=-1)
        return self._scatter(np.zeros(shape, grad_out.dtype), windows_grad)


class AvgPool2D(_Pool2D):
    """Mean over each k x k window (stride defaults to k).

    forward:  y[n,c,i,j] = (1/k^2) sum_{u,v} x[n, c, s*i+u, s*j+v]
    backward: dx[n, c, s*i+u, s*j+v] += dy[n,c,i,j] / k^2
    """

    def forward(self, x, training=False):
        windows = self._windows(x)
        self._cache = x.shape if training else None
        return windows.mean(axis=-1)

    def backward(self, grad_out):
        shape = self._cached()
        k = self.kernel_size
        windows_grad = np.broadcast_to((grad_out / (k * k))[..., None], grad_out.shape + (k * k,))
        return self._scatter(np.zeros(shape, grad_out.dtype), windows_grad)


class GlobalAvgPool2D(Layer):
    """Mean over all positions: (N, C, H, W) -> (N, C).

    forward:  y[n,c] = mean_{h,w} x[n,c,h,w];   backward: dx[n,c,h,w] = dy[n,c] / (H W)
    """

    def forward(self, x, training=False):
        check_input(self, x, "(N, C, H, W)", ndim=4)
        self._cache = x.shape if training else None
        return x.mean(axis=(2, 3))

    def backward(self, grad_out):
        n, c, h, w = self._cached()
        return np.broadcast_to((grad_out / (h * w))[:, :, None, None], (n, c, h, w)).copy()
