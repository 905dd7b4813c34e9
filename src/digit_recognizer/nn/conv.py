"""Conv2D and pooling layers on (N, C, H, W) arrays.

Inside, convolution keeps activations in (C, H, W, N) memory: channels outermost, the batch
innermost. im2col is then a strided copy, with long contiguous runs, into a
(C*k*k, Ho*Wo*N) matrix, made a block of output rows at a time so that it stays in cache;
each block is one matrix product with the (O, C*k*k) weight (PyTorch's layout, unchanged);
and the (O, Ho*Wo*N) result is already the next layer's (C, H, W, N) memory. Layers return
it as an (N, C, H, W) *view*: NumPy ufuncs keep the memory order of their inputs, so the
layers in between work without transposing copies.
"""

import numpy as np

from . import init as _init
from . import parallel
from .module import Layer, Parameter, check_input, empty, memory_order, with_order, zeros


# im2col + GEMM run on blocks of output rows of about this many bytes of im2col matrix.
BLOCK_BYTES = 2 << 20


def _im2col_blocks(windows, start: int, stop: int, block: int):
    """Yields (columns, cols) for output rows start..stop, ``block`` rows at a time: cols is
    the (C*k*k, r*Wo*N) block of the im2col matrix, copied from the (C, k, k, Ho, Wo, N)
    ``windows`` into one scratch array (valid until the next block), columns its slice of
    the matrix's Ho*Wo*N columns."""
    c, k, _, _, wo, n = windows.shape
    rows, per_row = c * k * k, wo * n
    scratch = np.empty(rows * min(block, stop - start) * per_row, windows.dtype)
    for i in range(start, stop, block):
        part = windows[:, :, :, i:min(i + block, stop)]
        cols = scratch[:part.size].reshape(part.shape)
        cols[...] = part
        yield slice(i * per_row, (i + part.shape[3]) * per_row), cols.reshape(rows, -1)


def _positive_int(layer_name: str, name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{layer_name}: {name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _out_size(layer, size: int, kernel: int, stride: int, padding: int = 0) -> int:
    out = (size + 2 * padding - kernel) // stride + 1
    if out < 1:
        raise ValueError(f"{layer!r}: input of size {size} is smaller than the kernel {kernel}")
    return out


class Conv2D(Layer):
    """2-D convolution (cross-correlation, as PyTorch), square kernel, stride and zero padding.

    forward:  y[n,o,i,j] = b[o] + sum_{c,u,v} W[o,c,u,v] * xpad[n, c, s*i+u, s*j+v]
              as a GEMM: Y (O, Ho*Wo*N) = Wm (O, C*k*k) @ cols (C*k*k, Ho*Wo*N), in blocks of columns
    backward: dWm = dY cols^T,  db = sum dY,  dcols = Wm^T dY, and dx = col2im(dcols): the
              k*k shifted windows of dcols are added back onto the padded input.
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
        self._scratch = None  # backward's dcols matrix, reused from step to step

    def config(self):
        return {"in_channels": self.in_channels, "out_channels": self.out_channels,
                "kernel_size": self.kernel_size, "stride": self.stride, "padding": self.padding,
                "init": self.init}

    def _weights(self, dtype):
        """(Wm (O, C*k*k), b (O, 1)) in the compute dtype: (o, c, u, v) order is already row-major."""
        w, b = self.weight.data.reshape(self.out_channels, -1), self.bias.data[:, None]
        return (w, b) if w.dtype == dtype else (w.astype(dtype), b.astype(dtype))

    def _geometry(self, xp, ho, wo):
        """(windows, rows, per_row, block) for the padded (C, Hp, Wp, N) input xp.

        windows (C, k, k, Ho, Wo, N): windows[c, u, v, i, j] = xp[c, s*i + u, s*j + v], a strided
        view (what sliding_window_view gives, built directly: its checks cost more than a small
        conv). Its output rows i..i+r, copied, are the im2col matrix's columns for those rows:
        rows = C*k*k of them, per_row = Wo*N columns per output row. ``block`` output rows make
        an im2col block of about BLOCK_BYTES."""
        c, _, _, n = xp.shape
        k, s = self.kernel_size, self.stride
        sc, sh, sw, sn = xp.strides
        windows = np.ndarray((c, k, k, ho, wo, n), xp.dtype, xp, 0, (sc, sh, sw, s * sh, s * sw, sn))
        rows, per_row = c * k * k, wo * n
        return windows, rows, per_row, max(1, BLOCK_BYTES // max(1, rows * per_row * xp.itemsize))

    def forward(self, x, training=False):
        check_input(self, x, f"(N, {self.in_channels}, H, W)", ndim=4, channels=self.in_channels)
        n, c, h, w = x.shape
        k, s, p, o = self.kernel_size, self.stride, self.padding, self.out_channels
        ho, wo = _out_size(self, h, k, s, p), _out_size(self, w, k, s, p)

        # (C, H, W, N) memory: free when x came from a Conv2D, a cheap copy of the input otherwise.
        x = np.ascontiguousarray(x.transpose(1, 2, 3, 0))
        if p:
            xp = np.zeros((c, h + 2 * p, w + 2 * p, n), x.dtype)
            xp[:, p:p + h, p:p + w] = x
            x = xp
        windows, rows, per_row, block = self._geometry(x, ho, wo)
        wm, b = self._weights(x.dtype)
        y = np.empty((o, ho * per_row), x.dtype)

        def output_rows(start, stop):  # im2col + GEMM + bias block by block, while each is in cache
            for columns, cols in _im2col_blocks(windows, start, stop, block):
                np.matmul(wm, cols, out=y[:, columns])
                y[:, columns] += b
        # Each thread takes a range of output rows: their columns of y are disjoint.
        parallel.run([lambda lo=lo, hi=hi: output_rows(lo, hi)
                      for lo, hi in parallel.split(ho, 2.0 * o * rows * ho * per_row)])
        # Backward rebuilds the im2col blocks from the (padded) input: a tenth of the memory of
        # keeping the whole im2col matrix (k*k times the input), and its blocks stay in cache.
        self._cache = x if training else None
        return y.reshape(o, ho, wo, n).transpose(3, 0, 1, 2)

    def backward(self, grad_out, input_grad=True):
        xp = self._cached()
        self._cache = None
        c, hp, wp, n = xp.shape
        k, s, p, o = self.kernel_size, self.stride, self.padding, self.out_channels
        ho, wo = grad_out.shape[2:]
        windows, rows, per_row, block = self._geometry(xp, ho, wo)
        g = grad_out.transpose(1, 2, 3, 0).reshape(o, ho * per_row)  # free when (C, H, W, N) memory
        flops = 2.0 * o * rows * ho * per_row

        def weight_grad(start, stop):  # sum over this range's blocks of dY_block cols_block^T
            blocks = _im2col_blocks(windows, start, stop, block)
            return sum(g[:, columns] @ cols.T for columns, cols in blocks)
        partial = parallel.run([lambda lo=lo, hi=hi: weight_grad(lo, hi)
                                for lo, hi in parallel.split(ho, flops)])
        self.weight.accumulate(sum(partial[1:], partial[0]).reshape(self.weight.data.shape))
        self.bias.accumulate(g.sum(axis=1))
        if not input_grad:
            return None

        # dcols = Wm^T dY as one product (split over the threads by columns): in blocks, its
        # inner dimension (O) is too short for the product to run fast.
        wm, _ = self._weights(g.dtype)
        size = rows * ho * per_row
        if self._scratch is None or self._scratch.size < size or self._scratch.dtype != g.dtype:
            # Kept from step to step: a fresh array of tens of MB costs milliseconds of page
            # faults each time it is first written.
            self._scratch = np.empty(size, g.dtype)
        dcols = self._scratch[:size].reshape(rows, ho * per_row)
        dcols = parallel.matmul(wm.T, g, out=dcols).reshape(c, k, k, ho, wo, n)
        dxp = np.zeros((c, hp, wp, n), g.dtype)

        def col2im(dxp, dcols):  # adds the k*k shifted windows back: loops over kernel offsets only
            for u in range(k):
                for v in range(k):
                    dxp[:, u:u + s * (ho - 1) + 1:s, v:v + s * (wo - 1) + 1:s] += dcols[:, u, v]
        parallel.map_slices(col2im, dxp, dcols, axis=0)  # channels: disjoint parts of dx
        return dxp[:, p:hp - p, p:wp - p].transpose(3, 0, 1, 2)


class _Pool2D(Layer):
    """Shared by MaxPool2D and AvgPool2D: k x k windows, stride s (default k), no padding.
    x (N, C, H, W) -> y (N, C, Ho, Wo), Ho = (H - k) // s + 1; the output keeps x's memory order."""

    def __init__(self, kernel_size: int, stride: int | None = None):
        name = type(self).__name__
        self.kernel_size = _positive_int(name, "kernel_size", kernel_size)
        self.stride = self.kernel_size if stride is None else _positive_int(name, "stride", stride)

    def config(self):
        return {"kernel_size": self.kernel_size, "stride": self.stride}

    def _windows(self, x):
        """Output shape and the k*k strided views x[:, :, u::s, v::s] (each (N, C, Ho, Wo)).

        Pooling combines these k*k views element-wise. (Reshaping to (N, C, Ho, k, Wo, k) and
        reducing over the small axes measured as fast on (C, H, W, N) memory but up to 20x
        slower on (N, C, H, W) memory; the views are fast on both.)"""
        check_input(self, x, "(N, C, H, W)", ndim=4)
        k, s = self.kernel_size, self.stride
        ho, wo = _out_size(self, x.shape[2], k, s), _out_size(self, x.shape[3], k, s)
        offsets = [(slice(u, u + s * (ho - 1) + 1, s), slice(v, v + s * (wo - 1) + 1, s))
                   for u in range(k) for v in range(k)]
        return ho, wo, offsets


class MaxPool2D(_Pool2D):
    """Max over each k x k window (stride defaults to k).

    forward:  y[n,c,i,j] = max_{u,v} x[n, c, s*i+u, s*j+v]
    backward: dy flows to the first maximal element of each window (as PyTorch), 0 elsewhere.
    """

    def forward(self, x, training=False):
        ho, wo, offsets = self._windows(x)
        order = memory_order(x)
        y = empty((x.shape[0], x.shape[1], ho, wo), x.dtype, order)

        def pool(x, y):
            (hs, ws), rest = offsets[0], offsets[1:]
            y[...] = x[:, :, hs, ws]
            for hs, ws in rest:
                np.maximum(y, x[:, :, hs, ws], out=y)
        parallel.map_slices(pool, x, y, axis=order[0])  # N or C: pooling keeps both
        self._cache = (x, y, offsets) if training else None
        return y

    def backward(self, grad_out):
        x, y, offsets = self._cached()
        order = memory_order(y)
        g = with_order(grad_out, order)
        dx = np.zeros_like(x)
        overlapping = self.stride < self.kernel_size

        def route(x, y, g, dx):
            unclaimed = None  # windows whose maximum has not been routed yet
            for i, (hs, ws) in enumerate(offsets):
                hit = x[:, :, hs, ws] == y
                if unclaimed is None:
                    unclaimed = ~hit
                elif i < len(offsets) - 1:
                    hit &= unclaimed
                    unclaimed ^= hit
                else:
                    hit &= unclaimed
                if overlapping:
                    dx[:, :, hs, ws] += g * hit
                else:  # windows are disjoint: write straight into dx
                    np.multiply(g, hit, out=dx[:, :, hs, ws])
        parallel.map_slices(route, x, y, g, dx, axis=order[0])
        return dx


class AvgPool2D(_Pool2D):
    """Mean over each k x k window (stride defaults to k).

    forward:  y[n,c,i,j] = (1/k^2) sum_{u,v} x[n, c, s*i+u, s*j+v]
    backward: dx[n, c, s*i+u, s*j+v] += dy[n,c,i,j] / k^2
    """

    def forward(self, x, training=False):
        ho, wo, offsets = self._windows(x)
        k = self.kernel_size
        y = np.copy(x[:, :, offsets[0][0], offsets[0][1]], order="K")
        for hs, ws in offsets[1:]:
            y += x[:, :, hs, ws]
        y *= 1.0 / (k * k)
        self._cache = (x.shape, x.dtype, memory_order(x), offsets) if training else None
        return y

    def backward(self, grad_out):
        shape, dtype, order, offsets = self._cached()
        g = with_order(grad_out, order) * (1.0 / self.kernel_size ** 2)
        dx = zeros(shape, dtype, order)
        for hs, ws in offsets:
            dx[:, :, hs, ws] += g
        return dx


class GlobalAvgPool2D(Layer):
    """Mean over all positions: (N, C, H, W) -> (N, C).

    forward:  y[n,c] = mean_{h,w} x[n,c,h,w];   backward: dx[n,c,h,w] = dy[n,c] / (H W)
    """

    def forward(self, x, training=False):
        check_input(self, x, "(N, C, H, W)", ndim=4)
        self._cache = (x.shape, memory_order(x)) if training else None
        return x.mean(axis=(2, 3))

    def backward(self, grad_out):
        (n, c, h, w), order = self._cached()
        dx = empty((n, c, h, w), grad_out.dtype, order)
        dx[...] = (grad_out / (h * w))[:, :, None, None]
        return dx
