"""Checking a hand-written backward pass, and why the upstream gradient must be random.

A backward pass computes dL/dx for a loss L. To check it without trusting any formula, pick a fixed
upstream gradient ``dout`` and use the loss ``L(x) = sum(f(x) * dout)``: its exact gradient is the
backward pass fed with ``dout``, and central differences estimate it from the forward pass alone::

    dL/dx_k ~ (L(x + h e_k) - L(x - h e_k)) / (2h)        error O(h^2)

The choice of ``dout`` matters. With ``dout = 1`` the loss is ``sum(BN(x))``, and a batch-normalized
channel always sums to ``m * beta`` whatever x is, so its true gradient is exactly zero. Any backward
that returns zero for a constant ``dout`` then passes, right or wrong. A random ``dout`` probes every
direction and catches the bug.
"""

import numpy as np

from .normalization import EPS, batch_norm_forward

TOLERANCE = 1e-6  # largest |analytic - numeric| that passes, for gradients of order one


def numeric_gradient(f, x, dout, h=1e-5):
    """Central-difference estimate of d/dx sum(f(x) * dout), one entry of x at a time."""
    x = np.array(x, dtype=np.float64)
    grad = np.zeros_like(x)
    for k in np.ndindex(x.shape):
        saved = x[k]
        x[k] = saved + h
        plus = np.sum(f(x) * dout)
        x[k] = saved - h
        minus = np.sum(f(x) * dout)
        x[k] = saved
        grad[k] = (plus - minus) / (2 * h)
    return grad


def max_abs_difference(a, b):
    return float(np.max(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))))


def upstream_gradient(kind, shape, seed=0):
    """``"sum"``: all ones, the gradient of a sum-of-outputs loss. ``"random"``: standard normal."""
    if kind == "sum":
        return np.ones(shape)
    if kind == "random":
        return np.random.default_rng(seed).standard_normal(shape)
    raise ValueError(f"upstream kind must be 'sum' or 'random', got {kind!r}")


def check_backward(backward, x, gamma, beta, kind, eps=EPS, seed=0):
    """Compare dx of ``backward(dout, cache)`` with finite differences, for one kind of upstream gradient."""
    dout = upstream_gradient(kind, np.shape(x), seed)
    numeric = numeric_gradient(lambda z: batch_norm_forward(z, gamma, beta, eps)[0], x, dout)
    analytic = backward(dout, batch_norm_forward(x, gamma, beta, eps)[1])[0]
    error = max_abs_difference(analytic, numeric)
    return {"upstream": kind, "error": error, "passes": error < TOLERANCE,
            "largest_true_gradient": float(np.abs(numeric).max())}
