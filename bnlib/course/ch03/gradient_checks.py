"""Chapter 3's gradient checks: a deliberately wrong backward, and the sum loss that lets it pass.

A backward pass that drops the path through the variance still returns zero for a constant upstream
gradient, which is also the true gradient of ``sum(BN(x))``. ``sum_versus_random`` checks the correct and
the wrong backward with both kinds of upstream gradient (``bnlib.gradient_check``): only the random one
tells them apart.
"""

import numpy as np

from bnlib.gradient_check import check_backward
from bnlib.normalization import batch_norm_backward, per_channel


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
