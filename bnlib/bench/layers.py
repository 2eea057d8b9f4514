"""Benchmarks of the core layers: bnlib's forward and backward time over torch's, measured in the same run."""

import statistics
import time

import torch

from bnlib.layers import BatchNorm1d, BatchNorm2d


def seconds_per_call(call, number):
    start = time.perf_counter()
    for _ in range(number):
        call()
    return (time.perf_counter() - start) / number


def median_ratio(first, second, repeats, number):
    """Time of ``first()`` over ``second()``: the two take turns, ``number`` calls each per repeat (after a
    warm-up of each: allocator, thread pool, caches), so that each repeat gives a ratio of two neighbouring
    measurements; the median of those ratios shrugs off moments when the machine is busy with something else."""
    for call in (first, second):
        seconds_per_call(call, number)
    return statistics.median(seconds_per_call(first, number) / seconds_per_call(second, number)
                             for _ in range(repeats))


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
