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
``(dx, dgamma, dbeta)``.
"""

from typing import NamedTuple

import numpy as np

from .validation import check_channel_vector, check_eps, check_input_shape

EPS = 1e-5  # torch's default: keeps 1 / sqrt(var + eps) finite when a channel is constant


class Cache(NamedTuple):
    """What the forward pass hands to the backward pass (statistics as per-channel vectors)."""

    x_hat: np.ndarray    # (x - mu) / sqrt(var + eps), the shape of x
    gamma: np.ndarray    # (C,)
    inv_std: np.ndarray  # 1 / sqrt(var + eps), (C,)
    mean: np.ndarray     # mu, (C,)
    var: np.ndarray      # biased variance, (C,)


def reduce_axes(ndim):
    """Every axis but the channel axis 1: (0,) for (N, C), (0, 2, 3) for (N, C, H, W)."""
    return (0, *range(2, ndim))


def per_channel(vector, ndim):
    """A (C,) vector shaped to broadcast against an (N, C, *spatial) array."""
    return vector.reshape((1, -1) + (1,) * (ndim - 2))


def _as_float_array(value, name):
    array = np.asarray(value)
    if array.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be an array of real numbers; got dtype {array.dtype}")
    return array if array.dtype.kind == "f" else array.astype(np.float64)


def batch_norm_forward(x, gamma, beta, eps=EPS):
    """Normalize each channel of ``x`` with its batch statistics, then scale by gamma and shift by beta.

    The statistics are computed in two passes (the mean, then the mean squared deviation from it),
    accumulated in float64: the one-pass E[x^2] - E[x]^2 loses every digit when the mean is large
    compared with the spread (mean 1e4, std 1e-2 in float32).
    """
    x = _as_float_array(x, "x")
    gamma, beta = _as_float_array(gamma, "gamma"), _as_float_array(beta, "beta")
    check_input_shape(x.shape, training=True)
    check_channel_vector(gamma.shape, "gamma", x.shape[1])
    check_channel_vector(beta.shape, "beta", x.shape[1])
    eps = check_eps(eps)
    axes = reduce_axes(x.ndim)

    mean = x.mean(axis=axes, keepdims=True, dtype=np.float64).astype(x.dtype)  # mu = 1/m sum x_i
    centered = x - mean                                                         # x_i - mu
    var = np.mean(np.square(centered), axis=axes, keepdims=True, dtype=np.float64).astype(x.dtype)
    inv_std = 1.0 / np.sqrt(var + eps)                                          # (var + eps)^(-1/2)
    x_hat = centered * inv_std                                                  # x_hat = (x - mu) inv_std
    out = per_channel(gamma, x.ndim) * x_hat + per_channel(beta, x.ndim)        # y = gamma x_hat + beta
    return out, Cache(x_hat, gamma, inv_std.ravel(), mean.ravel(), var.ravel())


def batch_norm_backward(dout, cache):
    r"""Gradients of the loss with respect to x, gamma and beta, given ``dout`` = dL/dy.

    Walking the computation graph backwards, per channel, with sums over the m values i:

    - y = gamma x_hat + beta, so dbeta = sum_i dy_i and dgamma = sum_i dy_i x_hat_i,
      and dx_hat_i = gamma dy_i.
    - x_hat_j = (x_j - mu) inv_std depends on x_i directly, through mu (d mu / d x_i = 1/m) and
      through var. Because sum_j (x_j - mu) = 0, d var / d x_i = 2 (x_i - mu) / m, and so
      d x_hat_j / d x_i = inv_std (delta_ij - 1/m - x_hat_i x_hat_j / m).
    - Summing over j: dx_i = inv_std (dx_hat_i - mean_j dx_hat_j - x_hat_i mean_j dx_hat_j x_hat_j),
      which with dx_hat = gamma dy is dx = gamma inv_std (dy - dbeta / m - x_hat dgamma / m).

    The gradient has three parts: the direct path, minus what moves the mean, minus what moves the
    variance. Per channel it sums to 0, because BN's output ignores a shift of its input, and it is
    orthogonal to x_hat up to the eps term, because the output ignores a scaling too when eps -> 0.
    """
    dout = _as_float_array(dout, "dout")
    x_hat, gamma, inv_std = cache.x_hat, cache.gamma, cache.inv_std
    if dout.shape != x_hat.shape:
        raise ValueError(f"dout must have the shape of the forward input {x_hat.shape}; got {dout.shape}")
    axes = reduce_axes(dout.ndim)
    m = dout.size // dout.shape[1]                                    # values per channel

    dbeta = dout.sum(axis=axes)                                       # sum_i dy_i
    dgamma = (dout * x_hat).sum(axis=axes)                            # sum_i dy_i x_hat_i
    scale = per_channel(gamma * inv_std, dout.ndim)                   # gamma inv_std
    dx = scale * (dout                                                # direct path
                  - per_channel(dbeta / m, dout.ndim)                 # - mean_j dy_j   (through mu)
                  - x_hat * per_channel(dgamma / m, dout.ndim))       # - x_hat mean_j dy_j x_hat_j (var)
    return dx, dgamma, dbeta
