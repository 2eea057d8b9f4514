"""Batch norm on torch tensors: the forward and backward math, and the autograd Function built on it.

``bn_forward_tensor`` and ``bn_backward_tensor`` are plain tensor functions, so code that does its own
backpropagation (without autograd) runs exactly the computation the layers run. ``BatchNormFunction``
wraps them for autograd: its backward is the formula derived in ``bnlib.normalization``, never torch's
own batch norm kernel. ``batch_norm_train`` is the functional training-mode batch norm.

Scratch buffers are reused through ``out=`` where torch allows it, and fresh tensors are made where it
does not (see ``_into``), so autograd can differentiate the backward pass itself (second derivatives)
and vmap can batch it (batched gradients).
"""

from typing import NamedTuple, Optional

import torch

from .normalization import per_channel, reduce_axes
from .validation import EPS, LOW_PRECISION, check_eps, check_input_shape


class Saved(NamedTuple):
    """What ``bn_forward_tensor`` keeps for the backward pass, plus the batch statistics."""

    x_centered: torch.Tensor       # x - mu, the shape of x
    inv_std: torch.Tensor          # 1 / sqrt(var + eps), (C,)
    scale: torch.Tensor            # gamma inv_std, or inv_std without affine parameters, (C,)
    weight: Optional[torch.Tensor]  # gamma (C,), or None without affine parameters
    mean: torch.Tensor             # mu, (C,)
    var: torch.Tensor              # biased batch variance, (C,)


def compute_dtype(dtype):
    """The type the arithmetic runs in: float32 for float16 and bfloat16 inputs, as in torch's CPU kernels."""
    return torch.promote_types(dtype, torch.float32)


def cast(tensor, dtype):
    """``tensor.to(dtype)``, passing None (no affine parameter) and tensors already of that type through."""
    return tensor if tensor is None or tensor.dtype == dtype else tensor.to(dtype)


def scale_and_shift(x_centered, scale, shift, scratch=None):
    """(x - mu) scale + shift, in one fused pass when there are both; ``scale`` or ``shift`` may be None.
    Written into ``scratch``, a full-size buffer of ours, when given (see ``_into``)."""
    if scale is None:
        return x_centered if shift is None else x_centered + per_channel(shift, x_centered.dim())
    scale = per_channel(scale, x_centered.dim())
    if shift is None:
        return _into(scratch, torch.mul, x_centered, scale)
    return _into(scratch, torch.addcmul, per_channel(shift, x_centered.dim()), x_centered, scale)


def _into(scratch, op, *args):
    """``op(*args, out=scratch)``: reusing a buffer spares a fresh full-size tensor, whose first touch
    costs page faults on large batches. Autograd recording (create_graph) and vmap (batched gradients)
    refuse out=; there, and without a scratch buffer, the result is a new tensor."""
    try:
        return op(*args, out=scratch)
    except RuntimeError:
        if scratch is None:
            raise
        return op(*args)


def _round(vector, dtype):
    """``vector`` rounded to ``dtype`` and back, or unchanged when ``dtype`` is None."""
    return vector if dtype is None else vector.to(dtype).to(vector.dtype)


def bn_forward_tensor(x, weight, bias, eps, stats_dtype=None):
    """Training-mode batch norm of ``x`` (N, C, *spatial): ``(out, saved)``; weight and bias may be None.

    Per channel, in two passes: mu = mean(x), then var = mean((x - mu)^2), which has no
    E[x^2] - E[x]^2 cancellation. out = (x - mu) * (gamma / sqrt(var + eps)) + beta: centering before
    scaling keeps float32 accurate when the mean dwarfs the spread, where folding mu into the shift
    would cancel catastrophically. Only two full-size tensors are made, x - mu (kept for the backward
    pass) and the output, which first holds the squares (x - mu)^2.

    ``stats_dtype`` (float16 or bfloat16) rounds mu and 1/sqrt(var + eps) to that type, as torch's CPU
    kernel stores the statistics of a layer held in that type (and the variance too for bfloat16, whose
    range cannot overflow).
    """
    dims = reduce_axes(x.dim())
    mean = _round(x.mean(dims), stats_dtype)                            # mu = 1/m sum x_i
    x_centered = x - per_channel(mean, x.dim())                          # x - mu
    out = x_centered * x_centered                                       # scratch: (x - mu)^2
    var = out.mean(dims)                                                # var = 1/m sum (x - mu)^2
    if stats_dtype == torch.bfloat16:
        var = _round(var, stats_dtype)
    return bn_normalize_tensor(x_centered, mean, var, weight, bias, eps, out, stats_dtype)


def bn_normalize_tensor(x_centered, mean, var, weight, bias, eps, out=None, stats_dtype=None):
    """The last step of ``bn_forward_tensor``, given x - mu and the statistics: ``(out, saved)``.

    For callers whose statistics come from elsewhere (the running averages, or the global statistics
    of ``bnlib.SyncBatchNorm``). ``out`` may be a full-size buffer of ours to write into.
    """
    inv_std = _round((var + eps).rsqrt(), stats_dtype)                  # (var + eps)^(-1/2)
    scale = inv_std if weight is None else inv_std * weight             # gamma inv_std
    out = scale_and_shift(x_centered, scale, bias, out)                 # beta + (x - mu) scale
    return out, Saved(x_centered, inv_std, scale, weight, mean, var)


def bn_backward_tensor(dout, saved):
    """``(dx, dgamma, dbeta)`` from dL/dy (see ``bnlib.normalization.batch_norm_backward``).

    With x_hat = (x - mu) inv_std, k = gamma inv_std and m values per channel:
    dbeta = sum dy, dgamma = sum dy x_hat, dx = k (dy - dbeta/m - x_hat dgamma/m), computed as
    dx = (k dy - k dbeta/m) - (x - mu) k inv_std dgamma/m: two fused passes after the reductions, in
    one new buffer (which first holds the products dy (x - mu)). ``dgamma`` is None without weight.
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
    dims = reduce_axes(dout.dim())
    dbeta = dout.sum(dims)                                              # sum_i dy_i
    products = dout * saved.x_centered                                  # dy_i (x_i - mu)
    dgamma = products.sum(dims) * saved.inv_std                         # sum_i dy_i x_hat_i
    return dbeta, dgamma, products


def bn_backward_dx(dout, saved, dbeta, dgamma, m, out=None):
    """dx = k (dy - dbeta/m - x_hat dgamma/m) from the per-channel sums over m values; into ``out`` if given.

    The sums and m may cover more values than ``dout`` holds: ``bnlib.SyncBatchNorm`` passes the sums
    over every process's shard and the global m.
    """
    x_centered, inv_std, k = saved.x_centered, saved.inv_std, saved.scale
    variance_coefficient = dgamma * inv_std * k                         # k inv_std dgamma: the variance path
    mean_path = k * dbeta * (-1 / m)                                    # -k dbeta/m: the mean path
    ndim = dout.dim()
    dx = _into(out, torch.addcmul, per_channel(mean_path, ndim), dout, per_channel(k, ndim))  # k dy - k dbeta/m
    return dx.addcmul_(x_centered, per_channel(variance_coefficient, ndim), value=-1 / m)  # - k x_hat dgamma/m


def _forward(x, weight, bias, eps, stats_dtype=None):
    """The Function's forward: ``(out, mean, var, x_centered, inv_std, scale)``, computed in float32 for
    float16 and bfloat16 inputs (torch's opmath) and the output rounded back to x's type."""
    dtype = compute_dtype(x.dtype)
    out, saved = bn_forward_tensor(cast(x, dtype), cast(weight, dtype), cast(bias, dtype), eps,
                                   _rounding(x, weight, stats_dtype))
    return cast(out, x.dtype), saved.mean, saved.var, saved.x_centered, saved.inv_std, saved.scale


def _rounding(x, weight, stats_dtype):
    """The low precision the statistics are rounded to (see ``bn_forward_tensor``), or None."""
    stats_dtype = stats_dtype or (x.dtype if weight is None else weight.dtype)
    return stats_dtype if stats_dtype in LOW_PRECISION else None


def _setup_context(ctx, inputs, outputs):
    """What the backward keeps: x - mu and per-channel vectors, and x itself (an input, as torch's
    kernel keeps it) for a backward that is differentiated in turn."""
    x, weight, _, eps, stats_dtype = inputs
    ctx.eps, ctx.stats_dtype = eps, _rounding(x, weight, stats_dtype)
    ctx.set_materialize_grads(False)  # the statistics get no gradient: skip making zeros for them
    ctx.mark_non_differentiable(*outputs[1:])
    ctx.save_for_backward(x, weight, *outputs[3:])


class BatchNormFunction(torch.autograd.Function):
    """Training-mode batch norm with the hand-derived backward: ``apply(x, weight, bias, eps, stats_dtype)``
    returns ``(out, mean, biased_var)``; the statistics are outputs for the running averages and carry no
    gradient. ``stats_dtype`` is the type of the layer's parameters and buffers (see ``bn_forward_tensor``),
    by default weight's, or x's without weight.

    When the backward is itself differentiated (``create_graph=True``), it recomputes the statistics
    from x with autograd recording, so second derivatives flow through them.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, eps, stats_dtype=None):
        outputs = _forward(x, weight, bias, eps, stats_dtype)
        _setup_context(ctx, (x, weight, bias, eps, stats_dtype), outputs)
        return outputs[:3]

    @staticmethod
    def backward(ctx, dout, *_):
        if dout is None:  # the output was not used: no gradient flows back
            return None, None, None, None, None
        x, weight, x_centered, inv_std, scale = ctx.saved_tensors
        dtype = x_centered.dtype  # the forward's arithmetic type
        if torch.is_grad_enabled():  # create_graph: rebuild the statistics from x, differentiably
            saved = bn_forward_tensor(cast(x, dtype), cast(weight, dtype), None, ctx.eps, ctx.stats_dtype)[1]
        else:
            saved = Saved(x_centered, inv_std, scale, weight, None, None)
        dx, dgamma, dbeta = bn_backward_tensor(cast(dout, dtype), saved)
        needs_x, needs_weight, needs_bias = ctx.needs_input_grad[:3]
        return (cast(dx, x.dtype) if needs_x else None, dgamma if needs_weight else None,
                dbeta if needs_bias else None, None, None)


class TransformableBatchNormFunction(BatchNormFunction):
    """The same Function in the form torch.func's transforms (vmap, grad, jacrev, ...) need: a forward
    without ctx, a ``setup_context`` and a generated vmap rule; ``apply`` returns the per-channel
    vectors too. Torch binds this form's arguments by signature on every call, tens of microseconds,
    so ``batch_norm_function`` picks it only under a transform."""

    generate_vmap_rule = True
    forward = staticmethod(_forward)
    setup_context = staticmethod(_setup_context)


def batch_norm_function(*args):
    """``BatchNormFunction.apply(*args)``, or its torch.func form under a torch.func transform."""
    if torch._C._are_functorch_transforms_active():
        return TransformableBatchNormFunction.apply(*args)[:3]
    return BatchNormFunction.apply(*args)


def batch_norm_train(x, weight, bias, eps=EPS):
    """Functional training-mode batch norm: ``(out, mean, biased_var)``, differentiable in x, weight, bias."""
    check_input_shape(x.shape, training=True)
    return batch_norm_function(x, weight, bias, check_eps(eps))
