"""The backward pass of batch norm node by node, a deliberately wrong one, and torch's gradients to check both.

``batch_norm_backward_staged`` walks the forward's computation graph (``bnlib.batch_norm_forward``)
backwards one node at a time; the core's ``batch_norm_backward`` is the same gradient in three terms.
``backward_forgetting_variance`` drops the path through the variance: a constant upstream gradient, the
gradient of a sum of outputs, cannot tell it from the right one; a random upstream gradient can.
"""

import numpy as np
import torch


def batch_norm_backward_staged(dout, cache):
    """``(dx, dgamma, dbeta)`` for an (N, C) batch, one line per node of the forward's graph, last node first."""
    x_hat, gamma, inv_std, centered = cache.x_hat, cache.gamma, cache.inv_std, cache.centered
    m = dout.shape[0]
    dbeta = dout.sum(axis=0)                          # out = gamma * x_hat + beta
    dgamma = (dout * x_hat).sum(axis=0)
    dx_hat = dout * gamma
    dinv_std = (dx_hat * centered).sum(axis=0)        # x_hat = centered * inv_std
    dcentered = dx_hat * inv_std
    dvar = dinv_std * -0.5 * inv_std ** 3             # inv_std = (var + eps) ** -0.5
    dcentered = dcentered + dvar * 2 * centered / m   # var = mean(centered ** 2): centered's second path
    dmean = -dcentered.sum(axis=0)                    # centered = x - mean
    dx = dcentered + dmean / m                        # mean = sum(x) / m: x's second path
    return dx, dgamma, dbeta


def backward_forgetting_variance(dout, cache):
    """A WRONG backward for (N, C): it treats the variance as a constant and drops the compact formula's third term."""
    dx_hat = dout * cache.gamma
    dx = cache.inv_std * (dx_hat - dx_hat.mean(axis=0))
    return dx, (dout * cache.x_hat).sum(axis=0), dout.sum(axis=0)


def torch_reference(x, gamma, beta, dout, eps=1e-5):
    """``(out, dx, dgamma, dbeta)`` of torch's own batch norm and autograd in float64: an independent reference."""
    tensors = [torch.tensor(np.asarray(a, dtype=np.float64), requires_grad=True) for a in (x, gamma, beta)]
    out = torch.nn.functional.batch_norm(tensors[0], None, None, tensors[1], tensors[2], training=True, eps=eps)
    out.backward(torch.tensor(np.asarray(dout, dtype=np.float64)))
    return (out.detach().numpy(), *(t.grad.numpy() for t in tensors))
