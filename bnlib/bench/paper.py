"""Benchmarks of the MNIST reproduction (notebook 06), registered in ``bnlib.bench``.

- ``paper_full_seconds``: the whole experiment, measured (not extrapolated): both networks, 50,000 steps
  each, in two processes, and the evaluation at 101 checkpoints on the 10,000 test images.
- ``paper_parallel_speedup``: the same experiment in one process (the two networks one after the other)
  over two processes (one each), wall time, measured in the same run; on 2 cores the goal is 1.6 or more.
- ``paper_step_speedup_vs_naive``: the time per step of a plain loop (``nn.Sequential`` with
  ``torch.nn.BatchNorm1d``, autograd, ``torch.optim.SGD``) over ``fast_trainer``'s, both networks one after
  the other on one thread, real MNIST batches of 60, measured in alternation in the same run.
"""

import statistics
import time
from functools import lru_cache

import torch
from torch import nn

from bnlib.course.ch06.fast_trainer import batch_order, train_network
from bnlib.course.ch06.paper import PAPER, run_paper_experiment
from bnlib.course.data import load_mnist
from bnlib.course.models import paper_mlp
from bnlib.course.training import small_model_settings
from bnlib.layers import BatchNorm1d


def naive_seconds_per_step(images, labels, steps, seed=0):
    """Both networks, one after the other, by the textbook loop; seconds per step (for both)."""
    order = batch_order(len(images), steps, PAPER.batch_size, seed).view(steps, -1)
    start = time.perf_counter()
    for batch_norm in (False, True):
        model = paper_mlp(batch_norm=batch_norm, init_std=PAPER.init_std)
        if batch_norm:
            model = nn.Sequential(*[nn.BatchNorm1d(m.num_features) if isinstance(m, BatchNorm1d) else m
                                    for m in model])  # torch's own layer: the textbook loop
        optimizer = torch.optim.SGD(model.parameters(), lr=PAPER.lr)
        for batch in order:
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(images[batch]), labels[batch]).backward()
            optimizer.step()
    return (time.perf_counter() - start) / steps


def fast_seconds_per_step(images, labels, steps, seed=0):
    start = time.perf_counter()
    for batch_norm in (False, True):
        train_network(images, labels, batch_norm, steps, PAPER.batch_size, PAPER.lr, PAPER.init_std, seed, 1)
    return (time.perf_counter() - start) / steps


def paper_step_speedup_vs_naive(steps=1_000, repeats=3):
    """Per-step time of a plain nn.Sequential + torch.optim loop over fast_trainer's, both networks, batch 60"""
    images, labels = load_mnist(train=True)
    naive, fast = [], []
    with small_model_settings():
        naive_seconds_per_step(images, labels, 100)  # warm up
        fast_seconds_per_step(images, labels, 100)
        for _ in range(repeats):
            naive.append(naive_seconds_per_step(images, labels, steps))
            fast.append(fast_seconds_per_step(images, labels, steps))
    return statistics.median(naive) / statistics.median(fast)


@lru_cache(maxsize=None)
def full_run_seconds(workers):
    """Wall time of the whole experiment (no cache) with the networks in ``workers`` processes."""
    start = time.perf_counter()
    run_paper_experiment.compute(PAPER, progress=False, workers=workers)
    return time.perf_counter() - start


def paper_full_seconds():
    """Seconds for the full experiment: both networks in two processes, 50,000 steps, 101 evaluations"""
    return full_run_seconds(2)


def paper_parallel_speedup():
    """Wall time of the full experiment in one process over two processes (one network each)"""
    return full_run_seconds(1) / full_run_seconds(2)
