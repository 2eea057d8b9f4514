"""How a global batch is split between devices: evenly at random (iid), or by class (non-iid).

Every experiment of chapter 9 trains on the same global batches: ``batch_size`` training images drawn
uniformly at random at each step. Only their split between the ``world_size`` devices changes, so the
whole-batch statistics (what synchronized batch norm and one process see) are the same for every split,
and any difference between the runs comes from the statistics each device computes on its own shard.

The split is controlled by ``skew`` in [0, 1]. Each example of the batch gets a sort key: its label
(with probability ``skew``) or a uniform random number in [0, 10) (otherwise). The batch, sorted by the
keys, is cut into ``world_size`` consecutive shards of ``batch_size / world_size`` examples. At skew 0
the shards are random (iid); at skew 1 the batch is sorted by label, so each device sees only a few
neighbouring classes (with 10 devices and 60 examples, mostly a single class); in between, a fraction
``skew`` of each batch is sorted and the rest scattered at random among the devices.
"""

import torch

CLASSES = 10


def device_order(labels, skew, generator):
    """A permutation of the batch positions 0..len(labels)-1: sorted by label with probability ``skew`` each."""
    sorted_by_label = torch.rand(len(labels), generator=generator, dtype=torch.float64) < skew
    scattered = CLASSES * torch.rand(len(labels), generator=generator, dtype=torch.float64)
    keys = torch.where(sorted_by_label, labels.to(torch.float64) + 0.5, scattered)
    return torch.argsort(keys, stable=True)


def check_split(world_size, skew, batch_size):
    """Refuse, with the reason, a split that ``sharded_batches`` cannot make."""
    if world_size < 1 or batch_size % world_size:
        raise ValueError(f"the global batch of {batch_size} must split evenly between the devices; got "
                         f"world_size {world_size}: use a divisor of {batch_size}")
    if not 0 <= skew <= 1:
        raise ValueError(f"skew is the fraction of each batch sorted by class, in [0, 1] (0: iid shards, "
                         f"1: each device sees a few classes); got {skew}")
    if batch_size // world_size < 2:
        raise ValueError(f"each device needs at least 2 examples for batch norm; {batch_size} split "
                         f"{world_size} ways leaves {batch_size // world_size}")


def sharded_batches(labels, world_size, skew, batch_size, steps, seed=0):
    """Indices into ``labels`` of every device's shard at every step, shape (steps, world_size, batch_size / world_size).

    Row ``[t, r]`` is device r's shard of step t; the rows of a step, concatenated in rank order, are the
    global batch in the order that ``device_order`` gives it. Every process computes the same tensor.
    """
    check_split(world_size, skew, batch_size)
    generator = torch.Generator().manual_seed(seed)
    shards = torch.empty(steps, batch_size, dtype=torch.int64)
    for step in range(steps):
        batch = torch.randint(len(labels), (batch_size,), generator=generator)
        shards[step] = batch[device_order(labels[batch], skew, generator)]
    return shards.view(steps, world_size, batch_size // world_size)


def classes_per_device(labels, shards):
    """The mean number of distinct classes in one device's shard, over steps and devices."""
    counts = [len(torch.unique(labels[shard])) for step in shards for shard in step]
    return sum(counts) / len(counts)
