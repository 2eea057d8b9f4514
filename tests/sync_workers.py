"""What each rank runs in tests/test_sync_batchnorm.py (spawned processes import their work by name).

Every function has the signature ``fn(rank, world_size, ...)`` of ``bnlib.course.parallel.run_on_ranks`` and returns
CPU tensors and strings for the test process to compare with single-process batch norm.
"""

import math
import time

import torch
import torch.distributed as dist
from torch import nn

from bnlib.bench.sync import paired_step_ratios
from bnlib.normalization import reduce_axes
from bnlib.sync import SyncBatchNorm, convert_sync_batchnorm


def shard(batch, sizes, rank):
    """Rank ``rank``'s rows of ``batch`` when the ranks hold ``sizes[0], sizes[1], ...`` rows in turn."""
    start = sum(sizes[:rank])
    return batch[start:start + sizes[rank]]


def naive_variance(x):
    """The merge SyncBatchNorm does NOT use: all-reduce the per-channel sums of x and x^2, then
    var = E[x^2] - E[x]^2, which cancels catastrophically when the mean dwarfs the spread."""
    dims = reduce_axes(x.dim())
    sums = torch.stack([x.sum(dims), x.square().sum(dims)])
    count = torch.tensor(float(x.shape[0] * math.prod(x.shape[2:])))
    dist.all_reduce(sums)
    dist.all_reduce(count)
    return sums[1] / count - (sums[0] / count).square()


def train_layers(rank, world_size, cases):
    """Each case: a SyncBatchNorm from ``case["state"]`` trained on this rank's shards of the batches
    ``case["inputs"]`` with upstream gradients ``case["upstreams"]``; per step the output, the input
    gradient and this rank's parameter gradients, and at the end the state (and the naive variance of the
    first batch when ``case["naive"]``)."""
    torch.set_num_threads(1)
    results = []
    for case in cases:
        layer = SyncBatchNorm(case["channels"], dtype=case["layer_dtype"], **case["options"])
        layer.load_state_dict(case["state"])
        steps = []
        for batch, upstream in zip(case["inputs"], case["upstreams"]):
            x = shard(batch, case["sizes"], rank).clone().requires_grad_()
            out = layer(x)
            out.backward(shard(upstream, case["sizes"], rank))
            steps.append({"out": out.detach(), "dx": x.grad,
                          "grads": {name: p.grad for name, p in layer.named_parameters()}})
            layer.zero_grad(set_to_none=True)
        result = {"steps": steps, "state": layer.state_dict()}
        if case.get("naive"):
            result["naive_var"] = naive_variance(shard(case["inputs"][0], case["sizes"], rank))
        results.append(result)
    return results


def error_messages(rank, world_size):
    """The errors of bad input, caught on this rank: channels that differ between ranks, and a whole
    batch of one value per channel. Both are raised on every rank, so the group stays usable after."""
    messages = {}
    channels = 3 + rank
    try:
        SyncBatchNorm(channels)(torch.randn(4, channels))
    except ValueError as error:
        messages["channels"] = str(error)
    try:
        SyncBatchNorm(3)(torch.randn(1 if rank == 0 else 0, 3))
    except ValueError as error:
        messages["single_value"] = str(error)
    messages["after"] = tuple(SyncBatchNorm(3)(torch.randn(2, 3)).shape)  # the group still works
    if rank == 0:  # eval mode on one rank alone: it would wait for the others if it communicated
        messages["eval"] = tuple(SyncBatchNorm(3).eval()(torch.randn(4, 3)).shape)
    dist.barrier()
    return messages


def in_pairs(rank, world_size, batches):
    """Ranks paired up (0 and 1, 2 and 3, ...), each pair a process group of its own: pair p normalizes
    ``batches[p]``, half on each rank. This rank's output."""
    groups = [dist.new_group([first, first + 1]) for first in range(0, world_size, 2)]  # every rank makes all
    layer = SyncBatchNorm(batches.shape[-1], dtype=batches.dtype, process_group=groups[rank // 2])
    return layer(batches[rank // 2].chunk(2)[rank % 2]).detach()


def small_model(dtype):
    """A conv net with torch's and bnlib's batch norm layers, deterministic weights."""
    from bnlib import BatchNorm2d

    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * 5 * 5, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 3)).to(dtype)


def sgd_steps(model, batches, labels, lr=0.1):
    """Plain SGD on the mean cross-entropy, one step per batch."""
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    for x, y in zip(batches, labels):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()


def ddp_training(rank, world_size, batches, labels):
    """``small_model`` converted to SyncBatchNorm, wrapped in DistributedDataParallel, trained by SGD
    on this rank's equal shard of every batch; the final state."""
    torch.set_num_threads(1)
    model = convert_sync_batchnorm(small_model(batches[0].dtype))
    sgd_steps(nn.parallel.DistributedDataParallel(model), [x.chunk(world_size)[rank] for x in batches],
              [y.chunk(world_size)[rank] for y in labels])
    return model.state_dict()


def fail_on_last_rank(rank, world_size, seconds):
    """The last rank fails after ``seconds`` without joining the collective the others wait in."""
    if rank == world_size - 1:
        time.sleep(seconds)
        raise RuntimeError(f"rank {rank} fails on purpose")
    return SyncBatchNorm(3)(torch.randn(4, 3))


def all_checks(rank, world_size, cases, pair_batches, ddp_data):
    """One spawned run for many tests: ``train_layers``, ``error_messages``, ``in_pairs``, ``ddp_training``
    on ``ddp_data[dtype] = (batches, labels)`` for each dtype, and two repeats of the overhead benchmark."""
    return {"layers": train_layers(rank, world_size, cases), "errors": error_messages(rank, world_size),
            "pairs": in_pairs(rank, world_size, pair_batches),
            "ddp": {dtype: ddp_training(rank, world_size, *data) for dtype, data in ddp_data.items()},
            "bench": paired_step_ratios(rank, world_size, repeats=2, number=1)}
