"""The course's one training loop, the batches it draws, and one way to evaluate a model.

Most experiments of the course are "train this MLP on these mini-batches with plain SGD, then measure":
only the network and the way batches are drawn change. So the batches are an argument: a list with
one entry per step, each entry a list of index tensors. Usually an entry holds a single index tensor
(one forward pass); chapter 7's GAN discriminator puts two there (all-real, then all-fake), which become
two forward passes, each normalized with its own batch statistics, and one update on the mean of their
losses. Small networks train on one thread (``small_model_settings``).
"""

import contextlib
import copy
from functools import lru_cache

import numpy as np
import torch
from torch import nn

from bnlib.course.data import load_mnist


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


@torch.no_grad()
def sgd_step(parameters, velocities, lr, momentum=0.0):
    """One step of SGD on ``parameters``, as ``torch.optim.SGD`` takes it (the same operations, so the same
    numbers): w <- w - lr g, or with momentum mu, v <- mu v + g (v = g at first), w <- w - lr v.
    ``velocities`` holds each parameter's v (None until its first step). (Written out, not
    ``torch.optim.SGD``: constructing that loads torch's compiler, a second in every new process.)"""
    for i, p in enumerate(parameters):
        if p.grad is None:
            continue
        update = p.grad
        if momentum:
            velocities[i] = update.clone() if velocities[i] is None else velocities[i].mul_(momentum).add_(update)
            update = velocities[i]
        p.add_(update, alpha=-lr)


def train_mlp(model, images, labels, batches, lr, on_checkpoint=None, checkpoints=(), progress=None, momentum=0.0,
              stop_if_diverged=False):
    """Plain SGD, w <- w - lr dL/dw, one step per entry of ``batches``; returns the loss per step.

    With ``stop_if_diverged``, a step whose loss is NaN or inf ends the run there (no update from it): that loss
    and those of the steps never taken are NaN. (A learning-rate sweep then pays little for the runs that blow up.)

    With ``momentum`` mu > 0, torch's heavy ball: v <- mu v + dL/dw, w <- w - lr v.

    The loss of a step is the mean cross-entropy of its forward passes (one per index tensor of the
    entry). ``on_checkpoint(step)`` is called when ``step`` updates are done, for each step in
    ``checkpoints`` (0 = before training). ``progress`` (a tqdm bar) advances one per step.
    """
    if lr <= 0:
        raise ValueError(f"lr must be positive, got {lr}")
    checkpoints = set(checkpoints)
    parameters = [p for p in model.parameters() if p.requires_grad]
    velocities = [None] * len(parameters)
    losses = np.full(len(batches), np.nan)
    model.train()
    with small_model_settings():
        for step, groups in enumerate(batches):
            if step in checkpoints:
                on_checkpoint(step)
            loss = sum(nn.functional.cross_entropy(model(images[g]), labels[g]) for g in groups) / len(groups)
            if stop_if_diverged and not torch.isfinite(loss):
                return losses
            for p in parameters:
                p.grad = None
            loss.backward()
            sgd_step(parameters, velocities, lr, momentum)
            losses[step] = loss.item()
            if progress is not None:
                progress.update(1)
        if len(batches) in checkpoints:
            on_checkpoint(len(batches))
    return losses


# Eval mode treats every example on its own, so evaluation runs in chunks: a conv net's feature maps for
# 2,000 images at once take ~100 MB of fresh memory per pass, which costs more to map than to compute.
EVAL_CHUNK = 500


@torch.no_grad()
def evaluate(model, images, labels, batches=None):
    """``(mean cross-entropy, fraction classified correctly)``; the model's mode is left as it was.

    Eval mode (running statistics) when ``batches`` is None. Else train mode, each index tensor of
    ``batches`` one forward pass normalized with its own statistics, as if ``model.eval()`` were
    forgotten (on a copy of the model, so its running statistics stay untouched).
    """
    if batches is None:
        was_training = model.training
        logits = torch.cat([model.eval()(part) for part in images.split(EVAL_CHUNK)])  # each example on its own
        model.train(was_training)
        return nn.functional.cross_entropy(logits, labels).item(), (logits.argmax(1) == labels).float().mean().item()
    twin = copy.deepcopy(model).train()
    logits = [twin(images[g]) for g in batches]
    seen = torch.cat([labels[g] for g in batches])
    logits = torch.cat(logits)
    return nn.functional.cross_entropy(logits, seen).item(), (logits.argmax(1) == seen).double().mean().item()


def accuracy(model, images, labels, batches=None):
    """The fraction classified correctly, as ``evaluate`` measures it."""
    return evaluate(model, images, labels, batches)[1]


def consecutive_batches(n, batch_size):
    """range(n) cut into batches of ``batch_size`` (the remainder dropped): a fixed evaluation order."""
    return list(torch.arange(n - n % batch_size).view(-1, batch_size))
