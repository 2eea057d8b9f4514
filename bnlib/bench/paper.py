"""Benchmarks of the MNIST reproduction, registered in ``bnlib.bench``.

- ``paper_full_seconds``: the whole experiment, measured (not extrapolated): both networks, 50,000 steps
  each, and the evaluation at 101 checkpoints on the 10,000 test images. Loading MNIST is not counted.
- ``paper_step_speedup_vs_naive``: the time per step of a plain loop (``nn.Sequential`` with
  ``torch.nn.BatchNorm1d``, autograd, ``torch.optim.SGD``), training the two networks one after the
  other, divided by ``fast_trainer``'s time per step for both at once. Measured in the same run, in
  alternation, on one thread each, real MNIST batches of 60.
"""

import statistics
import time

import torch
from torch import nn

from bnlib.course.ch06.fast_trainer import batch_order, train_two_networks
from bnlib.course.ch06.paper import PAPER, compute_paper_experiment, paper_config
from bnlib.course.models import paper_mlp
from bnlib.course.training import small_model_settings
from bnlib.layers import BatchNorm1d


def naive_seconds_per_step(images, labels, steps, seed=0):
    """Both networks, one after the other, by the textbook loop; seconds per step (for both)."""
    order = batch_order(len(images), steps, PAPER["batch_size"], seed).view(steps, -1)
    start = time.perf_counter()
    for batch_norm in (False, True):
        model = paper_mlp(batch_norm=batch_norm, init_std=PAPER["init_std"])
        if batch_norm:
            model = nn.Sequential(*[nn.BatchNorm1d(m.num_features) if isinstance(m, BatchNorm1d) else m
                                    for m in model])  # torch's own layer: the textbook loop
        optimizer = torch.optim.SGD(model.parameters(), lr=PAPER["lr"])
        for batch in order:
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(images[batch]), labels[batch]).backward()
            optimizer.step()
    return (time.perf_counter() - start) / steps


def fast_seconds_per_step(images, labels, steps, seed=0):
    start = time.perf_counter()
    train_two_networks(images, labels, steps, PAPER["batch_size"], PAPER["lr"], PAPER["init_std"], seed, 1,
                       progress=False)
    return (time.perf_counter() - start) / steps


def paper_step_speedup_vs_naive(steps=1_000, repeats=3):
    """Per-step time of a plain nn.Sequential + torch.optim loop over fast_trainer's, both networks, batch 60"""
    from bnlib.course.data import load_mnist

    images, labels = load_mnist(train=True)
    naive, fast = [], []
    with small_model_settings():
        naive_seconds_per_step(images, labels, 100)  # warm up
        fast_seconds_per_step(images, labels, 100)
        for _ in range(repeats):
            naive.append(naive_seconds_per_step(images, labels, steps))
            fast.append(fast_seconds_per_step(images, labels, steps))
    return statistics.median(naive) / statistics.median(fast)


def paper_full_seconds():
    """Seconds for the full experiment: both networks, 50,000 steps, evaluation at every checkpoint"""
    return float(compute_paper_experiment(paper_config(), progress=False)["seconds"])
