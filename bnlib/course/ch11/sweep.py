"""Learning-rate sweeps of an 8-block residual net: BN on the branch, with and without zero-init gamma, no
normalization, SkipInit.

Every run trains ``ResMLP(depth, kind)`` with plain SGD on the same iid batches of 60 for ``steps`` steps from
the same seed, at each learning rate of ``lrs`` (a factor 2 apart, so every "largest learning rate" holds
within a factor 2), then scores it on the 10,000 test images. A run whose loss turns NaN or inf stops there.

Two meanings of "trains", both reported: *stable*, every loss finite and the mean loss of the last 50 steps
below ln 10 (a uniform guess); *useful*, a test accuracy of at least 90% at the end. Stable alone is weak:
a net that is stable at 30% accuracy has not trained in any useful sense.
"""

import math
from dataclasses import dataclass

import numpy as np
import torch

from bnlib.course.cache import Config, experiment
from bnlib.course.ch11.residual import ResMLP, zero_init_last_bn
from bnlib.course.training import accuracy, mnist, random_batches, train_mlp

# name: (block kind, zero-init gamma on the last BN of each block)
VARIANTS = {"BN": ("branch", False), "BN, zero gamma": ("branch", True), "SkipInit": ("skipinit", False),
            "no normalization": ("none", False)}
USEFUL = 0.90  # the test accuracy a "useful" run reaches
LAST = 50  # steps at the end whose mean loss says whether a run is stable
EARLY = 10  # steps at the start whose mean loss measures the early spike


@dataclass(frozen=True)
class SweepRun(Config):
    """The sweep's settings: every variant of ``variants`` at every learning rate of ``lrs``."""

    variants: tuple = tuple(VARIANTS)
    lrs: tuple = (0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4)
    depth: int = 8
    width: int = 100
    batch_size: int = 60
    steps: int = 200
    seed: int = 0


SWEEP = SweepRun()


def sweep_net(variant, config):
    kind, zero_gamma = VARIANTS[variant]
    model = ResMLP(config.depth, kind, config.width, config.seed)
    return zero_init_last_bn(model) if zero_gamma else model


@experiment("ch11_sweep", SweepRun)
def run_sweep(config, report=None):
    """The sweep (cached): ``loss`` (variants, lrs, steps), NaN from a run's first non-finite loss on, and
    ``accuracy`` (variants, lrs), the test accuracy at the end (NaN for a run that diverged)."""
    images, labels = mnist(train=True)
    test_images, test_labels = mnist(train=False)
    batches = random_batches(len(images), config.batch_size, config.steps, config.seed)
    loss = np.full((len(config.variants), len(config.lrs), config.steps), np.nan)
    acc = np.full((len(config.variants), len(config.lrs)), np.nan)
    for row, variant in enumerate(config.variants):
        for column, lr in enumerate(config.lrs):
            model = sweep_net(variant, config)
            loss[row, column] = train_mlp(model, images, labels, batches, lr, stop_if_diverged=True)
            if np.isfinite(loss[row, column]).all():
                acc[row, column] = accuracy(model, test_images, test_labels)
            if report is not None:
                report(config.steps)
    return {"loss": loss, "accuracy": acc}


def stable(result, row, column):
    """Whether run (variant ``row``, lr ``column``) never diverged and ended with a mean loss below ln 10."""
    losses = result["loss"][row, column]
    return bool(np.isfinite(losses).all() and losses[-LAST:].mean() < math.log(10))


def useful(result, row, column):
    return bool(stable(result, row, column) and result["accuracy"][row, column] >= USEFUL)


def largest_lr(result, variant, config=SWEEP, criterion=stable):
    """The largest learning rate of the sweep at which ``variant`` trains by ``criterion``, or None."""
    row = config.variants.index(variant)
    passing = [lr for column, lr in enumerate(config.lrs) if criterion(result, row, column)]
    return max(passing) if passing else None


def summary(result, variant, config=SWEEP):
    """What the notebook prints for one variant: the largest stable and useful learning rates, and the best
    test accuracy with the learning rate that reached it."""
    row = config.variants.index(variant)
    scores = np.nan_to_num(result["accuracy"][row], nan=0.0)
    best = int(scores.argmax())
    return {"variant": variant, "stable": largest_lr(result, variant, config),
            "useful": largest_lr(result, variant, config, useful),
            "best_lr": config.lrs[best], "best_accuracy": float(scores[best])}


def early_loss(result, variant, lr, config=SWEEP, steps=EARLY):
    """The mean loss over the first ``steps`` steps of one run (the size of the early spike)."""
    return float(result["loss"][config.variants.index(variant), config.lrs.index(lr), :steps].mean())


def first_loss(variant, config=SWEEP):
    """The loss of a fresh net of ``variant`` on the sweep's first batch, before any step (train mode)."""
    images, labels = mnist(train=True)
    (batch,) = random_batches(len(images), config.batch_size, 1, config.seed)[0]
    with torch.no_grad():
        logits = sweep_net(variant, config).train()(images[batch])
    return torch.nn.functional.cross_entropy(logits, labels[batch]).item()
