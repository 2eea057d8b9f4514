"""Batch norm layers for torch: ``BatchNorm1d`` and ``BatchNorm2d``, drop-in replacements for torch's.

The same constructor, parameters, buffers and ``state_dict`` keys as ``torch.nn.BatchNorm1d/2d``, so
weights load both ways. They never call torch's own batch norm kernel: training-mode normalization goes
through ``bnlib.functional.BatchNormFunction``, whose backward is the formula derived in
``bnlib.normalization``.
"""

import torch
from torch import nn

from .functional import BatchNormFunction, per_channel
from .validation import check_dtype, check_eps, check_input_shape, check_momentum, check_num_features


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
            out = (x - per_channel(self.running_mean, x)) * per_channel(scale, x)
            return out if self.bias is None else out + per_channel(self.bias, x)
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
