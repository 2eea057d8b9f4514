"""What DistributedDataParallel does to batch norm's running statistics, shown on numbers one can follow.

DDP keeps the weights of all ranks equal by averaging the gradients. Buffers, such as batch norm's running
mean and variance, get no gradient; instead DDP (``broadcast_buffers=True``, its default) copies rank 0's
buffers to every rank at the start of each forward pass. Each rank's batch norm then updates its copy with
its own batch, so after a step rank r holds

    running_r(t) = (1 - momentum) running_0(t - 1) + momentum mean_r(t),

one step of its own data on top of rank 0's history, while rank 0's is the running average of rank 0's
batches alone, and that is the copy a training script usually saves.
"""

from dataclasses import dataclass

import numpy as np

from bnlib.course.cache import Config, experiment
from bnlib.course.ch09 import ddp
from bnlib.course.parallel import run_on_ranks


@dataclass(frozen=True)
class BroadcastDemo(Config):
    """The demo's settings: one process per entry of ``means``, each fed batches of that mean, for ``steps``
    steps of a batch norm layer of running-average ``momentum``."""

    means: tuple = (2.0, 10.0)
    steps: int = 5
    momentum: float = 0.1


DEMO = BroadcastDemo()


@experiment("ch09_buffer_broadcast", BroadcastDemo)
def broadcast_run(config):
    """``ddp.buffer_broadcast`` on ``len(means)`` processes, rank r fed batches of mean ``means[r]`` (cached).

    Arrays (ranks, steps): ``at_start`` (the running mean as the forward starts, after the broadcast),
    ``after`` (after the step) and ``without_ddp`` (a twin layer fed the same batches on its own)."""
    ranks = run_on_ranks(ddp.buffer_broadcast, len(config.means), config.means, config.steps, config.momentum,
                         timeout=120)
    return {key: [rank[key] for rank in ranks] for key in ("at_start", "after", "without_ddp")}


def broadcast_prediction(means, steps, momentum=DEMO.momentum):
    """The formula's running means (ranks, steps) after each step, from 0: rank 0 averages its own batches,
    every other rank adds one step of its own batch to rank 0's running mean of the step before."""
    rank0 = means[0] * (1 - (1 - momentum) ** np.arange(steps + 1))  # running_0(t), t = 0 .. steps
    return np.array([(1 - momentum) * rank0[:-1] + momentum * mean for mean in means])
