"""The one small training loop behind chapter 7's experiments, and the network it trains.

Every experiment of the chapter is "train this MLP on these mini-batches with plain SGD, then measure":
only the normalization layer and the way batches are drawn change. So the batches are an argument:
a list with one entry per step, each entry a list of index tensors. Usually an entry holds a single
index tensor (one forward pass); the GAN discriminator case puts two there (all-real, then all-fake),
which become two forward passes, each normalized with its own batch statistics, and one update on
the mean of their losses.

The network is the paper's MLP (``bnlib.course.models.paper_mlp``: 784-100-100-100-10) with ReLU units and
weights drawn from N(0, 0.05^2) (0.05 is about He's sqrt(2 / 784) for the first layer). ReLU rather than
sigmoid because the chapter compares batch norm with LayerNorm and GroupNorm, and with sigmoid units
those train poorly in short runs, which would muddle the comparison.
"""

import contextlib
import copy
from functools import lru_cache

import numpy as np
import torch
from torch import nn

from bnlib.course.data import load_mnist
from bnlib.course.models import paper_mlp
from bnlib.layers import BatchNorm1d

INIT_STD = 0.05
GROUPS = 10  # GroupNorm: 100 units in 10 groups of 10

NORMS = {
    "none": None,
    "batch": BatchNorm1d,                            # statistics over the batch, per unit
    "layer": nn.LayerNorm,                           # over the units, per example
    "group": lambda units: nn.GroupNorm(GROUPS, units),  # over each group of units, per example
}


def chapter_mlp(norm="batch", init_std=INIT_STD, seed=0, **kwargs):
    """``paper_mlp`` with ReLU units and the hidden-layer normalization ``norm``.

    ``norm`` is a key of ``NORMS`` or a callable ``units -> module`` (e.g. a noisy batch norm);
    the weights are drawn from the torch generator seeded with ``seed``.
    """
    make_norm = NORMS[norm] if isinstance(norm, str) and norm in NORMS else norm
    if not callable(make_norm) and make_norm is not None:
        raise ValueError(f"norm must be one of {sorted(NORMS)} or a callable units -> module, got {norm!r}")
    torch.manual_seed(seed)
    model = paper_mlp(batch_norm=make_norm is not None, init_std=init_std, **kwargs)
    layers = []
    for layer in model:
        if isinstance(layer, nn.Sigmoid):
            layer = nn.ReLU()
        elif isinstance(layer, BatchNorm1d):
            layer = make_norm(layer.num_features)
        layers.append(layer)
    return nn.Sequential(*layers)


@lru_cache(maxsize=2)
def mnist(train):
    """MNIST (images (N, 784) in [0, 1], labels), loaded once per process."""
    return load_mnist(train=train, flatten=True)


def random_batches(n, batch_size, steps, seed=0):
    """``steps`` batches of ``batch_size`` indices drawn uniformly from range(n), with replacement."""
    if batch_size < 2:
        raise ValueError(f"batch_size must be at least 2 (batch norm needs two values per unit), got {batch_size}")
    generator = torch.Generator().manual_seed(seed)
    return [[torch.randint(n, (batch_size,), generator=generator)] for _ in range(steps)]


@contextlib.contextmanager
def small_model_settings():
    """Run torch on one thread with subnormal floats flushed to zero; restore both afterwards.

    Small matrices: a second thread costs more in hand-offs than it saves, and much more when other
    programs share the cores. Subnormal floats (below about 1e-38, e.g. tiny gradients of an untrained
    net) slow every multiply they touch down about tenfold on most CPUs. On exit the thread count
    returns to its previous value and flushing is switched off again (torch's default).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)
        torch.set_num_threads(threads)


def train_mlp(model, images, labels, batches, lr, on_checkpoint=None, checkpoints=(), progress=None, momentum=0.0):
    """Plain SGD, w <- w - lr dL/dw, one step per entry of ``batches``; returns the loss per step.

    With ``momentum`` mu > 0, torch's heavy ball: v <- mu v + dL/dw, w <- w - lr v.

    The loss of a step is the mean cross-entropy of its forward passes (one per index tensor of the
    entry). ``on_checkpoint(step)`` is called when ``step`` updates are done, for each step in
    ``checkpoints`` (0 = before training). ``progress`` (a tqdm bar) advances one per step.
    """
    if lr <= 0:
        raise ValueError(f"lr must be positive, got {lr}")
    checkpoints = set(checkpoints)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    losses = np.empty(len(batches))
    model.train()
    with small_model_settings():
        for step, groups in enumerate(batches):
            if step in checkpoints:
                on_checkpoint(step)
            loss = sum(nn.functional.cross_entropy(model(images[g]), labels[g]) for g in groups) / len(groups)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses[step] = loss.item()
            if progress is not None:
                progress.update(1)
        if len(batches) in checkpoints:
            on_checkpoint(len(batches))
    return losses


@torch.no_grad()
def accuracy(model, images, labels, batches=None):
    """Fraction classified correctly. Eval mode (running statistics) when ``batches`` is None; else
    train mode, each index tensor of ``batches`` one forward pass normalized with its own statistics
    (on a copy of the model, so the running statistics stay untouched)."""
    if batches is None:
        was_training = model.training
        model.eval()
        correct = (model(images).argmax(1) == labels).float().mean().item()
        model.train(was_training)
        return correct
    twin = copy.deepcopy(model).train()
    hits = sum((twin(images[g]).argmax(1) == labels[g]).sum().item() for g in batches)
    return hits / sum(len(g) for g in batches)


def consecutive_batches(n, batch_size):
    """range(n) cut into batches of ``batch_size`` (the remainder dropped): a fixed evaluation order."""
    return list(torch.arange(n - n % batch_size).view(-1, batch_size))
