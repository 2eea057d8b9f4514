r"""Batch Renormalization (Ioffe 2017): batch norm whose training output does not depend on the batch alone.

Batch norm normalizes with the batch's statistics in training and with the running ones at inference,
so a model sees different activations in the two modes, more so the smaller or the less independent
the batches. Batch Renormalization ("Batch Renormalization: Towards Reducing Minibatch Dependence in
Batch-Normalized Models", NeurIPS 2017) corrects the batch-normalized value towards what the running
statistics would give. Algorithm 1 of the paper, its lines numbered here in order, per channel over
the m values of a training batch, with moving mean mu, moving standard deviation sigma and rate alpha::

    1  mu_B    = 1/m sum_i x_i
    2  sigma_B = sqrt(eps + 1/m sum_i (x_i - mu_B)^2)
    3  r       = stop_gradient(clip_[1/r_max, r_max](sigma_B / sigma))
    4  d       = stop_gradient(clip_[-d_max, d_max]((mu_B - mu) / sigma))
    5  x_hat_i = (x_i - mu_B) / sigma_B * r + d
    6  y_i     = gamma x_hat_i + beta
    7  mu     := mu + alpha (mu_B - mu)                (update the moving averages)
    8  sigma  := sigma + alpha (sigma_B - sigma)
       inference: y = gamma (x - mu) / sigma + beta

With r = sigma_B / sigma and d = (mu_B - mu) / sigma unclipped, line 5 is (x_i - mu) / sigma: the
inference transform. With r_max = 1 and d_max = 0 (r = 1, d = 0) it is batch norm.

The backward pass is derived by hand. r and d are constants for the gradient, so lines 5 and 6 are
y_i = (gamma r) (x_i - mu_B) / sigma_B + (gamma d + beta): batch norm with weight gamma r and bias
gamma d + beta. Hence dL/dx is batch norm's backward with gamma r in place of gamma, and
dgamma = sum_i dy_i (x_hat_i r + d) = r sum_i dy_i (x_i - mu_B) / sigma_B + d sum_i dy_i, dbeta = sum_i dy_i.

Where this code chooses what the paper leaves open, or differs from it:

- ``momentum`` is alpha: torch's convention, the weight of the new batch (default 0.1).
- ``running_std`` holds sigma, the moving average of sigma_B (line 8), which has eps inside it (line 2)
  and uses the biased batch variance. It is not batch norm's running variance (unbiased, without eps);
  the running mean is batch norm's. They start at 0 and 1, as torch's running_mean and running_var.
- ``r_max`` and ``d_max`` are plain attributes. The paper starts from batch norm (1 and 0) and relaxes
  them to 3 and 5 over training, once the moving averages mean something; that schedule is the
  caller's: at the defaults, fresh moving averages correct the first batches as far as the clips allow.
- Float16 and bfloat16 inputs are computed in float32, as the batch norm layers do.
"""

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from .functional import Saved, batch_norm_eval, batch_statistics, bn_backward_tensor, bn_normalize_tensor
from .machinery import cast, compute_dtype
from .running_stats import update_running_stats
from .validation import (EPS, check_d_max, check_dtype, check_eps, check_input_shape, check_layer_state,
                         check_momentum, check_num_features, check_r_max)


class BatchRenormFunction(torch.autograd.Function):
    """Batch Renormalization in training mode, with the hand-derived backward:
    ``apply(x, weight, bias, running_mean, running_std, eps, r_max, d_max)`` returns ``(out, mean, std)``,
    the batch's mu_B and sigma_B for the moving averages (no gradient). The running statistics are read,
    not changed, and get no gradient."""

    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_std, eps, r_max, d_max):
        ctx.input_dtype, dtype = x.dtype, compute_dtype(x.dtype)  # float32 for float16 and bfloat16 inputs
        x, weight, bias, mu, sigma = (cast(t, dtype) for t in (x, weight, bias, running_mean, running_std))
        mean, x_centered, var, spare = batch_statistics(x)                    # line 1, and x_i - mu_B
        std = torch.sqrt(var + eps)                                           # line 2: sigma_B
        r = (std / sigma).clamp(1 / r_max, r_max)                             # line 3
        d = ((mean - mu) / sigma).clamp(-d_max, d_max)                        # line 4
        # lines 5-6, y_i = gamma ((x_i - mu_B) / sigma_B r + d) + beta: batch norm, weight gamma r, bias gamma d + beta
        out, saved = bn_normalize_tensor(x_centered, mean, var, weight * r, weight * d + bias, eps, spare)
        ctx.save_for_backward(x_centered, saved.inv_std, saved.scale, saved.weight, r, d)
        ctx.mark_non_differentiable(mean, std)
        return cast(out, ctx.input_dtype), mean, std

    @staticmethod
    @once_differentiable
    def backward(ctx, dout, _dmean, _dstd):
        x_centered, inv_std, scale, weight_r, r, d = ctx.saved_tensors
        saved = Saved(x_centered, inv_std, scale, weight_r, None, None)       # batch norm's, gamma r for gamma
        dx, dgamma_r, dbeta = bn_backward_tensor(cast(dout, x_centered.dtype), saved)
        dgamma = r * dgamma_r + d * dbeta                                     # sum_i dy_i (x_hat_i r + d)
        return cast(dx, ctx.input_dtype), dgamma, dbeta, None, None, None, None, None


class _BatchRenorm(nn.Module):
    """What BatchRenorm1d and BatchRenorm2d share; they differ only in the input shapes they accept."""

    input_dims: tuple = ()
    input_layout = ""

    def __init__(self, num_features, eps=EPS, momentum=0.1, r_max=3.0, d_max=5.0, *, device=None, dtype=None):
        super().__init__()
        self.num_features = check_num_features(num_features)
        self.eps, self.momentum = check_eps(eps), check_momentum(momentum, allow_none=False)
        self.r_max, self.d_max = check_r_max(r_max), check_d_max(d_max)
        factory = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(torch.ones(num_features, **factory))                      # gamma
        self.bias = nn.Parameter(torch.zeros(num_features, **factory))                       # beta
        self.register_buffer("running_mean", torch.zeros(num_features, **factory))           # mu
        self.register_buffer("running_std", torch.ones(num_features, **factory))             # sigma
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long, device=device))

    def reset_running_stats(self):
        self.running_mean.zero_()
        self.running_std.fill_(1)
        self.num_batches_tracked.zero_()

    def reset_parameters(self):
        self.reset_running_stats()
        nn.init.ones_(self.weight)
        nn.init.zeros_(self.bias)

    def forward(self, x):
        name = type(self).__name__
        check_input_shape(x.shape, self.num_features, self.training, name, self.input_dims, self.input_layout)
        check_layer_state(name, self.num_features, weight=self.weight, bias=self.bias,
                          running_mean=self.running_mean, running_std=self.running_std)
        check_dtype(x.dtype, self.weight.dtype, name)
        if not self.training:  # inference: y = gamma (x - mu) / sigma + beta, batch norm's with var = sigma^2
            return batch_norm_eval(x, self.running_mean, self.running_std.square(), self.weight, self.bias, 0.0)
        check_momentum(self.momentum, allow_none=False)
        out, mean, std = BatchRenormFunction.apply(x, self.weight, self.bias, self.running_mean, self.running_std,
                                                   check_eps(self.eps), check_r_max(self.r_max),
                                                   check_d_max(self.d_max))
        self.num_batches_tracked.add_(1)
        update_running_stats(self, running_mean=mean, running_std=std)       # lines 7 and 8
        return out

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, r_max={self.r_max}, "
                f"d_max={self.d_max}")


class BatchRenorm1d(_BatchRenorm):
    """Batch Renormalization over (N, C) or (N, C, L) inputs, per channel C."""

    input_dims = (2, 3)
    input_layout = "(N, C) or (N, C, L)"


class BatchRenorm2d(_BatchRenorm):
    """Batch Renormalization over (N, C, H, W) images, per channel C."""

    input_dims = (4,)
    input_layout = "(N, C, H, W)"
