"""Synchronized batch norm: a batch split across processes, normalized as if it were whole.

In data-parallel training each process (a rank) holds a shard of the batch. Plain batch norm would
normalize every shard by its own statistics; ``SyncBatchNorm`` exchanges per-channel statistics so that
every rank normalizes with those of the whole batch, and backpropagates as batch norm on the whole batch
does. What crosses the wire per layer and training step, with C channels and k ranks:

- forward: each rank's channel count C and its number m_r of values per channel (2 int64, 16 bytes),
  then its per-channel mean and M2 = sum (x - mean)^2 (2C float64, 16C bytes); ``all_gather`` hands
  every rank all k of them. For C = 100 a rank sends 1,616 bytes and receives k times that.
- backward: the per-channel sums of dy and of dy x_hat (2C numbers in the arithmetic's type: 8C bytes
  in float32, which float16 and bfloat16 inputs are computed in), summed over the ranks by one
  ``all_reduce``.

Why (count, mean, M2) and not the sums of x and x^2: var = E[x^2] - E[x]^2 subtracts two huge, nearly
equal numbers when the mean dwarfs the spread. At mean 1e4 and std 1e-2, E[x^2] = 1e8 is known in float32
only to about 8, while the variance is 1e-4: nothing of it survives. Chan's merge (``chan_merge``) never
subtracts large numbers. Why float64 for mean and M2: a shard's mean rounded to float32 is off by up to
5e-4 at 1e4, not small against a spread of 1e-2. Each shard centers its values on its float32 mean c,
measures what that rounding left (the mean of x - c, a sum of small numbers) and sends its mean and M2
corrected for it, in float64. The shard statistics then carry only float32's rounding of the deviations
x - c and of their squares, about 1e-7 of the spread and of M2, where the sums of x and x^2 would lose
all of it; the merge adds no error of its own (float64) and the result is rounded to float32 once, at
the end.

The low-precision policy is the layers' (``bnlib.machinery``): float16 and bfloat16 inputs are computed
in float32, the output and dx returned in the input's type, and a float16/bfloat16 layer rounds its
statistics as ``bnlib.BatchNorm1d/2d`` does. Eval mode normalizes with the running statistics and
exchanges nothing.
"""

import math

import torch
import torch.distributed as dist
from torch.autograd.function import once_differentiable

from .functional import Saved, batch_norm_eval, batch_norm_train, bn_backward_dx, bn_backward_sums, bn_normalize_tensor
from .layers import BatchNorm1d, BatchNorm2d
from .machinery import cast, compute_dtype, kept_statistics, rounding_dtype, stored
from .normalization import per_channel, reduce_axes
from .running_stats import unbiased_variance, update_running_stats
from .validation import (EPS, SINGLE_VALUE, check_dtype, check_eps, check_input_shape, check_momentum,
                         check_num_features)


def chan_merge(counts, stats):
    """The whole batch's per-channel ``(mean, M2)`` from each shard's ``stats[r] = (mean_r, M2_r)`` over
    ``counts[r]`` values (Chan, Golub & LeVeque's parallel update).

    Shards are folded in one at a time: merging b into what came before, a, with n = n_a + n_b and
    delta = mean_b - mean_a, gives mean = mean_a + delta n_b/n and M2 = M2_a + M2_b + delta^2 n_a n_b/n.
    delta is a difference of nearby means and the rest are sums of positive terms: nothing cancels.
    Every rank folds the same gathered numbers in the same order, so all get the same bits.
    """
    n, (mean, m2) = 0, torch.zeros_like(stats[0])
    for n_b, (mean_b, m2_b) in zip(counts, stats):
        if n_b == 0:  # an empty shard adds nothing (and its mean is 0/0 = NaN)
            continue
        delta = mean_b - mean                                           # mean_b - mean_a
        mean = mean + delta * (n_b / (n + n_b))                         # mean_a + delta n_b/n
        m2 = m2 + m2_b + delta.square() * (n * n_b / (n + n_b))         # M2_a + M2_b + delta^2 n_a n_b/n
        n += n_b
    return mean, m2


def exchange(collective, *tensors, group):
    """``collective(*tensors, group=group)``, with a failure (often a timeout) explained."""
    try:
        collective(*tensors, group=group)
    except RuntimeError as error:
        raise RuntimeError(
            f"SyncBatchNorm could not exchange statistics with the other ranks: {error}. Every rank must run "
            f"each SyncBatchNorm layer, forward and backward, in the same order; a rank that failed or "
            f"skipped one leaves the others waiting until the process group's timeout.") from error


class SyncBatchNormFunction(torch.autograd.Function):
    """Training-mode batch norm over the shards of all ranks of ``group``; ``counts[r]`` is rank r's
    number of values per channel. Returns ``(out, mean, biased_var)`` of the whole batch; the statistics
    carry no gradient. The weight and bias gradients are this shard's sums: DDP (or the caller) combines
    them across ranks like those of any other parameter. ``stats_dtype`` is as in ``BatchNormFunction``."""

    @staticmethod
    def forward(ctx, x, weight, bias, eps, group, counts, stats_dtype=None):
        ctx.input_dtype, dtype = x.dtype, compute_dtype(x.dtype)  # float32 for float16 and bfloat16 inputs
        x, weight, bias = (cast(t, dtype) for t in (x, weight, bias))
        axes, m, n = reduce_axes(x.dim()), sum(counts), x.numel() // x.shape[1]  # global and local counts
        local_mean = x.mean(axes)                                       # c = mean_r, rounded to x's precision
        x_centered = x - per_channel(local_mean, x.dim())               # x - c
        squares = x_centered * x_centered                               # (x - c)^2
        offset = x_centered.sum(axes).double() / max(n, 1)              # mean_r - c: small, so summed precisely
        local = torch.stack([local_mean.double() + offset,              # mean_r, in float64
                             squares.sum(axes).double() - n * offset.square()])  # M2_r = sum(x-c)^2 - n(mean_r-c)^2
        gathered = [torch.empty_like(local) for _ in counts]
        exchange(dist.all_gather, gathered, local, group=group)
        mean, m2 = chan_merge(counts, gathered)
        mean, var = mean.to(dtype), (m2 / m).to(dtype)                 # the whole batch's mean and var = M2/m
        x_centered.sub_(per_channel(stored(mean, stats_dtype) - local_mean, x.dim()))  # x - mean = (x-c) - (mean-c)
        mean, var = kept_statistics(mean, var, m, stats_dtype)          # as torch keeps them, if low precision
        out, saved = bn_normalize_tensor(x_centered, mean, var, weight, bias, eps, squares, stats_dtype)
        ctx.save_for_backward(x_centered, saved.inv_std, saved.scale, weight)
        ctx.group, ctx.m = group, m
        ctx.mark_non_differentiable(mean, var)
        return cast(out, ctx.input_dtype), mean, var

    @staticmethod
    @once_differentiable
    def backward(ctx, dout, _dmean, _dvar):
        x_centered, inv_std, scale, weight = ctx.saved_tensors
        saved = Saved(x_centered, inv_std, scale, weight, None, None)
        dout = cast(dout, x_centered.dtype)                             # float32 for float16 and bfloat16
        dbeta, dgamma, spare = bn_backward_sums(dout, saved)            # this shard's sum dy, sum dy x_hat
        sums = torch.stack([dbeta, dgamma])                             # 2C numbers
        exchange(dist.all_reduce, sums, group=ctx.group)                # the whole batch's sums
        dx = bn_backward_dx(dout, saved, sums[0], sums[1], ctx.m, spare)
        needs_x, needs_weight, needs_bias = ctx.needs_input_grad[:3]
        return (cast(dx, ctx.input_dtype) if needs_x else None, dgamma if needs_weight else None,
                dbeta if needs_bias else None, None, None, None, None)


class SyncBatchNorm(torch.nn.modules.batchnorm._BatchNorm):
    """Batch norm with the statistics of the whole batch across the ranks of ``process_group`` (default:
    all), for inputs (N, C, *spatial) of any rank; a rank's shard may be empty.

    The constructor, parameters, buffers and ``state_dict`` keys are ``torch.nn.SyncBatchNorm``'s, so
    weights load both ways. Training mode needs ``torch.distributed`` initialized and every rank of the
    group to run the layer (and its backward) in step; the running statistics are updated on every rank
    with the global mean and unbiased variance M2/(m - 1), m the global count, as the layers update theirs
    (``bnlib.running_stats.update_running_stats``). Eval mode communicates
    nothing (with ``track_running_stats=False`` it uses the local shard's statistics, as torch's does).
    """

    def __init__(self, num_features, eps=EPS, momentum=0.1, affine=True, track_running_stats=True,
                 process_group=None, device=None, dtype=None, *, bias=True):
        super().__init__(check_num_features(num_features), check_eps(eps), check_momentum(momentum), affine,
                         track_running_stats, device=device, dtype=dtype, bias=bias)
        self.process_group = process_group

    def forward(self, x):
        name = type(self).__name__
        check_input_shape(x.shape, training=False)  # (N, C, ...); the channels are compared across ranks
        state = self.weight if self.weight is not None else self.running_mean
        state_dtype = x.dtype if state is None else state.dtype
        check_dtype(x.dtype, state_dtype, name)
        if not self.training:
            check_input_shape(x.shape, self.num_features, not self.track_running_stats, name)
            if not self.track_running_stats:
                return batch_norm_train(x, self.weight, self.bias, self.eps)[0]
            return batch_norm_eval(x, self.running_mean, self.running_var, self.weight, self.bias, self.eps)
        group = self._group()
        counts = self._gather_counts(x, group)
        out, mean, var = SyncBatchNormFunction.apply(x, self.weight, self.bias, self.eps, group, counts,
                                                     rounding_dtype(state_dtype))
        if self.track_running_stats:
            self.num_batches_tracked.add_(1)
            update_running_stats(self, running_mean=mean, running_var=unbiased_variance(var, sum(counts)))
        return out

    def _group(self):
        if not (dist.is_available() and dist.is_initialized()):
            raise RuntimeError(
                f"{type(self).__name__} in training mode exchanges batch statistics between processes, but "
                f"no process group is initialized: call torch.distributed.init_process_group (backend "
                f"'gloo' on CPUs, 'nccl' on GPUs) in every process first. Eval mode (model.eval()) needs no "
                f"process group, nor does bnlib.BatchNorm1d/2d.")
        return self.process_group or dist.group.WORLD

    def _gather_counts(self, x, group):
        """Every rank's values per channel, after checking that all ranks agree on the channels.

        Gathered before any statistics, so a mismatch is the same clear error on every rank rather than
        a collective of mismatched sizes; so is a whole batch with a single value per channel.
        """
        mine = torch.tensor([x.shape[1], x.shape[0] * math.prod(x.shape[2:])], device=x.device)  # C, m_r
        shapes = [torch.empty_like(mine) for _ in range(dist.get_world_size(group))]
        exchange(dist.all_gather, shapes, mine, group=group)
        channels, counts = zip(*(shape.tolist() for shape in shapes))
        ranks = dist.get_process_group_ranks(group)
        if len(set(channels)) > 1:
            raise ValueError(f"{type(self).__name__}: the ranks' inputs have different numbers of channels: "
                             + ", ".join(f"rank {r} has {c}" for r, c in zip(ranks, channels))
                             + ". Every rank must run the same model on inputs (N, C, ...) with the same C.")
        check_input_shape(x.shape, self.num_features, False, type(self).__name__)
        if sum(counts) <= 1:
            raise ValueError(f"{SINGLE_VALUE}, got {sum(counts)} across the shards of ranks {ranks} (values "
                             f"per channel {list(counts)}): the variance of a single value is 0. Train on a "
                             f"larger global batch, or switch to evaluation mode.")
        return counts


def convert_sync_batchnorm(module, process_group=None):
    """``module`` with every batch norm layer (bnlib's BatchNorm1d/2d, torch's BatchNorm1d/2d/3d and
    SyncBatchNorm) replaced by a ``SyncBatchNorm`` holding the very same parameters and buffers, in the
    same training mode, like ``torch.nn.SyncBatchNorm.convert_sync_batchnorm``. Convert before wrapping
    the model in ``DistributedDataParallel``."""
    if isinstance(module, (torch.nn.modules.batchnorm._BatchNorm, BatchNorm1d, BatchNorm2d)):
        sync = SyncBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                             module.track_running_stats, process_group, bias=module.bias is not None)
        for name in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
            setattr(sync, name, getattr(module, name))
        sync.training = module.training
        return sync
    for name, child in module.named_children():
        module.add_module(name, convert_sync_batchnorm(child, process_group))
    return module
