"""Batch norm on torch tensors: the forward and backward math, and the autograd Function built on it.

``bn_forward_tensor`` and ``bn_backward_tensor`` are plain tensor functions, so code that does its own
backpropagation (without autograd) runs exactly the computation the layers run. ``BatchNormFunction``
wraps them for autograd: its backward is the formula derived in ``bnlib.normalization``, never torch's
own batch norm kernel. ``batch_norm_train`` is the functional training-mode batch norm.
"""

from typing import NamedTuple, Optional

import torch
from torch.autograd.function import once_differentiable

from .validation import check_eps, check_input_shape


class Saved(NamedTuple):
    """What ``bn_forward_tensor`` keeps for the backward pass, plus the batch statistics."""

    x_centered: torch.Tensor       # x - mu, the shape of x
    inv_std: torch.Tensor          # 1 / sqrt(var + eps), (C,)
    scale: torch.Tensor            # gamma inv_std, or inv_std without affine parameters, (C,)
    weight: Optional[torch.Tensor]  # gamma (C,), or None without affine parameters
    mean: torch.Tensor             # mu, (C,)
    var: torch.Tensor              # biased batch variance, (C,)


def reduce_dims(x):
    """Every axis but the channels' (axis 1): just the batch axis for (N, C), the commonest case."""
    return 0 if x.dim() == 2 else [0, *range(2, x.dim())]


def per_channel(vector, like):
    """A (C,) vector shaped to broadcast against ``like``: (C,) already does for (N, C), else (1, C, 1, ...)."""
    return vector if like.dim() == 2 else vector.view((1, -1) + (1,) * (like.dim() - 2))


def bn_forward_tensor(x, weight, bias, eps):
    """Training-mode batch norm of ``x`` (N, C, *spatial): ``(out, saved)``; weight and bias may be None.

    Per channel, in two passes: mu = mean(x), then var = mean((x - mu)^2), which has no
    E[x^2] - E[x]^2 cancellation. out = (x - mu) * (gamma / sqrt(var + eps)) + beta: centering before
    scaling keeps float32 accurate when the mean dwarfs the spread, where folding mu into the shift
    would cancel catastrophically. Only two full-size tensors are made, x - mu (kept for the backward
    pass) and the output, which first holds the squares (x - mu)^2: no other full-size temporary.
    """
    dims = reduce_dims(x)
    mean = x.mean(dims)                                                 # mu = 1/m sum x_i
    x_centered = x - per_channel(mean, x)                              # x - mu
    out = torch.mul(x_centered, x_centered)                             # scratch: (x - mu)^2
    var = out.mean(dims)                                                # var = 1/m sum (x - mu)^2
    return bn_normalize_tensor(x_centered, mean, var, weight, bias, eps, out=out)


def bn_normalize_tensor(x_centered, mean, var, weight, bias, eps, out=None):
    """The last step of ``bn_forward_tensor``, given x - mu and the statistics: ``(out, saved)``.

    For callers whose statistics come from elsewhere (the running averages, or the global statistics
    of ``bnlib.SyncBatchNorm``). ``out`` may be a full-size buffer to write into; None makes a new one.
    """
    inv_std = (var + eps).rsqrt_()                                      # (var + eps)^(-1/2)
    scale = inv_std if weight is None else inv_std * weight             # gamma inv_std
    if bias is None:
        out = torch.mul(x_centered, per_channel(scale, x_centered), out=out)  # (x - mu) scale
    else:
        out = torch.addcmul(per_channel(bias, x_centered), x_centered, per_channel(scale, x_centered),
                            out=out)                                    # beta + (x - mu) scale
    return out, Saved(x_centered, inv_std, scale, weight, mean, var)


def bn_backward_tensor(dout, saved):
    """``(dx, dgamma, dbeta)`` from dL/dy (see ``bnlib.normalization.batch_norm_backward``).

    With x_hat = (x - mu) inv_std, k = gamma inv_std and m values per channel:
    dbeta = sum dy, dgamma = sum dy x_hat, dx = k (dy - dbeta/m - x_hat dgamma/m), computed as
    dx = (k dy - k dbeta/m) - (x - mu) k inv_std dgamma/m: two fused passes after the reductions, all
    in one new buffer (which first holds the products dy (x - mu)). ``dgamma`` is None without weight.
    """
    dbeta, dgamma, products = bn_backward_sums(dout, saved)
    m = dout.numel() // dout.shape[1]                                   # values per channel
    dx = bn_backward_dx(dout, saved, dbeta, dgamma, m, out=products)
    return dx, None if saved.weight is None else dgamma, dbeta


def bn_backward_sums(dout, saved):
    """The two per-channel sums the backward needs, and a full-size buffer free for ``bn_backward_dx``.

    Returns ``(dbeta, dgamma, products)``: dbeta = sum dy, dgamma = sum dy x_hat, and the buffer that
    held the products dy (x - mu) on the way.
    """
    dims = reduce_dims(dout)
    dbeta = dout.sum(dims)                                              # sum_i dy_i
    products = torch.mul(dout, saved.x_centered)                        # dy_i (x_i - mu)
    dgamma = products.sum(dims).mul_(saved.inv_std)                     # sum_i dy_i x_hat_i
    return dbeta, dgamma, products


def bn_backward_dx(dout, saved, dbeta, dgamma, m, out=None):
    """dx = k (dy - dbeta/m - x_hat dgamma/m) from the per-channel sums over m values; into ``out`` if given.

    The sums and m may cover more values than ``dout`` holds: ``bnlib.SyncBatchNorm`` passes the sums
    over every process's shard and the global m.
    """
    x_centered, inv_std, k = saved.x_centered, saved.inv_std, saved.scale
    variance_coefficient = torch.mul(dgamma, inv_std).mul_(k)           # k inv_std dgamma: the variance path
    mean_path = torch.mul(k, dbeta).mul_(-1 / m)                        # -k dbeta/m: the mean path
    dx = torch.addcmul(per_channel(mean_path, dout), dout, per_channel(k, dout), out=out)  # k dy - k dbeta/m
    return dx.addcmul_(x_centered, per_channel(variance_coefficient, dout), value=-1 / m)  # - k x_hat dgamma/m


class BatchNormFunction(torch.autograd.Function):
    """Training-mode batch norm with the hand-derived backward. Returns ``(out, mean, biased_var)``;
    the statistics are outputs for the running averages and carry no gradient."""

    @staticmethod
    def forward(ctx, x, weight, bias, eps):
        out, saved = bn_forward_tensor(x, weight, bias, eps)
        ctx.set_materialize_grads(False)  # the statistics get no gradient: skip making zeros for them
        ctx.save_for_backward(saved.x_centered, saved.inv_std, saved.scale, weight)
        ctx.mark_non_differentiable(saved.mean, saved.var)
        return out, saved.mean, saved.var

    @staticmethod
    @once_differentiable  # the backward is not itself differentiated: double backward raises clearly
    def backward(ctx, dout, _dmean, _dvar):
        if dout is None:  # the output was not used: no gradient flows back
            return None, None, None, None
        x_centered, inv_std, scale, weight = ctx.saved_tensors
        saved = Saved(x_centered, inv_std, scale, weight, None, None)
        dx, dgamma, dbeta = bn_backward_tensor(dout, saved)
        needs_x, needs_weight, needs_bias, _ = ctx.needs_input_grad
        return (dx if needs_x else None, dgamma if needs_weight else None,
                dbeta if needs_bias else None, None)


def batch_norm_train(x, weight, bias, eps=1e-5):
    """Functional training-mode batch norm: ``(out, mean, biased_var)``, differentiable in x, weight, bias."""
    check_input_shape(x.shape, training=True)
    return BatchNormFunction.apply(x, weight, bias, check_eps(eps))
