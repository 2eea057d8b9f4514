"""What synchronized batch norm costs: bytes per layer and step, counted in a run, and a model for many devices.

Per batch-norm layer of C channels and training step, each rank hands to the collectives (``bnlib.sync``):

- forward, ``all_gather`` of (C, m_r): 2 int64, 16 bytes; every rank receives k of them;
- forward, ``all_gather`` of (mean, M2): 2C float64, 16C bytes; every rank receives k of them;
- backward, ``all_reduce`` of (sum dy, sum dy x_hat): 2C numbers in the input's dtype, 8C bytes in float32.

``counted_exchanges`` counts them in a real DDP step. For many devices, what matters is less the bytes than
the number of messages: the alpha-beta model charges alpha seconds per message (latency) and beta seconds
per byte (1 / bandwidth). A ring passes data around all p devices, p - 1 messages in a row; a tree (or
recursive doubling) needs about log2(p) rounds. The formulas are the model's, not measurements:

    all-gather of b bytes per rank:  ring (p - 1)(alpha + b beta);   tree log2(p) alpha + (p - 1) b beta
    all-reduce of n bytes:           ring 2 (p - 1)(alpha + n/p beta);  tree 2 log2(p) (alpha + n beta)
"""

import math
from dataclasses import dataclass

import numpy as np

from bnlib.course.cache import Config, experiment
from bnlib.course.ch09 import ddp
from bnlib.course.ch09.shards import check_split
from bnlib.course.parallel import run_on_ranks


@dataclass(frozen=True)
class CountRun(Config):
    """The counted step's settings: a global batch of ``batch_size`` random inputs split between ``world_size``
    processes."""

    world_size: int = 2
    batch_size: int = 60

    def __post_init__(self):
        if self.world_size < 2:
            raise ValueError(f"world_size must be at least 2: on one process there is nothing to exchange; "
                             f"got {self.world_size}")
        check_split(self.world_size, 0.0, self.batch_size)


COUNT_CONFIG = CountRun()
ALPHA, BETA = 5e-6, 1e-10  # assumed: 5 microseconds per message, 10 GB/s per link


def bytes_per_layer(channels, world_size, gradient_bytes=4):
    """``{exchange: (bytes a rank sends, bytes it receives)}`` for one layer of ``channels`` and one step."""
    return {"forward: counts (all_gather)": (16, 16 * world_size),
            "forward: mean, M2 (all_gather)": (16 * channels, 16 * channels * world_size),
            "backward: two sums (all_reduce)": (2 * channels * gradient_bytes, 2 * channels * gradient_bytes)}


@experiment("ch09_counted_exchanges", CountRun)
def counted_exchanges(config):
    """Rank 0's exchanges in one DDP step of the paper's network with SyncBatchNorm, in order (cached)."""
    record = run_on_ranks(ddp.count_exchanges, config.world_size, config.batch_size, timeout=120)[0]
    phases, collectives, sent, received = zip(*record)
    return {"phase": phases, "collective": collectives, "sent": sent, "received": received}


def all_gather_seconds(p, per_rank_bytes, algorithm, alpha=ALPHA, beta=BETA):
    """The alpha-beta model's time for an all-gather of ``per_rank_bytes`` from each of ``p`` devices."""
    if algorithm == "ring":
        return (p - 1) * (alpha + per_rank_bytes * beta)
    return math.ceil(math.log2(p)) * alpha + (p - 1) * per_rank_bytes * beta


def all_reduce_seconds(p, size_bytes, algorithm, alpha=ALPHA, beta=BETA):
    """The alpha-beta model's time for an all-reduce of ``size_bytes`` over ``p`` devices."""
    if algorithm == "ring":
        return 2 * (p - 1) * (alpha + size_bytes / p * beta)
    return 2 * math.ceil(math.log2(p)) * (alpha + size_bytes * beta)


def sync_seconds_per_layer(p, channels, algorithm, alpha=ALPHA, beta=BETA, gradient_bytes=4):
    """Modelled time of one layer's three exchanges in one training step (the bytes of ``bytes_per_layer``)."""
    return (all_gather_seconds(p, 16, algorithm, alpha, beta)
            + all_gather_seconds(p, 16 * channels, algorithm, alpha, beta)
            + all_reduce_seconds(p, 2 * channels * gradient_bytes, algorithm, alpha, beta))


def model_table(world_sizes=(2, 8, 64, 1000), channels=100, alpha=ALPHA, beta=BETA):
    """Modelled seconds per layer and step, ring and tree, and the share of them spent on latency."""
    rows = []
    for p in world_sizes:
        ring, tree = (sync_seconds_per_layer(p, channels, a, alpha, beta) for a in ("ring", "tree"))
        ring_latency = sync_seconds_per_layer(p, channels, "ring", alpha, 0.0)
        rows.append({"devices": p, "ring": ring, "tree": tree, "ring_latency_share": ring_latency / ring,
                     "received_bytes": 16 * p + 16 * channels * p + 2 * channels * 4})
    return rows


def counted_per_layer(counted):
    """The counted exchanges grouped per layer: ``(layers, 3, 2)`` of (sent, received), in the order of
    ``bytes_per_layer`` (the backward visits the layers last to first)."""
    forward = np.flatnonzero(counted["phase"] == "forward")
    backward = np.flatnonzero(counted["phase"] == "backward")[::-1]
    table = [[(counted["sent"][i], counted["received"][i]) for i in (forward[2 * layer], forward[2 * layer + 1], b)]
             for layer, b in enumerate(backward)]
    return np.array(table)
