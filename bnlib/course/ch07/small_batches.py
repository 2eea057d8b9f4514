"""Small batches: batch statistics are estimates, and their noise grows as the batch shrinks.

In training, batch norm replaces a unit's true mean and variance by those of the m examples in the
batch. Drawn at random, the batch mean is an estimate with standard deviation

    std(mu_B) = sigma / sqrt(m),

and the biased batch variance v_B = 1/m sum (x_i - mu_B)^2 has (with mu4 = E[(x - mu)^4])

    var(v_B) = ((m - 1) / m)^2 (mu4 / m - sigma^4 (m - 3) / (m (m - 1))),

which also shrinks like 1/sqrt(m) in standard deviation. We measure both on real activations: the
inputs of the second batch-norm layer of a briefly trained network, on 10,000 MNIST training images,
sampling batches with replacement (so the formulas hold exactly for this empirical distribution).

Then we train with tiny batches: batch norm's accuracy falls at batch 2, where each unit's
normalized output in training is just +-1 (two values, centred and scaled), while LayerNorm and
GroupNorm, which never look across the batch, do not care about the batch size.
"""

from dataclasses import dataclass

import numpy as np
import torch
from matplotlib.figure import Figure
from tqdm.auto import tqdm

from bnlib.course.cache import Config, experiment
from bnlib.course.ch07.network import chapter_mlp
from bnlib.course.training import accuracy, consecutive_batches, mnist, random_batches, train_mlp
from bnlib.normalization import EPS


@dataclass(frozen=True)
class ActivationsRun(Config):
    """The settings of the short run whose activations are measured: the network's ``norm``, its training,
    and the ``examples`` first training images fed through its first ``layer`` modules."""

    norm: str = "batch"
    steps: int = 500
    batch_size: int = 60
    lr: float = 0.1
    seed: int = 0
    examples: int = 10_000
    layer: int = 4


@dataclass(frozen=True)
class SweepRun(Config):
    """The batch-size sweep's settings: each of ``norms`` trained at each of ``batch_sizes`` on ``examples``
    training images (lr scaled with the batch, ``sweep_lr``), BN's train mode tested on the first
    ``train_mode_test_examples`` test images."""

    norms: tuple = ("batch", "layer", "group")
    batch_sizes: tuple = (2, 4, 8, 32)
    examples: int = 6000
    base_lr: float = 0.5
    base_batch: int = 32
    seed: int = 0
    train_mode_test_examples: int = 2000

    def __post_init__(self):
        for name in ("examples", "train_mode_test_examples"):
            if getattr(self, name) < max(self.batch_sizes):
                raise ValueError(f"{name} ({getattr(self, name)}) must be at least the largest batch size "
                                 f"({max(self.batch_sizes)}), or that batch size has no batch to train or test on")


ACTIVATIONS_CONFIG = ActivationsRun()
NOISE_BATCH_SIZES = (2, 4, 8, 16, 32, 64, 128, 256)
NOISE_UNITS = tuple(range(0, 100, 5))
SWEEP_CONFIG = SweepRun()


@experiment("ch07_unit_activations", ActivationsRun)
def activations_run(config):
    """The short training run of ``unit_activations`` (cached): ``{"activations": ...}``."""
    images, labels = mnist(train=True)
    model = chapter_mlp(config.norm, seed=config.seed)
    batches = random_batches(len(labels), config.batch_size, config.steps, config.seed)
    train_mlp(model, images, labels, batches, config.lr)
    with torch.no_grad():
        return {"activations": model[:config.layer](images[:config.examples]).numpy()}


def unit_activations(config=ACTIVATIONS_CONFIG):
    """Inputs of the second batch-norm layer (``model[4]``: W u of layer 2), shape (examples, 100),
    after a short training run (cached)."""
    return activations_run(config)["activations"]


def sample_batches(values, batch_size, draws, seed=0):
    """``draws`` batches of ``batch_size`` rows of ``values`` (n, units), drawn with replacement."""
    if batch_size < 2:
        raise ValueError(f"batch_size must be at least 2 to have a batch variance, got {batch_size}")
    rng = np.random.default_rng(seed)
    return values[rng.integers(len(values), size=(draws, batch_size))]


def theoretical_noise(values, batch_size):
    """(std of the batch mean, std of the biased batch variance) per unit, from the formulas above."""
    m = batch_size
    centered = values - values.mean(0)
    var, mu4 = (centered ** 2).mean(0), (centered ** 4).mean(0)
    var_unbiased = mu4 / m - var ** 2 * (m - 3) / (m * (m - 1))  # var(s^2), s^2 the unbiased estimate
    return np.sqrt(var / m), (m - 1) / m * np.sqrt(var_unbiased)


def batch_statistic_noise(batch_sizes=NOISE_BATCH_SIZES, units=NOISE_UNITS, draws=2000, seed=0):
    """Measured and theoretical std of the batch mean and batch variance, (len(batch_sizes), units)."""
    values = unit_activations()[:, list(units)].astype(np.float64)
    result = {key: [] for key in ("mean_std", "var_std", "mean_theory", "var_theory")}
    for m in batch_sizes:
        batches = sample_batches(values, m, draws, seed)
        result["mean_std"].append(batches.mean(1).std(0))
        result["var_std"].append(batches.var(1).std(0))
        mean_theory, var_theory = theoretical_noise(values, m)
        result["mean_theory"].append(mean_theory)
        result["var_theory"].append(var_theory)
    return {"batch_sizes": np.array(batch_sizes), **{key: np.array(rows) for key, rows in result.items()}}


def loglog_slope(batch_sizes, stds):
    """Slope of log(std) against log(m), fitted over batch sizes (theory: -1/2)."""
    return np.polyfit(np.log(batch_sizes), np.log(stds), 1)[0]


def normalized_value_spread(values, example, batch_size, draws=2000, seed=0):
    """What BN makes of one fixed value ``example`` of a unit when it shares a batch with m - 1 random
    others of the unit's ``values`` (n,): (x - mu_B) / sqrt(v_B + eps), one number per draw."""
    others = sample_batches(values, batch_size, draws, seed)[:, 1:]
    batch = np.concatenate([np.full((draws, 1), example), others], axis=1)
    return (example - batch.mean(1)) / np.sqrt(batch.var(1) + EPS)


def sweep_lr(batch_size, config=SWEEP_CONFIG):
    """Learning rate scaled with the batch (lr = base_lr m / base_batch), so each run sees the same
    examples with the same total step length: only the batch statistics differ between runs."""
    return config.base_lr * batch_size / config.base_batch


@experiment("ch07_batch_size_sweep", SweepRun)
def batch_size_sweep(config):
    """Test accuracy after training on ``examples`` images at each batch size, for each norm (cached).

    ``eval_accuracy[norm, size]`` uses running statistics for BN (per-example statistics for the
    others); ``train_mode_accuracy[size]`` is BN's accuracy in train mode, on test batches of the
    training size (the first ``train_mode_test_examples`` test images: a batch of 2 per forward pass is slow).
    """
    images, labels = mnist(train=True)
    test_images, test_labels = mnist(train=False)
    sizes = config.batch_sizes
    steps = {m: config.examples // m for m in sizes}
    eval_accuracy = np.zeros((len(config.norms), len(sizes)))
    train_mode_accuracy = np.zeros(len(sizes))
    with tqdm(total=len(config.norms) * sum(steps.values()), desc="batch-size sweep") as bar:
        for i, norm in enumerate(config.norms):
            for j, m in enumerate(sizes):
                model = chapter_mlp(norm, seed=config.seed)
                batches = random_batches(len(labels), m, steps[m], config.seed)
                train_mlp(model, images, labels, batches, sweep_lr(m, config), progress=bar)
                eval_accuracy[i, j] = accuracy(model, test_images, test_labels)
                if norm == "batch":
                    test_batches = consecutive_batches(config.train_mode_test_examples, m)
                    train_mode_accuracy[j] = accuracy(model, test_images, test_labels, test_batches)
    return {"eval_accuracy": eval_accuracy, "train_mode_accuracy": train_mode_accuracy}


def noise_figure():
    """Std of the batch mean and variance against batch size, measured and from theory (log-log)."""
    noise = batch_statistic_noise()
    sizes = noise["batch_sizes"]
    averaged = {key: noise[key].mean(1) for key in ("mean_std", "mean_theory", "var_std", "var_theory")}  # over units
    figure = Figure(figsize=(8.4, 3.8))
    for ax, stat, label, corner in zip(figure.subplots(1, 2), ("mean", "var"), ("batch mean", "batch variance"),
                                       ("lower left", "upper right")):
        measured, theory = averaged[f"{stat}_std"], averaged[f"{stat}_theory"]
        ax.loglog(sizes, measured, "o", label="measured (2,000 batches)")
        ax.loglog(sizes, theory, "-", label="theory")
        ax.loglog(sizes, measured[0] * np.sqrt(sizes[0] / sizes), ":", color="gray", label=r"$\propto 1/\sqrt{m}$")
        ax.set(xlabel="batch size m", ylabel=f"std of the {label}", title=f"Noise of the {label}")
        ax.legend(loc=corner)  # the corner the falling lines leave empty
    figure.suptitle(f"Averaged over {noise['mean_std'].shape[1]} units of a real hidden layer on MNIST")
    figure.tight_layout()
    data = {"batch_sizes": sizes, **averaged, "mean_slope": loglog_slope(sizes, averaged["mean_std"]),
            "var_slope": loglog_slope(sizes, averaged["var_std"])}
    return figure, data


def sweep_figure():
    """Test accuracy against batch size: BN (eval and train mode), LayerNorm, GroupNorm."""
    sweep, config = batch_size_sweep(), SWEEP_CONFIG
    sizes = config.batch_sizes
    figure = Figure(figsize=(5.5, 3.8))
    ax = figure.subplots()
    for row, norm in zip(sweep["eval_accuracy"], config.norms):
        ax.plot(sizes, 100 * row, "o-", label=f"{norm} norm" + (" (eval mode)" if norm == "batch" else ""))
    ax.plot(sizes, 100 * sweep["train_mode_accuracy"], "o--", color="C0", alpha=0.6, label="batch norm (train mode)")
    ax.set_xscale("log", base=2)
    ax.minorticks_off()
    ax.set(xticks=sizes, xticklabels=[str(m) for m in sizes], xlabel="batch size", ylabel="test accuracy (%)",
           title=f"{config.examples:,} training examples, lr scaled with batch")
    ax.legend(fontsize=8)
    figure.tight_layout()
    data = {"batch_sizes": sizes, "norms": config.norms, "eval_accuracy": sweep["eval_accuracy"],
            "batch_norm_train_mode_accuracy": sweep["train_mode_accuracy"]}
    return figure, data


FIGURES = {"ch07_batch_statistic_noise": noise_figure, "ch07_accuracy_vs_batch_size": sweep_figure}
