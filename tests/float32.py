"""Comparing float32 results computed in different ways (another order of summation, another
BLAS kernel such as AVX2 or AVX-512, the reference path against the fast path)."""

import numpy as np


def assert_float32_close(actual, desired, terms_scale: float = 1.0):
    """Equal up to float32 rounding. The error is measured against the tensor's largest value
    (rounding scales with the magnitude of what is summed); values that cancel to about zero
    (a bias ahead of BatchNorm) are sums of terms of order ``terms_scale`` at most, so an
    absolute 1e-6 of that (~ eps32 * sqrt(terms)) is allowed too."""
    actual, desired = np.asarray(actual), np.asarray(desired)
    assert actual.shape == desired.shape, (actual.shape, desired.shape)
    scale = float(np.abs(desired).max()) if desired.size else 0.0
    error = float(np.abs(actual.astype(np.float64) - desired).max()) if desired.size else 0.0
    assert error <= 1e-5 * scale + 1e-6 * terms_scale, f"max error {error:.1e}, largest value {scale:.1e}"
