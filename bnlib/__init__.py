"""bnlib: batch normalization from scratch, the library behind the Batch Norm course.

The numpy implementation (``batch_norm_forward``, ``batch_norm_backward``) shows every step; the torch
layers (``BatchNorm1d``, ``BatchNorm2d``) are drop-in replacements for torch's, built on the same math;
``SyncBatchNorm`` normalizes a batch split across processes (``torch.distributed``) as if it were whole;
``BatchRenorm1d`` and ``BatchRenorm2d`` are Batch Renormalization (Ioffe 2017), batch norm corrected
towards its running statistics in training. ``bnlib.machinery`` holds what is not math: speed and
compatibility with torch.
"""

from .batch_renorm import BatchRenorm1d, BatchRenorm2d
from .functional import batch_norm_train
from .layers import BatchNorm1d, BatchNorm2d
from .normalization import batch_norm_backward, batch_norm_forward
from .running_stats import ema_update, keras_to_torch_momentum, population_statistics, replay_ema
from .sync import SyncBatchNorm, convert_sync_batchnorm

__all__ = [
    "BatchNorm1d", "BatchNorm2d", "batch_norm_train",
    "batch_norm_forward", "batch_norm_backward",
    "ema_update", "keras_to_torch_momentum", "population_statistics", "replay_ema",
    "SyncBatchNorm", "convert_sync_batchnorm",
    "BatchRenorm1d", "BatchRenorm2d",
]
