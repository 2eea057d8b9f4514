"""Batch norm before or after the nonlinearity: a small, real experiment on MNIST.

The paper normalizes the pre-activation, ``z = g(BN(W u))``: ``W u`` is "more likely to have a
symmetric, non-sparse distribution" than the layer input u, so normalizing it gives stable
activations (section 3.2). Many practitioners place BN after the nonlinearity instead,
``z = BN(g(W u + b))``. We train the same small MLP both ways, with sigmoid and with ReLU, several
seeds each, on a 10,000-image subset of the MNIST training set, and measure the test set.
Notebook 04 defines ``placement_mlp`` in a ``#@save`` cell: this module holds that very code.
"""

from dataclasses import dataclass

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

from bnlib.course.cache import Config, experiment
from bnlib.course.data import TRAIN_EXAMPLES
from bnlib.course.training import evaluate, mnist, random_batches, train_mlp
from bnlib.layers import BatchNorm1d

PLACEMENTS = ("before", "after")
ACTIVATIONS = {"sigmoid": nn.Sigmoid, "relu": nn.ReLU}


@dataclass(frozen=True)
class PlacementRun(Config):
    """The placement experiment's settings: the MLP's hidden widths, the size of the training subset, SGD with
    momentum, the seeds each placement and activation trains with, and the steps between test measurements."""

    hidden: tuple = (100, 100)
    train_examples: int = 10_000
    steps: int = 500
    batch_size: int = 64
    lr: float = 0.1
    momentum: float = 0.9
    seeds: tuple = (0, 1, 2)
    eval_every: int = 50

    def __post_init__(self):
        if not 1 <= self.train_examples <= TRAIN_EXAMPLES:
            raise ValueError(f"train_examples must be between 1 and {TRAIN_EXAMPLES:,} (MNIST's training set), "
                             f"got {self.train_examples}")
        if self.batch_size < 2:
            raise ValueError(f"batch_size must be at least 2 for batch norm in training, got {self.batch_size}")
        if not 1 <= self.eval_every <= self.steps:
            raise ValueError(f"eval_every must be between 1 and steps ({self.steps}), so that the test set is "
                             f"measured at least once; got {self.eval_every}")
        if not self.seeds:
            raise ValueError("seeds must name at least one seed to train each placement with")


CONFIG = PlacementRun()


def placement_mlp(placement, activation, hidden=CONFIG.hidden, inputs=784, classes=10):
    """``Linear -> BN -> g`` ("before", no bias: beta replaces it) or ``Linear -> g -> BN`` ("after")."""
    if placement not in PLACEMENTS:
        raise ValueError(f"placement must be one of {PLACEMENTS}, got {placement!r}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    layers, width = [], inputs
    for units in hidden:
        linear = nn.Linear(width, units, bias=placement == "after")
        pair = [BatchNorm1d(units), ACTIVATIONS[activation]()]
        layers += [linear, *(pair if placement == "before" else pair[::-1])]
        width = units
    return nn.Sequential(*layers, nn.Linear(width, classes))


def train_one(placement, activation, seed, train, test, config):
    """SGD with momentum on random mini-batches; the training loss at every step, test metrics every few."""
    torch.manual_seed(seed)
    model = placement_mlp(placement, activation, config.hidden)
    batches = random_batches(len(train[0]), config.batch_size, config.steps, seed)
    tested = []
    losses = train_mlp(model, *train, batches, config.lr, momentum=config.momentum,
                       on_checkpoint=lambda step: tested.append(evaluate(model, *test)),
                       checkpoints=range(config.eval_every, config.steps + 1, config.eval_every))
    test_losses, test_accuracies = zip(*tested)
    return losses, test_losses, test_accuracies


@experiment("placement", PlacementRun)
def placement_experiment(config):
    """All placements x activations x seeds (cached; about half a minute to compute the first time), for a
    ``PlacementRun`` (by default ``CONFIG``); arrays keyed ``"<activation>/<placement>/<quantity>"``."""
    from tqdm.auto import tqdm

    images, labels = mnist(train=True)
    subset = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))[:config.train_examples]
    train = images[subset], labels[subset]
    test = mnist(train=False)
    results = {}
    runs = [(a, p, s) for a in ACTIVATIONS for p in PLACEMENTS for s in config.seeds]
    for activation, placement, seed in tqdm(runs, desc="placement experiment", unit="run"):
        for name, values in zip(("train_loss", "test_loss", "test_accuracy"),
                                train_one(placement, activation, seed, train, test, config)):
            results.setdefault(f"{activation}/{placement}/{name}", []).append(values)
    return {key: np.array(values) for key, values in results.items()}


def placement_summary(results):
    """``{(activation, placement): (mean, std) of the final test accuracy over seeds}``."""
    return {(a, p): (results[f"{a}/{p}/test_accuracy"][:, -1].mean(), results[f"{a}/{p}/test_accuracy"][:, -1].std())
            for a in ACTIVATIONS for p in PLACEMENTS}


def print_placement_summary(results):
    summary = placement_summary(results)
    for (activation, placement), (mean, std) in summary.items():
        print(f"{activation:>8}, BN {placement:<6} the nonlinearity: test accuracy {100 * mean:.2f}% "
              f"(+/- {100 * std:.2f} over seeds)")
    for activation in ACTIVATIONS:
        gap = summary[activation, "after"][0] - summary[activation, "before"][0]
        print(f"{activation:>8}: BN after minus BN before = {100 * gap:+.2f} points")


def placement_figure(config=CONFIG):
    """Training loss (smoothed) and test accuracy over steps, one panel pair per activation."""
    results = placement_experiment(config)
    figure = Figure(figsize=(8.4, 7))
    axes = figure.subplots(2, len(ACTIVATIONS), squeeze=False)
    window = 25
    eval_steps = config.eval_every * np.arange(1, config.steps // config.eval_every + 1)
    for column, activation in enumerate(ACTIVATIONS):
        for placement, color in zip(PLACEMENTS, ("C0", "C1")):
            loss = results[f"{activation}/{placement}/train_loss"].mean(axis=0)
            smooth = np.convolve(loss, np.ones(window) / window, mode="valid")
            axes[0, column].plot(np.arange(window, len(loss) + 1), smooth, color=color,
                                 label=f"BN {placement} {activation}")
            accuracy = 100 * results[f"{activation}/{placement}/test_accuracy"]
            axes[1, column].errorbar(eval_steps, accuracy.mean(axis=0), yerr=accuracy.std(axis=0), color=color,
                                     marker="o", ms=3, capsize=2, label=f"BN {placement} {activation}")
        axes[0, column].set(title=f"{activation}: training loss\n(mean of seeds, {window}-step average)",
                            xlabel="step", ylabel="cross-entropy", yscale="log")
        axes[1, column].set(title=f"{activation}: test accuracy\n(mean +/- std of seeds)", xlabel="step",
                            ylabel="accuracy (%)", ylim=(80, 100))
        for ax in axes[:, column]:
            ax.legend()
    figure.tight_layout()
    data = {"config": config, "eval_steps": eval_steps,
            **{key: values.mean(axis=0) for key, values in results.items()}}
    return figure, data


FIGURES = {"bn_placement": placement_figure}
