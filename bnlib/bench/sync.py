"""Benchmark of synchronized batch norm, registered in ``bnlib.bench``.

``syncbn_overhead_2proc``: the time of a DistributedDataParallel training step of the paper's MLP
(784-100-100-100-10, three batch norm layers, 60 random examples per process) with ``bnlib.SyncBatchNorm``
over the same step with per-process ``bnlib.BatchNorm1d``: two gloo processes on the CPU, one thread
each, float32. The two models take turns in the same run, so each repeat gives a ratio of two
neighbouring measurements; the median of those ratios shrugs off moments when the machine is busy.
What it measures is the cost of the exchanges: per layer and step, two all_gathers in the forward pass
and one all_reduce in the backward pass, each a few hundred bytes.
"""

import statistics
import time

import torch
from torch import nn

from bnlib.course.models import paper_mlp
from bnlib.course.parallel import run_on_ranks
from bnlib.course.training import small_model_settings
from bnlib.sync import convert_sync_batchnorm


def ddp_training_step(model, images, labels):
    """One SGD step of ``model`` wrapped in DistributedDataParallel, as a function of no arguments."""
    model = nn.parallel.DistributedDataParallel(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)

    def step():
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(images), labels).backward()
        optimizer.step()
    return step


def seconds(step, number):
    start = time.perf_counter()
    for _ in range(number):
        step()
    return time.perf_counter() - start


def paired_step_ratios(rank, world_size, repeats, number, batch_size=60):
    """On each rank: per repeat, ``number`` steps with SyncBatchNorm over ``number`` with local batch norm."""
    generator = torch.Generator().manual_seed(rank)
    images, labels = torch.randn(batch_size, 784, generator=generator), torch.randint(10, (batch_size,),
                                                                                      generator=generator)
    with small_model_settings():
        sync = ddp_training_step(convert_sync_batchnorm(paper_mlp(batch_norm=True)), images, labels)
        local = ddp_training_step(paper_mlp(batch_norm=True), images, labels)
        seconds(sync, number), seconds(local, number)  # warm up: allocator, DDP's buckets, the connections
        return [seconds(sync, number) / seconds(local, number) for _ in range(repeats)]


def syncbn_overhead_2proc(repeats=31, number=20):
    """DDP step time with SyncBatchNorm / with per-process BatchNorm1d, paper MLP, 2 gloo processes"""
    ratios = run_on_ranks(paired_step_ratios, 2, repeats, number, timeout=300)[0]
    return statistics.median(ratios)
