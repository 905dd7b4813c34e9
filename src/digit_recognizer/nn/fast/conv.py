"""Fast Conv2D and MaxPool2D on (C, H, W, N) memory.

Conv2D keeps activations with channels outermost and the images innermost. im2col is then a
strided copy with long contiguous runs into a (C*k*k, Ho*Wo*N) matrix, made a block of output
rows at a time so that it stays in cache; each block is one product with the (O, C*k*k) weight
(PyTorch's layout, unchanged), and the (O, Ho*Wo*N) result is already the next layer's
(C, H, W, N) memory, returned as an (N, C, H, W) view. Forward passes cut the work into parts
of whole blocks (disjoint columns of the output); backward passes into parts of input channels (disjoint
columns of dW and disjoint channels of dx), each part running over the blocks in order.
"""

import numpy as np

from .. import thread_policy as threads
from ..conv import Conv2D as _Conv2D
from ..conv import MaxPool2D as _MaxPool2D
from ..conv import out_size
from ..module import check_input
from . import Cache
from .memory import empty, memory_order, with_order

# im2col + GEMM run on blocks of output rows of about this many bytes of im2col matrix.
BLOCK_BYTES = 2 << 20
MIN_PART_ROWS = 64


def _windows(xp: np.ndarray, k: int, s: int, ho: int, wo: int) -> np.ndarray:
    """windows[c, u, v, i, j, n] = xp[c, s*i + u, s*j + v, n] for the (C, Hp, Wp, N) array xp:
    a strided view (what sliding_window_view gives, built directly: its checks cost more than a
    small convolution). Its output rows i..i+r, copied, are the im2col matrix's columns for
    those rows."""
    c, _, _, n = xp.shape
    sc, sh, sw, sn = xp.strides
    return np.ndarray((c, k, k, ho, wo, n), xp.dtype, xp, 0, (sc, sh, sw, s * sh, s * sw, sn))


def _block_rows(windows: np.ndarray) -> int:
    """Output rows per im2col block: about BLOCK_BYTES of (C*k*k, r*Wo*N) matrix."""
    c, k, _, _, wo, n = windows.shape
    return max(1, BLOCK_BYTES // max(1, c * k * k * wo * n * windows.itemsize))


def _im2col_blocks(windows: np.ndarray, block: int):
    """Yields (columns, cols) for each block of ``block`` output rows: cols is the block of the
    im2col matrix, (rows, r*Wo*N) with rows = windows' C*k*k, copied into one scratch array
    (valid until the next block), columns its slice of the matrix's Ho*Wo*N columns."""
    c, k, _, ho, wo, n = windows.shape
    rows, per_row = c * k * k, wo * n
    scratch = np.empty(rows * min(block, ho) * per_row, windows.dtype)
    for i in range(0, ho, block):
        part = windows[:, :, :, i:i + block]
        cols = scratch[:part.size].reshape(part.shape)
        cols[...] = part
        yield slice(i * per_row, (i + part.shape[3]) * per_row), cols.reshape(rows, -1)


class Conv2D:
    @staticmethod
    def forward(layer, x, training, owned):
        check_input(layer, x, f"(N, {layer.in_channels}, H, W)", ndim=4, channels=layer.in_channels)
        n, c, h, w = x.shape
        k, s, p, o = layer.kernel_size, layer.stride, layer.padding, layer.out_channels
        ho, wo = out_size(layer, h, k, s, p), out_size(layer, w, k, s, p)

        # (C, H, W, N) memory: free when x came from a fast Conv2D, a copy of the input otherwise.
        xp = np.ascontiguousarray(x.transpose(1, 2, 3, 0))
        if p:
            xp = np.zeros((c, h + 2 * p, w + 2 * p, n), x.dtype)
            xp[:, p:p + h, p:p + w] = x.transpose(1, 2, 3, 0)
        windows = _windows(xp, k, s, ho, wo)
        block = _block_rows(windows)
        wm = layer.weight.data.reshape(o, -1).astype(x.dtype, copy=False)
        b = layer.bias.data[:, None].astype(x.dtype, copy=False)
        y = np.empty((o, ho * wo * n), x.dtype)

        def output_blocks(blocks):  # im2col + GEMM + bias, block by block while each is in cache
            rows = windows[:, :, :, blocks.start * block:blocks.stop * block]
            for columns, cols in _im2col_blocks(rows, block):
                start = blocks.start * block * wo * n
                columns = slice(start + columns.start, start + columns.stop)
                np.matmul(wm, cols, out=y[:, columns])
                y[:, columns] += b
        n_blocks = -(-ho // block)
        threads.run(output_blocks, threads.parts(n_blocks, 2.0 * o * c * k * k * ho * wo * n))
        # Backward rebuilds the im2col blocks from the padded input: k*k times less memory than
        # keeping the im2col matrix, and its blocks stay in cache.
        layer._cache = Cache((xp, (h, w))) if training else None
        return y.reshape(o, ho, wo, n).transpose(3, 0, 1, 2)

    @staticmethod
    def backward(layer, grad_out, input_grad):
        xp, (h, w) = layer._cached()
        layer._cache = None
        c, hp, wp, n = xp.shape
        k, s, p, o = layer.kernel_size, layer.stride, layer.padding, layer.out_channels
        ho, wo = grad_out.shape[2:]
        windows = _windows(xp, k, s, ho, wo)
        block = _block_rows(windows)
        g = grad_out.transpose(1, 2, 3, 0).reshape(o, ho * wo * n)  # free when (C, H, W, N) memory
        wm = layer.weight.data.reshape(o, c, k * k).astype(g.dtype, copy=False)
        dxp = np.zeros((c, hp, wp, n), g.dtype) if input_grad else None

        def channels(cs):
            """dW's columns for channels cs (a sum over the blocks, in order) and dx's channels cs."""
            dw = np.zeros((o, (cs.stop - cs.start) * k * k), g.dtype)
            wm_t = np.ascontiguousarray(wm[:, cs].reshape(o, -1).T)
            for columns, cols in _im2col_blocks(windows[cs], block):
                dw += g[:, columns] @ cols.T
                if input_grad:  # col2im: the block's window gradients added back onto dx
                    i, r = columns.start // (wo * n), (columns.stop - columns.start) // (wo * n)
                    dcols = np.matmul(wm_t, g[:, columns], out=cols).reshape(-1, k, k, r, wo, n)
                    for u in range(k):
                        for v in range(k):
                            rows = slice(s * i + u, s * (i + r - 1) + u + 1, s)
                            dxp[cs, rows, v:v + s * (wo - 1) + 1:s] += dcols[:, u, v]
            return dw
        flops = 2.0 * o * c * k * k * ho * wo * n * (2 if input_grad else 1)
        # Parts of at least MIN_PART_ROWS rows of dW's columns: narrower products run slowly.
        parts = threads.run(channels, threads.parts(c, flops, min_length=-(-MIN_PART_ROWS // (k * k))))
        layer.weight.accumulate(np.concatenate(parts, axis=1).reshape(layer.weight.data.shape))
        layer.bias.accumulate(g.sum(axis=1))
        if not input_grad:
            return None
        return dxp[:, p:p + h, p:p + w].transpose(3, 0, 1, 2)


class MaxPool2D:
    """Max over the k*k strided views x[:, :, u::s, v::s] (each (N, C, Ho, Wo)), element-wise,
    in parts along x's outermost axis in memory; the output keeps x's memory order.
    (Reshaping into windows and reducing over the small axes measured up to 20x slower on
    (N, C, H, W) memory; the views are fast on both layouts.)"""

    @staticmethod
    def _offsets(layer, x):
        check_input(layer, x, "(N, C, H, W)", ndim=4)
        k, s = layer.kernel_size, layer.stride
        ho, wo = out_size(layer, x.shape[2], k, s), out_size(layer, x.shape[3], k, s)
        return ho, wo, [(slice(u, u + s * (ho - 1) + 1, s), slice(v, v + s * (wo - 1) + 1, s))
                        for u in range(k) for v in range(k)]

    @staticmethod
    def forward(layer, x, training, owned):
        ho, wo, offsets = MaxPool2D._offsets(layer, x)
        order = memory_order(x)
        y = empty((x.shape[0], x.shape[1], ho, wo), x.dtype, order)

        def pool(part):
            (hs, ws), rest = offsets[0], offsets[1:]
            xs, ys = x[_axis(order, part)], y[_axis(order, part)]
            ys[...] = xs[:, :, hs, ws]
            for hs, ws in rest:
                np.maximum(ys, xs[:, :, hs, ws], out=ys)
        threads.run(pool, threads.parts(x.shape[order[0]], x.size, threads.PART_ELEMENTS))
        layer._cache = Cache((x, y, offsets)) if training else None
        return y

    @staticmethod
    def backward(layer, grad_out, input_grad):
        x, y, offsets = layer._cached()
        order = memory_order(y)
        g = with_order(grad_out, order)
        dx = np.zeros_like(x)
        overlapping = layer.stride < layer.kernel_size

        def route(part):
            xs, ys, gs, dxs = (a[_axis(order, part)] for a in (x, y, g, dx))
            unclaimed = None  # windows whose maximum has not been routed yet
            for i, (hs, ws) in enumerate(offsets):
                hit = xs[:, :, hs, ws] == ys
                if unclaimed is None:
                    unclaimed = ~hit
                elif i < len(offsets) - 1:
                    hit &= unclaimed
                    unclaimed ^= hit
                else:
                    hit &= unclaimed
                if overlapping:
                    dxs[:, :, hs, ws] += gs * hit
                else:  # windows are disjoint: write straight into dx
                    np.multiply(gs, hit, out=dxs[:, :, hs, ws])
        threads.run(route, threads.parts(x.shape[order[0]], x.size, threads.PART_ELEMENTS))
        return dx


def _axis(order, part):
    """The index taking ``part`` of the outermost axis in memory (N or C: pooling keeps both)."""
    return (slice(None),) * order[0] + (part,)


KERNELS = {_Conv2D: Conv2D, _MaxPool2D: MaxPool2D}
