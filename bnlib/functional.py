r"""Batch norm on torch tensors: the forward and backward math, and the autograd Function built on it.

The numpy batch norm of ``bnlib.normalization`` on torch tensors, in the same shape (CS231n's):
``bn_forward_tensor(x, weight, bias, eps) -> (out, saved)`` and ``bn_backward_tensor(dout, saved) ->
(dx, dgamma, dbeta)``. They are plain tensor functions, so code that does its own backpropagation
(without autograd) runs exactly the computation the layers run. Per channel, over its m values::

    mu    = 1/m sum_i x_i                    var = 1/m sum_i (x_i - mu)^2       (biased)
    x_hat = (x_i - mu) / sqrt(var + eps)     y_i = gamma x_hat_i + beta
    dbeta = sum_i dy_i                       dgamma = sum_i dy_i x_hat_i
    dx_i  = gamma / sqrt(var + eps) (dy_i - dbeta/m - x_hat_i dgamma/m)

``BatchNormFunction`` wraps them for autograd (its backward is that formula, never torch's batch norm
kernel); ``batch_norm_train`` is the functional training-mode batch norm, ``batch_norm_eval`` the eval
mode, with given statistics. What is not math (buffers reused through ``out=``, float32 arithmetic for
float16 and bfloat16 as torch's kernels, the form torch.func needs) is in ``bnlib.machinery``.
"""

from typing import NamedTuple, Optional

import torch

from .machinery import apply, cast, compute_dtype, kept_statistics, rounding_dtype, scale_and_shift, stored
from .normalization import EPS, per_channel, reduce_axes
from .validation import check_eps, check_input_shape


class Saved(NamedTuple):
    """What ``bn_forward_tensor`` keeps for the backward pass, and the batch statistics."""

    x_centered: torch.Tensor        # x - mu, the shape of x
    inv_std: torch.Tensor           # 1 / sqrt(var + eps), (C,)
    scale: torch.Tensor             # k = gamma / sqrt(var + eps), or 1 / sqrt(var + eps) without gamma, (C,)
    weight: Optional[torch.Tensor]  # gamma (C,), or None without affine parameters
    mean: torch.Tensor              # mu, (C,)
    var: torch.Tensor               # biased batch variance, (C,)


def bn_forward_tensor(x, weight, bias, eps=EPS, stats_dtype=None):
    """Training-mode batch norm of ``x`` (N, C, *spatial): ``(out, saved)``; weight and bias may be None.

    ``stats_dtype`` (float16 or bfloat16) rounds the statistics as torch's CPU kernel does for a layer
    held in that type (``bnlib.machinery.stored`` and ``kept_statistics``).
    """
    mean, x_centered, var, spare = batch_statistics(x, stats_dtype)
    return bn_normalize_tensor(x_centered, mean, var, weight, bias, eps, spare, stats_dtype)


def batch_statistics(x, stats_dtype=None):
    """The first half of the forward pass: ``(mean, x_centered, var, spare)``, per channel.

    Two passes, mu first, then var = mean((x - mu)^2), which has no E[x^2] - E[x]^2 cancellation.
    ``spare`` is the full-size tensor that held the squares, free for the output (``bn_normalize_tensor``).
    """
    axes = reduce_axes(x.dim())
    mean = x.mean(axes)                                                 # mu = 1/m sum_i x_i
    x_centered = x - per_channel(stored(mean, stats_dtype), x.dim())    # x_i - mu
    squares = x_centered * x_centered                                   # (x_i - mu)^2
    var = squares.mean(axes)                                            # var = 1/m sum_i (x_i - mu)^2
    if stats_dtype is not None:  # a float16/bfloat16 layer: the statistics as torch's kernel keeps them
        mean, var = kept_statistics(mean, var, x.numel() // x.shape[1], stats_dtype)
    return mean, x_centered, var, squares


def bn_normalize_tensor(x_centered, mean, var, weight, bias, eps, spare=None, stats_dtype=None):
    """The second half of the forward pass, given x - mu and the statistics: ``(out, saved)``.

    For callers whose statistics come from elsewhere too (``bnlib.SyncBatchNorm``'s global ones). The
    output goes into ``spare`` if given, a full-size tensor of ours that nothing needs any more.
    Centering before scaling keeps float32 accurate when the mean dwarfs the spread, where folding mu
    into the shift would cancel catastrophically.
    """
    inv_std = stored(torch.rsqrt(var + eps), stats_dtype)             # 1 / sqrt(var + eps)
    scale = inv_std if weight is None else inv_std * weight           # k = gamma / sqrt(var + eps)
    out = scale_and_shift(x_centered, scale, bias, spare)             # y_i = k (x_i - mu) + beta
    return out, Saved(x_centered, inv_std, scale, weight, mean, var)


def bn_backward_tensor(dout, saved):
    """``(dx, dgamma, dbeta)`` from dL/dy (see ``bnlib.normalization.batch_norm_backward``); ``dgamma`` is
    None without weight. Two reductions, then two fused passes into one new tensor."""
    dbeta, dgamma, spare = bn_backward_sums(dout, saved)
    m = dout.numel() // dout.shape[1]                                     # values per channel
    dx = bn_backward_dx(dout, saved, dbeta, dgamma, m, spare)
    return dx, None if saved.weight is None else dgamma, dbeta


def bn_backward_sums(dout, saved):
    """The two per-channel sums of the backward pass: ``(dbeta, dgamma, spare)``, ``spare`` the
    full-size tensor that held the products dy_i (x_i - mu), free for ``bn_backward_dx``."""
    axes = reduce_axes(dout.dim())
    dbeta = dout.sum(axes)                                                # sum_i dy_i
    products = dout * saved.x_centered                                    # dy_i (x_i - mu)
    dgamma = products.sum(axes) * saved.inv_std                           # sum_i dy_i x_hat_i
    return dbeta, dgamma, products


def bn_backward_dx(dout, saved, dbeta, dgamma, m, spare=None):
    """dx_i = k (dy_i - dbeta/m - x_hat_i dgamma/m) from the per-channel sums over m values, k = gamma /
    sqrt(var + eps); into ``spare`` if given. The sums and m may cover more values than ``dout`` holds:
    ``bnlib.SyncBatchNorm`` passes the sums over every process's shard and the global m."""
    k, inv_std = saved.scale, saved.inv_std
    dx = scale_and_shift(dout, k, k * dbeta * (-1 / m), spare)                 # k dy_i - k dbeta/m
    x_hat_coefficient = per_channel(dgamma * inv_std * k, dx.dim())             # x_hat_i = (x_i - mu) inv_std
    return dx.addcmul_(saved.x_centered, x_hat_coefficient, value=-1 / m)       # - k x_hat_i dgamma/m


class BatchNormFunction(torch.autograd.Function):
    """Training-mode batch norm with the hand-derived backward: ``apply(x, weight, bias, eps, stats_dtype)``
    returns ``(out, mean, biased_var)``; the statistics are outputs for the running averages and carry no
    gradient. float16 and bfloat16 inputs are computed in float32, the output and dx returned in x's type;
    ``stats_dtype`` (the type of a float16/bfloat16 layer, or None) rounds the statistics as torch does.

    ``forward`` is ``compute`` then ``remember`` (the split ``bnlib.machinery.apply`` needs for
    torch.func). When the backward is itself differentiated (``create_graph=True``) it recomputes the
    statistics from x with autograd recording, so second derivatives flow through them.
    """

    kept_count = 3  # tensors ``compute`` keeps for the backward besides x and weight

    @staticmethod
    def compute(x, weight, bias, eps, stats_dtype=None):
        """The forward without ctx: ``((out, mean, var), kept)``."""
        dtype = compute_dtype(x.dtype)
        out, saved = bn_forward_tensor(cast(x, dtype), cast(weight, dtype), cast(bias, dtype), eps, stats_dtype)
        return (cast(out, x.dtype), saved.mean, saved.var), (saved.x_centered, saved.inv_std, saved.scale)

    @staticmethod
    def remember(ctx, inputs, outputs, kept):
        """What the backward keeps: x - mu and per-channel vectors, and x itself (an input, as torch's
        kernel keeps it) for a backward that is differentiated in turn."""
        x, weight, _, eps, stats_dtype = inputs
        ctx.eps, ctx.stats_dtype = eps, stats_dtype
        ctx.set_materialize_grads(False)  # the statistics get no gradient: no zeros made for them
        ctx.mark_non_differentiable(*outputs[1:])
        ctx.save_for_backward(x, weight, *kept)

    @staticmethod
    def forward(ctx, x, weight, bias, eps, stats_dtype=None):
        inputs = (x, weight, bias, eps, stats_dtype)
        outputs, kept = BatchNormFunction.compute(*inputs)
        BatchNormFunction.remember(ctx, inputs, outputs, kept)
        return outputs

    @staticmethod
    def backward(ctx, dout, *_):
        if dout is None:  # the output was not used: no gradient flows back
            return None, None, None, None, None
        x, weight, x_centered, inv_std, scale = ctx.saved_tensors
        dtype = x_centered.dtype  # the forward's arithmetic type
        if torch.is_grad_enabled():  # create_graph: the statistics rebuilt from x, differentiably
            saved = bn_forward_tensor(cast(x, dtype), cast(weight, dtype), None, ctx.eps, ctx.stats_dtype)[1]
        else:
            saved = Saved(x_centered, inv_std, scale, weight, None, None)
        dx, dgamma, dbeta = bn_backward_tensor(cast(dout, dtype), saved)
        needs_x, needs_weight, needs_bias = ctx.needs_input_grad[:3]
        return (cast(dx, x.dtype) if needs_x else None, dgamma if needs_weight else None,
                dbeta if needs_bias else None, None, None)


def batch_norm_function(x, weight, bias, eps, stats_dtype):
    """``BatchNormFunction.apply`` (in torch.func's form under a transform); ``stats_dtype`` is the type
    the layer is held in: its statistics are rounded as torch's when it is float16 or bfloat16."""
    return apply(BatchNormFunction, x, weight, bias, eps, rounding_dtype(stats_dtype))


def batch_norm_train(x, weight, bias, eps=EPS):
    """Functional training-mode batch norm: ``(out, mean, biased_var)``, differentiable in x, weight, bias."""
    check_input_shape(x.shape, training=True)
    return batch_norm_function(x, weight, bias, check_eps(eps), x.dtype if weight is None else weight.dtype)


def batch_norm_eval(x, mean, var, weight, bias, eps):
    """Eval mode: y = (x - mean) gamma / sqrt(var + eps) + beta with given statistics (the running ones),
    in plain tensor operations that autograd differentiates. float16 and bfloat16 inputs are computed in
    float32 and the output returned in x's type, as in training."""
    dtype = compute_dtype(x.dtype)
    inv_std = torch.rsqrt(cast(var, dtype) + eps)                         # 1 / sqrt(var + eps)
    scale = inv_std if weight is None else inv_std * cast(weight, dtype)  # gamma / sqrt(var + eps)
    centered = cast(x, dtype) - per_channel(cast(mean, dtype), x.dim())   # x - mean, before scaling
    return cast(scale_and_shift(centered, scale, cast(bias, dtype)), x.dtype)
