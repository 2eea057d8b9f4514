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

from .normalization import batch_norm_backward, batch_norm_forward, per_channel

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


def backward_forgetting_variance(dout, cache):
    """A deliberately WRONG backward, with the core's signature: it treats the variance as a constant.

    It keeps the direct path and the path through the mean, dx = gamma inv_std (dy - mean(dy)), and
    drops the term - gamma inv_std x_hat mean(dy x_hat) that flows back through var. A constant dy
    makes dy - mean(dy) zero: the same zero as the true gradient.
    """
    _, dgamma, dbeta = batch_norm_backward(dout, cache)
    m = dout.size // dout.shape[1]
    dx = per_channel(cache.gamma * cache.inv_std, dout.ndim) * (dout - per_channel(dbeta / m, dout.ndim))
    return dx, dgamma, dbeta


def upstream_gradient(kind, shape, seed=0):
    """``"sum"``: all ones, the gradient of a sum-of-outputs loss. ``"random"``: standard normal."""
    if kind == "sum":
        return np.ones(shape)
    if kind == "random":
        return np.random.default_rng(seed).standard_normal(shape)
    raise ValueError(f"upstream kind must be 'sum' or 'random', got {kind!r}")


def check_backward(backward, x, gamma, beta, kind, eps=1e-5, seed=0):
    """Compare dx of ``backward(dout, cache)`` with finite differences, for one kind of upstream gradient."""
    dout = upstream_gradient(kind, np.shape(x), seed)
    numeric = numeric_gradient(lambda z: batch_norm_forward(z, gamma, beta, eps)[0], x, dout)
    analytic = backward(dout, batch_norm_forward(x, gamma, beta, eps)[1])[0]
    error = max_abs_difference(analytic, numeric)
    return {"upstream": kind, "error": error, "passes": error < TOLERANCE,
            "largest_true_gradient": float(np.abs(numeric).max())}


def sum_versus_random(x, gamma, beta, eps=1e-5, seed=0):
    """The correct and the wrong backward, each checked with a sum loss and a random upstream gradient."""
    backwards = {"correct (core)": batch_norm_backward, "forgets the variance": backward_forgetting_variance}
    return [{"backward": name, **check_backward(backward, x, gamma, beta, kind, eps, seed)}
            for name, backward in backwards.items() for kind in ("sum", "random")]


def torch_reference_gradients(x, gamma, beta, dout, eps=1e-5):
    """dx, dgamma, dbeta from torch's own batch norm and autograd, in float64: an independent reference."""
    import torch

    tensors = [torch.tensor(np.asarray(a, dtype=np.float64), requires_grad=True) for a in (x, gamma, beta)]
    out = torch.nn.functional.batch_norm(tensors[0], None, None, tensors[1], tensors[2], training=True, eps=eps)
    out.backward(torch.tensor(np.asarray(dout, dtype=np.float64)))
    return tuple(t.grad.numpy() for t in tensors)
