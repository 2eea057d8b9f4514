"""What each process (rank) runs in chapter 9's data-parallel experiments, and a command-line entry point.

The functions with the signature ``fn(rank, world_size, ...)`` run inside the processes that
``bnlib.course.parallel.run_on_ranks`` starts (they import this module by name, so they live here, not in
the notebook). The same training runs from the command line, one process per rank started by torchrun::

    torchrun --standalone --nproc-per-node 2 -m bnlib.course.ch09.ddp --mode sync --skew 1

Modes: ``per-device`` wraps the paper's network with plain ``bnlib.BatchNorm1d`` in
``DistributedDataParallel`` (each rank normalizes its shard with the shard's statistics; DDP broadcasts
rank 0's buffers before every forward); ``sync`` converts it to ``bnlib.SyncBatchNorm`` first.
"""

import argparse
import copy
import time

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from bnlib.course.ch09.evaluation import RUN, initial_model, measure, training_data
from bnlib.course.ch09.shards import sharded_batches
from bnlib.course.models import paper_mlp
from bnlib.course.parallel import report_progress
from bnlib.course.training import small_model_settings, train_mlp
from bnlib.layers import BatchNorm1d
from bnlib.sync import convert_sync_batchnorm

MODES = ("per-device", "sync")


class StepClock:
    """What ``train_mlp`` calls once per step (as a progress bar): notes the time, and on rank 0 reports the
    step to the parent's progress bar. ``seconds()``: the median time of a step (the first few, which set up
    DDP's buffers and connections, and moments when the machine is busy, do not move it)."""

    def __init__(self, report):
        self.report, self.times = report, [time.perf_counter()]

    def update(self, n):
        self.times.append(time.perf_counter())
        if self.report:
            report_progress(n)

    def seconds(self):
        return float(np.median(np.diff(self.times)))


def train_rank(rank, world_size, mode, skew, config=RUN):
    """Train the paper's network under DDP on this rank's shards; ``(state_dict, median seconds per step)``."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}; got {mode!r}")
    images, labels = training_data()
    shards = sharded_batches(labels, world_size, skew, config.batch_size, config.steps, config.seed)
    model = initial_model(config.seed)
    if mode == "sync":
        model = convert_sync_batchnorm(model)
    clock = StepClock(report=rank == 0)
    train_mlp(DistributedDataParallel(model), images, labels, [[shard] for shard in shards[:, rank]], config.lr,
              progress=clock)
    return model.state_dict(), clock.seconds()


def train_runs(rank, world_size, runs, config=RUN):
    """``train_rank`` for each ``(mode, skew)`` of ``runs``, in turn."""
    return [train_rank(rank, world_size, mode, skew, config) for mode, skew in runs]


def buffer_broadcast(rank, world_size, means, steps, momentum=0.1):
    """A ``BatchNorm1d(1)`` under DDP on every rank, each fed batches of mean ``means[rank]``.

    Per step: the running mean when the layer's forward starts (after DDP's broadcast of rank 0's
    buffers), after it, and that of a twin layer fed the same batches without DDP.
    """
    layer = BatchNorm1d(1, momentum=momentum, dtype=torch.float64)
    alone = copy.deepcopy(layer)
    at_start = []
    layer.register_forward_pre_hook(lambda module, args: at_start.append(module.running_mean.item()))
    model = DistributedDataParallel(layer)
    batch = means[rank] + torch.tensor([[-1.5], [-0.5], [0.5], [1.5]], dtype=torch.float64)  # mean: means[rank]
    after, without_ddp = [], []
    for _ in range(steps):
        model(batch).square().sum().backward()
        after.append(layer.running_mean.item())
        alone(batch)
        without_ddp.append(alone.running_mean.item())
    return {"at_start": at_start, "after": after, "without_ddp": without_ddp}


def count_exchanges(rank, world_size, batch_size, dtype=torch.float32):
    """One DDP training step of the paper's network with ``SyncBatchNorm``, every ``all_gather`` and
    ``all_reduce`` the batch norm layers make counted: ``(phase, collective, bytes sent, bytes received)``.

    The collectives are wrapped where ``bnlib.sync`` calls them (``torch.distributed.all_gather`` and
    ``all_reduce``); DDP's own gradient all-reduce runs inside torch and is not counted.
    """
    record, phase = [], ["forward"]
    originals = {"all_gather": dist.all_gather, "all_reduce": dist.all_reduce}

    def size(tensor):
        return tensor.numel() * tensor.element_size()

    def all_gather(outputs, tensor, **options):
        record.append((phase[0], "all_gather", size(tensor), sum(size(out) for out in outputs)))
        return originals["all_gather"](outputs, tensor, **options)

    def all_reduce(tensor, **options):
        record.append((phase[0], "all_reduce", size(tensor), size(tensor)))
        return originals["all_reduce"](tensor, **options)

    torch.manual_seed(rank)
    images, labels = torch.randn(batch_size // world_size, 784, dtype=dtype), torch.randint(10, (batch_size // world_size,))
    model = DistributedDataParallel(convert_sync_batchnorm(paper_mlp(batch_norm=True).to(dtype)))
    dist.all_gather, dist.all_reduce = all_gather, all_reduce
    try:
        with small_model_settings():
            loss = torch.nn.functional.cross_entropy(model(images), labels)
            phase[0] = "backward"
            loss.backward()
    finally:
        dist.all_gather, dist.all_reduce = originals["all_gather"], originals["all_reduce"]
    return record


def main(argv=None):
    """Under torchrun: train one run on every rank; rank 0 measures the model and prints the result."""
    parser = argparse.ArgumentParser(prog="torchrun --standalone --nproc-per-node 2 -m bnlib.course.ch09.ddp",
                                     description="The paper's MNIST network trained with DDP on CPUs (gloo).")
    parser.add_argument("--mode", choices=MODES, default="sync", help="batch norm per device, or synchronized")
    parser.add_argument("--skew", type=float, default=1.0, help="0: iid shards; 1: each device sees a few classes")
    parser.add_argument("--steps", type=int, default=RUN.steps, help="training steps")
    args = parser.parse_args(argv)
    dist.init_process_group("gloo")  # rank, world size and address from the environment torchrun sets
    try:
        rank, world_size = dist.get_rank(), dist.get_world_size()
        state, seconds = train_rank(rank, world_size, args.mode, args.skew, RUN.replace(steps=args.steps))
    finally:
        dist.destroy_process_group()
    if rank == 0:
        model = initial_model()
        model.load_state_dict(state)
        result = measure(model)
        print(f"{args.mode} batch norm, {world_size} processes, skew {args.skew}, {args.steps} steps "
              f"({1000 * seconds:.1f} ms each): test accuracy {100 * result['accuracy']:.2f}% with the running "
              f"statistics, {100 * result['population_accuracy']:.2f}% with population statistics; normalization "
              f"error {result['error'].mean():.4f}")


if __name__ == "__main__":
    main()
