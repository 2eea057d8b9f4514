"""Batch norm layers for torch, from tensor operations and a hand-written backward pass.

``BatchNorm1d`` and ``BatchNorm2d`` are drop-in replacements for ``torch.nn.BatchNorm1d/2d``: the same
constructor, parameters, buffers and ``state_dict`` keys, so weights load both ways. They never call
torch's own batch norm kernel: training-mode normalization goes through ``BatchNormFunction``, whose
backward is the formula derived in ``bnlib.normalization``.

The math lives in two plain tensor functions, ``bn_forward_tensor`` and ``bn_backward_tensor``, so that
code doing its own backpropagation (without autograd) runs exactly the same computation.
"""

from typing import NamedTuple, Optional

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from .validation import check_dtype, check_eps, check_input_shape, check_momentum, check_num_features


class Saved(NamedTuple):
    """What ``bn_forward_tensor`` keeps for the backward pass, plus the batch statistics."""

    x_centered: torch.Tensor       # x - mu, the shape of x
    inv_std: torch.Tensor          # 1 / sqrt(var + eps), (C,)
    scale: torch.Tensor            # gamma inv_std, or inv_std without affine parameters, (C,)
    weight: Optional[torch.Tensor]  # gamma (C,), or None without affine parameters
    mean: torch.Tensor             # mu, (C,)
    var: torch.Tensor              # biased batch variance, (C,)


def _reduce_dims(x):
    """Every axis but the channels' (axis 1): just the batch axis for (N, C), the commonest case."""
    return 0 if x.dim() == 2 else [0, *range(2, x.dim())]


def _per_channel(vector, like):
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
    dims = _reduce_dims(x)
    mean = x.mean(dims)                                                 # mu = 1/m sum x_i
    x_centered = x - _per_channel(mean, x)                              # x - mu
    out = torch.mul(x_centered, x_centered)                             # scratch: (x - mu)^2
    var = out.mean(dims)                                                # var = 1/m sum (x - mu)^2
    inv_std = (var + eps).rsqrt_()                                      # (var + eps)^(-1/2)
    scale = inv_std if weight is None else inv_std * weight             # gamma inv_std
    if bias is None:
        torch.mul(x_centered, _per_channel(scale, x), out=out)          # (x - mu) scale
    else:
        torch.addcmul(_per_channel(bias, x), x_centered, _per_channel(scale, x), out=out)  # beta + (x - mu) scale
    return out, Saved(x_centered, inv_std, scale, weight, mean, var)


def bn_backward_tensor(dout, saved):
    """``(dx, dgamma, dbeta)`` from dL/dy (see ``bnlib.normalization.batch_norm_backward``).

    With x_hat = (x - mu) inv_std, k = gamma inv_std and m values per channel:
    dbeta = sum dy, dgamma = sum dy x_hat, dx = k (dy - dbeta/m - x_hat dgamma/m), computed as
    dx = (k dy - k dbeta/m) - (x - mu) k inv_std dgamma/m: two fused passes after the reductions, all
    in one new buffer (which first holds the products dy (x - mu)). ``dgamma`` is None without weight.
    """
    x_centered, inv_std, k = saved.x_centered, saved.inv_std, saved.scale
    dims = _reduce_dims(dout)
    m = dout.numel() // dout.shape[1]                                   # values per channel
    dbeta = dout.sum(dims)                                              # sum_i dy_i
    dx = torch.mul(dout, x_centered)                                    # scratch: dy_i (x_i - mu)
    dgamma = dx.sum(dims).mul_(inv_std)                                 # sum_i dy_i x_hat_i
    variance_coefficient = torch.mul(dgamma, inv_std).mul_(k)           # k inv_std dgamma: the variance path
    mean_path = torch.mul(k, dbeta).mul_(-1 / m)                        # -k dbeta/m: the mean path
    torch.addcmul(_per_channel(mean_path, dout), dout, _per_channel(k, dout), out=dx)  # k dy - k dbeta/m
    dx.addcmul_(x_centered, _per_channel(variance_coefficient, dout), value=-1 / m)  # - k x_hat dgamma/m
    return dx, None if saved.weight is None else dgamma, dbeta


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


class _BatchNorm(nn.Module):
    """What BatchNorm1d and BatchNorm2d share; they differ only in the input shapes they accept."""

    _version = 2  # torch's state_dict format version for batch norm (has num_batches_tracked)
    input_dims: tuple = ()
    input_layout = ""

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True,
                 device=None, dtype=None, *, bias=True):
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.num_features = check_num_features(num_features)
        self.eps = check_eps(eps)
        self.momentum = check_momentum(momentum)
        self.affine = affine
        self.track_running_stats = track_running_stats
        if affine:
            self.weight = nn.Parameter(torch.empty(num_features, **factory))   # gamma
            if bias:
                self.bias = nn.Parameter(torch.empty(num_features, **factory))  # beta
            else:  # scale only (torch's bias=False), e.g. when a bias follows anyway
                self.register_parameter("bias", None)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", torch.zeros(num_features, **factory))
            self.register_buffer("running_var", torch.ones(num_features, **factory))
            self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long, device=device))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)
        self.reset_parameters()

    def reset_running_stats(self):
        if self.track_running_stats:
            self.running_mean.zero_()
            self.running_var.fill_(1)
            self.num_batches_tracked.zero_()

    def reset_parameters(self):
        self.reset_running_stats()
        if self.affine:
            nn.init.ones_(self.weight)
            if self.bias is not None:
                nn.init.zeros_(self.bias)

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"bias={self.bias is not None}, track_running_stats={self.track_running_stats}")

    def forward(self, x):
        use_batch_stats = self.training or not self.track_running_stats
        check_input_shape(x.shape, self.num_features, use_batch_stats,
                          type(self).__name__, self.input_dims, self.input_layout)
        state = self.weight if self.weight is not None else self.running_mean
        check_dtype(x.dtype, None if state is None else state.dtype, type(self).__name__)
        if not use_batch_stats:
            # Inference: normalize with the running averages; plain tensor ops, autograd differentiates.
            # (x - mean) first: folding the mean into the shift would cancel when it dwarfs the spread.
            scale = torch.rsqrt(self.running_var + self.eps)
            if self.weight is not None:
                scale = scale * self.weight
            out = (x - _per_channel(self.running_mean, x)) * _per_channel(scale, x)
            return out if self.bias is None else out + _per_channel(self.bias, x)
        out, mean, var = BatchNormFunction.apply(x, self.weight, self.bias, self.eps)
        if self.training and self.track_running_stats:
            self._update_running_stats(mean, var, x.numel() // x.shape[1])
        return out

    def _update_running_stats(self, mean, var, m):
        """running <- (1 - momentum) running + momentum batch, with the UNBIASED m/(m-1) variance.

        The ``ema_update`` rule, ``torch.lerp``, done in place on both buffers. ``mean`` and
        ``var`` carry no gradient (non-differentiable outputs of the Function), so these in-place
        updates of the buffers record nothing for autograd.
        """
        self.num_batches_tracked.add_(1)
        momentum = self.momentum
        if momentum is None:  # cumulative average: the t-th batch gets weight 1/t
            momentum = 1.0 / float(self.num_batches_tracked)
        # running + momentum (batch - running), for the mean and for the unbiased variance var m/(m-1)
        self.running_mean.lerp_(mean, momentum)
        self.running_var.lerp_(var * (m / (m - 1)), momentum)


class BatchNorm1d(_BatchNorm):
    """Batch norm over (N, C) or (N, C, L) inputs, per channel C (a drop-in for torch.nn.BatchNorm1d)."""

    input_dims = (2, 3)
    input_layout = "(N, C) or (N, C, L)"


class BatchNorm2d(_BatchNorm):
    """Batch norm over (N, C, H, W) images, per channel C (a drop-in for torch.nn.BatchNorm2d)."""

    input_dims = (4,)
    input_layout = "(N, C, H, W)"
