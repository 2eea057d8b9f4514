"""Benchmarks of the core layers: bnlib's forward and backward time over torch's, measured in the same run."""

import torch

from bnlib.course.timing import median_ratio
from bnlib.layers import BatchNorm1d, BatchNorm2d


def fwd_bwd_ratio(ours_cls, torch_cls, shape, repeats, number, seed=0):
    """bnlib's forward+backward time over torch's, training mode, float32 on the CPU, same inputs
    (``median_ratio`` of the two)."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=generator).requires_grad_()
    upstream = torch.randn(shape, generator=generator)
    layers = {"ours": ours_cls(shape[1]), "torch": torch_cls(shape[1])}
    steps = {name: (lambda layer=layer: torch.autograd.backward(layer(x), upstream))
             for name, layer in layers.items()}
    return median_ratio(steps["ours"], steps["torch"], repeats, number)


def bn_fwd_bwd_ratio_2d():
    """BatchNorm2d forward+backward time, bnlib / torch, float32 (64, 64, 28, 28)"""
    return fwd_bwd_ratio(BatchNorm2d, torch.nn.BatchNorm2d, (64, 64, 28, 28), repeats=31, number=1)


def bn_fwd_bwd_ratio_1d():
    """BatchNorm1d forward+backward time, bnlib / torch, float32 (256, 100)"""
    return fwd_bwd_ratio(BatchNorm1d, torch.nn.BatchNorm1d, (256, 100), repeats=201, number=10)
