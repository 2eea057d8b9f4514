"""Ghost batch norm: statistics over sub-batches smaller than the batch the gradient averages over.

Hoffer, Hubara & Soudry (2017, "Train longer, generalize better") normalize each "ghost batch" of a
large batch with its own statistics, to bring back the noise of small-batch statistics while the gradient
still averages over the large batch; their code runs the model on each ghost batch in turn, so the running
statistics take one step per ghost batch. ``GhostBatchNorm`` computes the same with one call of bnlib's
functional batch norm, the ghost batches side by side as separate channels, then steps the running
statistics once per ghost batch, in order.

Data-parallel training with plain batch norm is the same computation by accident: each device normalizes
its shard with the shard's statistics, and the gradient is averaged over all shards. The one difference
is the running statistics: DDP broadcasts rank 0's buffers, so the model keeps the running statistics of
the first shard alone (``running_from="first"``).

``ghost_experiment`` measures what ghost batches do on their own: one process, a large batch, the same
gradient steps, only the ghost size changing.
"""

from dataclasses import dataclass

import numpy as np
import torch
from matplotlib.figure import Figure
from tqdm.auto import tqdm

from bnlib.course.cache import Config, experiment
from bnlib.course.models import paper_mlp
from bnlib.course.training import evaluate, mnist, random_batches, train_mlp
from bnlib.functional import batch_norm_train
from bnlib.layers import BatchNorm1d


class GhostBatchNorm(BatchNorm1d):
    """Batch norm that, in training, normalizes each run of ``ghost_size`` consecutive examples with its own
    statistics; eval mode is BatchNorm1d's. The running statistics take one step per ghost batch, in order
    (``running_from="all"``), or follow the first ghost batch only (``"first"``: DDP's broadcast buffers)."""

    def __init__(self, num_features, ghost_size, running_from="all", **options):
        super().__init__(num_features, **options)
        if isinstance(ghost_size, bool) or not isinstance(ghost_size, int) or ghost_size < 2:
            raise ValueError(f"ghost_size must be an int of at least 2 (batch norm needs two values per "
                             f"channel); got {ghost_size!r}")
        if running_from not in ("all", "first"):
            raise ValueError(f"running_from must be 'all' (a step per ghost batch) or 'first' (the first "
                             f"ghost batch only, as DDP keeps rank 0's); got {running_from!r}")
        self.ghost_size, self.running_from = ghost_size, running_from

    def forward(self, x):
        if not self.training:
            return super().forward(x)
        if len(x) % self.ghost_size:
            raise ValueError(f"GhostBatchNorm: a batch of {len(x)} does not split into ghost batches of "
                             f"{self.ghost_size}; use a batch size that is a multiple of ghost_size")
        k, g = len(x) // self.ghost_size, self.ghost_size
        # The k ghost batches side by side, as k * C channels of one batch of g: (k g, C, ...) -> (g, k C, ...).
        # Batch norm keeps channels apart, so one call gives each ghost batch its own mu and sigma^2.
        side_by_side = x.unflatten(0, (k, g)).transpose(0, 1).flatten(1, 2)
        weight, bias = (None if p is None else p.repeat(k) for p in (self.weight, self.bias))  # gamma, beta k times
        out, mean, var = batch_norm_train(side_by_side, weight, bias, self.eps)
        if self.track_running_stats:
            m = side_by_side.numel() // side_by_side.shape[1]                # values per channel of a ghost batch
            steps = k if self.running_from == "all" else 1                     # every ghost batch, or the first
            for mu, sigma2 in zip(mean.view(k, -1)[:steps], var.view(k, -1)[:steps]):  # one step each, in order
                self.num_batches_tracked.add_(1)
                self.update_running_stats(mu, sigma2, m)
        return out.unflatten(1, (k, -1)).transpose(0, 1).flatten(0, 1)      # back to (k g, C, ...)

    def extra_repr(self):
        return f"{super().extra_repr()}, ghost_size={self.ghost_size}, running_from={self.running_from!r}"


def with_ghost_batches(model, ghost_size, running_from="all"):
    """``model`` with each ``BatchNorm1d`` replaced by a ``GhostBatchNorm`` holding the same parameters and buffers."""
    for name, child in model.named_children():
        if type(child) is BatchNorm1d:
            ghost = GhostBatchNorm(child.num_features, ghost_size, running_from, eps=child.eps,
                                   momentum=child.momentum, dtype=child.weight.dtype)
            ghost.load_state_dict(child.state_dict())
            setattr(model, name, ghost)
        else:
            with_ghost_batches(child, ghost_size, running_from)
    return model


@dataclass(frozen=True)
class GhostRun(Config):
    """The ghost-batch experiment's settings: the first ``examples`` training images, gradient batches of
    ``batch_size``, statistics over ghost batches of each of ``ghost_sizes``, once per seed of ``seeds``."""

    examples: int = 2000
    batch_size: int = 400
    steps: int = 300
    lr: float = 2.0
    ghost_sizes: tuple = (400, 100, 25, 10)
    seeds: tuple = (0, 1)

    def __post_init__(self):
        for ghost in self.ghost_sizes:
            if ghost < 2 or self.batch_size % ghost:
                raise ValueError(f"each ghost size must be at least 2 and divide batch_size ({self.batch_size}), "
                                 f"so that every batch splits into ghost batches; got {ghost}")


GHOST_CONFIG = GhostRun()


@experiment("ch09_ghost_batch_norm", GhostRun)
def ghost_experiment(config):
    """The paper MLP trained on the first ``examples`` training images in batches of ``batch_size``, with
    ghost batches of each size (as large as the batch: plain batch norm); per seed, the same initial weights
    and batches for every ghost size. Arrays (seeds, ghost sizes): training loss and accuracy (eval mode, on
    those images), test loss and accuracy (cached)."""
    images, labels = mnist(train=True)
    images, labels = images[:config.examples], labels[:config.examples]
    test_images, test_labels = mnist(train=False)
    rows = []
    total = len(config.seeds) * len(config.ghost_sizes) * config.steps
    with tqdm(total=total, desc="ghost batch sizes") as bar:
        for seed in config.seeds:
            batches = random_batches(len(labels), config.batch_size, config.steps, seed)
            for ghost in config.ghost_sizes:
                torch.manual_seed(seed)
                model = with_ghost_batches(paper_mlp(batch_norm=True), ghost)
                train_mlp(model, images, labels, batches, config.lr, progress=bar)
                rows.append([*evaluate(model, images, labels), *evaluate(model, test_images, test_labels)])
    rows = np.array(rows).reshape(len(config.seeds), len(config.ghost_sizes), 4)
    return {"ghost_sizes": config.ghost_sizes, "seeds": config.seeds, "train_loss": rows[..., 0],
            "train_accuracy": rows[..., 1], "test_loss": rows[..., 2], "test_accuracy": rows[..., 3]}


def ghost_figure():
    """Training loss and test accuracy against the ghost batch size, one gradient batch size, per seed."""
    result, config = ghost_experiment(), GHOST_CONFIG
    sizes = result["ghost_sizes"]
    figure = Figure(figsize=(8.4, 4))
    left, right = figure.subplots(1, 2)
    for index, seed in enumerate(result["seeds"]):
        left.plot(sizes, result["train_loss"][index], "o-", color=f"C{index}", label=f"seed {seed}")
        right.plot(sizes, 100 * result["test_accuracy"][index], "o-", color=f"C{index}", label=f"seed {seed}")
    left.set(ylabel="training loss (eval mode)", title="Fit to the training images")
    right.set(ylabel="test accuracy (%)", title="Test images")
    for ax in (left, right):
        ax.set_xscale("log")
        ax.set_xticks(sizes, [str(g) for g in sizes])
        ax.minorticks_off()
        ax.set_xlabel("ghost batch size (statistics)")
        ax.legend()
    figure.suptitle(f"gradient over batches of {config.batch_size}, {config.steps} steps on "
                    f"{config.examples:,} training images")
    figure.tight_layout()
    return figure, {key: result[key] for key in ("ghost_sizes", "seeds", "train_loss", "train_accuracy", "test_loss",
                                                 "test_accuracy")}


FIGURES = {"ch09_ghost_batch_norm": ghost_figure}
