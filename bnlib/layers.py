"""Batch norm layers for torch: ``BatchNorm1d`` and ``BatchNorm2d``, drop-in replacements for torch's.

They subclass torch's batch norm base class (``torch.nn.modules.batchnorm._BatchNorm``) for what is
not arithmetic: the constructor, parameters, buffers, ``reset_*`` methods and the ``state_dict``
format, including state dicts saved before ``num_batches_tracked`` existed. Being batch norm to torch,
they are found by its tools: ``torch.optim.swa_utils.update_bn`` recomputes their statistics,
``torch.nn.utils.fusion`` folds them into the layer before them, ``convert_sync_batchnorm`` converts
them. The forward pass is ours and never calls torch's batch norm kernel: training-mode normalization
goes through ``bnlib.functional.BatchNormFunction``, whose backward is the formula derived in
``bnlib.normalization``.
"""

from torch.nn.modules.batchnorm import _BatchNorm as TorchBatchNorm

from .functional import batch_norm_eval, batch_norm_function
from .machinery import cast, compute_dtype, scale_and_shift
from .running_stats import unbiased_variance, update_running_stats
from .validation import (EPS, check_dtype, check_eps, check_input_shape, check_layer_state, check_momentum,
                         check_num_features)


class _BatchNorm(TorchBatchNorm):
    """What BatchNorm1d and BatchNorm2d share; they differ only in the input shapes they accept."""

    input_dims: tuple = ()
    input_layout = ""

    def __init__(self, num_features, eps=EPS, momentum=0.1, affine=True, track_running_stats=True,
                 device=None, dtype=None, *, bias=True):
        # eps is checked when used, as torch does: 0 is fine for normalizing with running statistics
        super().__init__(check_num_features(num_features), eps, check_momentum(momentum), affine,
                         track_running_stats, device, dtype, bias=bias)

    def forward(self, x):
        weight, bias, running_mean, running_var = self.weight, self.bias, self.running_mean, self.running_var
        # Batch statistics in training, and in eval mode too when there are no running statistics
        batch_stats = self.training or (running_mean is None and running_var is None)
        name, size = type(self).__name__, x.numel()
        check_input_shape(x.shape, self.num_features, batch_stats, name, self.input_dims, self.input_layout,
                          empty_ok=True)
        eps = check_eps(self.eps, batch_stats)
        check_layer_state(name, self.num_features, weight=weight, bias=bias, running_mean=running_mean,
                          running_var=running_var)
        state = weight if weight is not None else running_mean
        state_dtype = x.dtype if state is None else state.dtype
        if size:  # torch returns an empty batch before looking at types
            check_dtype(x.dtype, state_dtype, name)
        count = self.num_batches_tracked
        if self.training and self.track_running_stats and count is not None:
            count.add_(1)  # counted even when empty, as torch does
        if batch_stats and size:
            out, mean, var = batch_norm_function(x, weight, bias, eps, state_dtype)
            if self.training and self.track_running_stats and running_mean is not None:
                self.update_running_stats(mean, var, size // x.shape[1])
            return out
        if batch_stats:  # an empty batch, as torch: an empty output, zero gradients for gamma and beta
            dtype = compute_dtype(x.dtype)
            return cast(scale_and_shift(cast(x, dtype), cast(weight, dtype), cast(bias, dtype)), x.dtype)
        return batch_norm_eval(x, running_mean, running_var, weight, bias, eps)

    def update_running_stats(self, mean, var, m):
        """One step of the running statistics from a batch's mean and biased variance over m values per
        channel: ``bnlib.running_stats.update_running_stats`` with the mean and the unbiased variance
        m/(m-1) var."""
        update_running_stats(self, running_mean=mean, running_var=unbiased_variance(var, m))


class BatchNorm1d(_BatchNorm):
    """Batch norm over (N, C) or (N, C, L) inputs, per channel C (a drop-in for torch.nn.BatchNorm1d)."""

    input_dims = (2, 3)
    input_layout = "(N, C) or (N, C, L)"


class BatchNorm2d(_BatchNorm):
    """Batch norm over (N, C, H, W) images, per channel C (a drop-in for torch.nn.BatchNorm2d)."""

    input_dims = (4,)
    input_layout = "(N, C, H, W)"
