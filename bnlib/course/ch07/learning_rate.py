"""The largest learning rate that trains, with and without batch norm: chapter 07's network trained for a few
hundred steps at each rate of a grid, a run "trains" if its test accuracy reaches a threshold.

The grid's steps are about 3.3x apart, so "the largest grid rate that trains" locates the true limit only
to within one step on either side.
"""

from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure
from tqdm.auto import tqdm

from bnlib.course.cache import Config, experiment
from bnlib.course.ch07.network import chapter_mlp
from bnlib.course.training import accuracy, mnist, random_batches, train_mlp


@dataclass(frozen=True)
class MaxLrRun(Config):
    """The learning-rate grid's settings: each of ``norms`` trained for ``steps`` at each of ``lrs``; a run
    "trains" if its test accuracy reaches ``trains_if_accuracy_above`` (a fraction)."""

    norms: tuple = ("none", "batch")
    lrs: tuple = (0.03, 0.1, 0.3, 1.0, 3.0, 10.0)
    steps: int = 400
    batch_size: int = 60
    seed: int = 0
    trains_if_accuracy_above: float = 0.9

    def __post_init__(self):
        if not 0 < self.trains_if_accuracy_above <= 1:
            raise ValueError(f"trains_if_accuracy_above is a fraction of the test set, between 0 and 1 "
                             f"(0.9 for 90%); got {self.trains_if_accuracy_above}")


MAX_LR_CONFIG = MaxLrRun()


@experiment("ch07_max_learning_rate", MaxLrRun)
def max_learning_rate(config):
    """Test accuracy after ``steps`` steps for each norm and learning rate, (norms, lrs) (cached)."""
    images, labels = mnist(train=True)
    test_images, test_labels = mnist(train=False)
    batches = random_batches(len(labels), config.batch_size, config.steps, config.seed)
    scores = np.zeros((len(config.norms), len(config.lrs)))
    with tqdm(total=scores.size * config.steps, desc="learning-rate grid") as bar:
        for i, norm in enumerate(config.norms):
            for j, lr in enumerate(config.lrs):
                model = chapter_mlp(norm, seed=config.seed)
                train_mlp(model, images, labels, batches, lr, progress=bar)
                scores[i, j] = accuracy(model, test_images, test_labels)
    return {"lrs": np.array(config.lrs), "test_accuracy": scores}


def largest_trainable_lr(lrs, scores, threshold=MAX_LR_CONFIG.trains_if_accuracy_above):
    """The largest learning rate whose run reached ``threshold`` test accuracy (None if none did)."""
    good = [lr for lr, score in zip(lrs, scores) if score >= threshold]
    return max(good) if good else None


def learning_rate_figure():
    """Test accuracy after a short run against the learning rate, with and without BN."""
    result, config = max_learning_rate(), MAX_LR_CONFIG
    figure = Figure(figsize=(5.5, 3.8))
    ax = figure.subplots()
    data = {"lrs": result["lrs"]}
    for k, norm in enumerate(config.norms):
        label = "with BN" if norm == "batch" else "no BN"
        ax.semilogx(result["lrs"], 100 * result["test_accuracy"][k], "o-", label=label)
        data[label] = {"test_accuracy": result["test_accuracy"][k],
                       "largest_trainable_lr": largest_trainable_lr(result["lrs"], result["test_accuracy"][k])}
    ax.axhline(100 * config.trains_if_accuracy_above, color="gray", ls=":", label="trains (threshold)")
    ax.set(xlabel="learning rate", ylabel="test accuracy (%)", title=f"After {config.steps} steps of SGD")
    ax.legend(fontsize=8)
    figure.tight_layout()
    return figure, data


FIGURES = {"ch07_max_learning_rate": learning_rate_figure}
