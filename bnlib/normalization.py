r"""Batch normalization in numpy: the forward pass and its hand-derived backward pass.

For an input ``x`` of shape (N, C) or (N, C, *spatial), every channel c is normalized with the
statistics of all its values in the batch: over axis 0 and, for images, over every spatial position
too (Ioffe & Szegedy 2015, section 3.2). With m the number of values per channel::

    mu      = 1/m sum_i x_i                       batch mean
    var     = 1/m sum_i (x_i - mu)^2              biased batch variance
    x_hat_i = (x_i - mu) / sqrt(var + eps)        normalized
    y_i     = gamma * x_hat_i + beta              scaled and shifted

``batch_norm_forward`` returns ``(y, cache)``; the cache holds what the backward pass needs, so the
data flow between the two passes is explicit. ``batch_norm_backward(dy, cache)`` returns
``(dx, dgamma, dbeta)``. Notebook 03 teaches both functions; its cells are this code.

``reduce_axes`` and ``per_channel`` serve the torch batch norm (``bnlib.functional``) as well: numpy
arrays and torch tensors take the same axes and reshape alike.
"""

from typing import NamedTuple

import numpy as np

from .validation import EPS, check_channel_vector, check_eps, check_input_shape  # EPS = 1e-5, torch's default


class Cache(NamedTuple):
    """What the forward pass hands to the backward pass (statistics as per-channel vectors)."""

    x_hat: np.ndarray     # (x - mu) / sqrt(var + eps), the shape of x
    gamma: np.ndarray     # (C,)
    inv_std: np.ndarray   # 1 / sqrt(var + eps), (C,)
    mean: np.ndarray      # mu, (C,)
    var: np.ndarray       # biased variance, (C,)
    centered: np.ndarray  # x - mu, the shape of x


def reduce_axes(ndim):
    """The axes the statistics run over, every axis but the channel axis 1: just 0 for (N, C), (0, 2, 3)
    for (N, C, H, W). (An int for one axis: torch reduces over a tuple of dimensions more slowly.)"""
    return 0 if ndim == 2 else (0, *range(2, ndim))


def per_channel(vector, ndim):
    """A (C,) vector shaped to broadcast against an (N, C, *spatial) array or tensor: (1, C, 1, ...), or the
    vector itself for (N, C), against which (C,) already broadcasts as a row. (A torch view costs about
    as much as a small operation.)"""
    return vector if ndim == 2 else vector.reshape((1, -1) + (1,) * (ndim - 2))


def _as_float_array(value, name):
    array = np.asarray(value)
    if array.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be an array of real numbers; got dtype {array.dtype}")
    return array if array.dtype.kind == "f" else array.astype(np.float64)


def checked_inputs(x, gamma, beta, eps):
    """The forward pass's arguments as float arrays and a float, or an error that names the problem: x of
    shape (N, C, *spatial) with more than one value per channel, gamma and beta of shape (C,), eps > 0."""
    x = _as_float_array(x, "x")
    gamma, beta = _as_float_array(gamma, "gamma"), _as_float_array(beta, "beta")
    check_input_shape(x.shape, training=True)
    check_channel_vector(gamma.shape, "gamma", x.shape[1])
    check_channel_vector(beta.shape, "beta", x.shape[1])
    return x, gamma, beta, check_eps(eps)


def checked_upstream(dout, cache):
    """``dout`` = dL/dy as a float array of the forward input's shape, or an error that says so."""
    dout = _as_float_array(dout, "dout")
    if dout.shape != cache.x_hat.shape:
        raise ValueError(f"dout must have the shape of the forward input {cache.x_hat.shape}; got {dout.shape}")
    return dout


def batch_norm_forward(x, gamma, beta, eps=EPS):
    """Training mode: normalize each channel of ``x`` with its batch statistics, then scale and shift.
    Returns ``(out, cache)``; the cache holds what the backward pass needs."""
    x, gamma, beta, eps = checked_inputs(x, gamma, beta, eps)  # float arrays of the right shapes, or a clear error
    axes = reduce_axes(x.ndim)                                 # 0 for (N, C): statistics over the batch
    mean = x.mean(axis=axes, keepdims=True, dtype=np.float64)  # mu = 1/m sum_i x_i (summed in float64: a float32
    mean = mean.astype(x.dtype)                                #    sum would lose digits when mu is large)
    centered = x - mean                                        # x_i - mu
    var = (centered ** 2).mean(axis=axes, keepdims=True)       # sigma^2 = 1/m sum_i (x_i - mu)^2: biased, over m
    inv_std = 1 / np.sqrt(var + eps)                           # 1 / sqrt(sigma^2 + eps)
    x_hat = centered * inv_std                                 # x_hat_i = (x_i - mu) / sqrt(sigma^2 + eps)
    out = per_channel(gamma, x.ndim) * x_hat + per_channel(beta, x.ndim)  # y_i = gamma x_hat_i + beta
    return out, Cache(x_hat, gamma, inv_std.ravel(), mean.ravel(), var.ravel(), centered)


def batch_norm_backward(dout, cache):
    """The compact backward pass: ``(dx, dgamma, dbeta)`` from ``dout`` = dL/dy and the forward's cache."""
    dout = checked_upstream(dout, cache)                 # dL/dy, the shape of x
    axes = reduce_axes(dout.ndim)
    x_hat, inv_std = cache.x_hat, per_channel(cache.inv_std, dout.ndim)
    dbeta = dout.sum(axis=axes)                          # sum_i dy_i
    dgamma = (dout * x_hat).sum(axis=axes)               # sum_i dy_i x_hat_i
    dx_hat = dout * per_channel(cache.gamma, dout.ndim)  # dL/dx_hat_i = gamma dy_i
    dx = inv_std * (dx_hat                                                      # the direct path
                    - dx_hat.mean(axis=axes, keepdims=True)                     # - through the mean
                    - x_hat * (dx_hat * x_hat).mean(axis=axes, keepdims=True))  # - through the variance
    return dx, dgamma, dbeta
