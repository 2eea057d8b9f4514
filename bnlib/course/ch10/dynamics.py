"""The learning rate x weight decay grid: how the norm of a scale-invariant weight and its angular update evolve.

One cached experiment serves sections 2 and 3 of the notebook and the explorer: the chapter's network on
MNIST, trained for ``steps`` steps from the same initial weights and batches at every learning rate and
weight decay of the grid (plain SGD), plus a few runs with momentum. Every step records each hidden
weight's ||W||^2, ||g||^2, cos(W, g) and angular update (``optimizer.train_runs``).

- Without weight decay (section 2): ||W_t||^2 = ||W_0||^2 + lr^2 sum_{s<t} ||g_s||^2 (``predicted_norm2``), and
  the effective learning rate lr / ||W||^2 falls.
- With weight decay (section 3): the norm settles, and the angle of each step settles near
  sqrt(2 lr wd / (1 + mu)) (``equilibrium_angle``), after about (1 - mu) / (2 lr wd) steps.
"""

import math
from dataclasses import dataclass

import numpy as np

from bnlib.course.cache import Config, experiment
from bnlib.course.ch10.batched import BatchedMLP, evaluate_runs
from bnlib.course.ch10.optimizer import (Optimizer, equilibrium_angle, equilibrium_steps, predicted_norm2, rms,
                                         steps_counter, train_runs)
from bnlib.course.training import mnist, random_batches

RECORDS = ("norm2", "grad2", "cos", "angle", "loss")
LAST = 500  # steps at the end over which the angle is compared with its equilibrium value
WINDOW = 200  # trailing window of the "first step within 10%" measure


@dataclass(frozen=True)
class GridRun(Config):
    """The grid's settings: plain SGD at every (lr, wd) of ``lrs`` x ``wds``; ``momentum_runs``, (lr, wd, mu)
    each, with momentum. Weight decay on every Linear weight, none on gamma, beta and the last bias. Initial
    weights N(0, ``init_std``^2): small Gaussian weights as in the paper, which gives no scale
    (``bnlib.course.models.paper_mlp``'s default)."""

    lrs: tuple = (0.1, 0.2, 0.4)
    wds: tuple = (0.0, 1e-3, 3e-3, 1e-2)
    momentum_runs: tuple = ((0.02, 1e-2, 0.9),)
    steps: int = 1500
    batch_size: int = 60
    init_std: float = 0.01
    seed: int = 0

    def __post_init__(self):
        if self.steps <= LAST:
            raise ValueError(f"steps must exceed the {LAST} final steps the angle is measured over, got {self.steps}")
        if any(len(run) != 3 for run in self.momentum_runs):
            raise ValueError(f"momentum_runs holds (lr, wd, mu) triples, got {self.momentum_runs!r}")

    def optimizers(self):
        """Plain SGD over the grid, row by row (lr), then the momentum runs."""
        plain = [Optimizer(lr, wd) for lr in self.lrs for wd in self.wds]
        return plain, [Optimizer(lr, wd, momentum=mu) for lr, wd, mu in self.momentum_runs]


GRID = GridRun()


def grid_part(optimizers, config, report):
    """Train ``optimizers``' runs as one batched model; its records and test accuracy and loss."""
    images, labels = mnist(train=True)
    model = BatchedMLP(len(optimizers)).init_normal([config.seed] * len(optimizers), config.init_std)
    batches = [batch for (batch,) in random_batches(len(images), config.batch_size, config.steps, config.seed)]
    records = train_runs(model, images, labels, batches, optimizers, report)
    records["accuracy"], records["test_loss"] = evaluate_runs(model, *mnist(train=False))
    return records


@experiment("ch10_grid", GridRun)
def run_grid(config, report=None, progress=True):
    """The grid (cached): for every run, ``lr``, ``wd``, ``momentum``; ``accuracy`` and ``test_loss`` at the end;
    ``loss`` (steps, R) and per hidden layer ``norm2``, ``grad2``, ``cos``, ``angle`` (steps, 3, R).

    Plain SGD and momentum train as two batched models: a model with momentum runs keeps a velocity for all
    of its runs, which would slow the plain ones down.
    """
    plain, momentum = config.optimizers()
    runs = plain + momentum
    with steps_counter(len(runs) * config.steps, "learning rate x weight decay", report, progress) as count:
        parts = [grid_part(part, config, lambda n, size=len(part): count(n * size)) for part in (plain, momentum)
                 if part]
    result = {key: np.concatenate([part[key] for part in parts], axis=-1) for key in parts[0]}
    result.update(lr=[o.lr for o in runs], wd=[o.wd for o in runs], momentum=[o.momentum for o in runs])
    return result


def run_index(result, lr, wd, momentum=0.0):
    """The index of the run with these settings in a grid's ``result``."""
    for index, settings in enumerate(zip(result["lr"], result["wd"], result["momentum"])):
        if np.allclose(settings, (lr, wd, momentum)):
            return index
    raise ValueError(f"the grid has no run with lr {lr}, wd {wd}, momentum {momentum}")


def norm_growth(result, index):
    """Section 2, run ``index`` (no weight decay): per hidden layer (steps, 3) the measured ||W||^2, the
    prediction lr^2-sum, their relative error, and the effective learning rate lr / ||W||^2."""
    lr = float(result["lr"][index])
    measured = result["norm2"][:, :, index]
    predicted = predicted_norm2(measured, result["grad2"][:, :, index], lr)
    return {"measured": measured, "predicted": predicted, "error": np.abs(predicted - measured) / measured,
            "effective_lr": lr / measured}


def trailing_rms(angles, window=WINDOW):
    """The RMS of ``angles`` (steps, ...) over each trailing window; NaN for the first window - 1 steps."""
    squares = np.cumsum(np.concatenate([np.zeros_like(angles[:1]), np.square(angles)]), axis=0)
    out = np.full(angles.shape, np.nan)
    out[window - 1:] = np.sqrt((squares[window:] - squares[:-window]) / window)
    return out


def angle_summary(result, index, last=LAST):
    """Section 3, run ``index``: the predicted angle sqrt(2 lr wd / (1 + mu)), and per hidden layer (3,) the RMS
    and the mean angle over the ``last`` steps, each over the prediction, and the first step whose trailing RMS
    is within 10% of the prediction (-1 if none); the time scale (1 - mu) / (2 lr wd); the test accuracy."""
    lr, wd, mu = (float(result[key][index]) for key in ("lr", "wd", "momentum"))
    predicted = equilibrium_angle(lr, wd, mu)
    angles = result["angle"][:, :, index]
    within = np.abs(trailing_rms(angles) / predicted - 1) < 0.1
    first = np.where(within.any(0), within.argmax(0) + 1, -1)  # steps done when first within 10%
    return {"lr": lr, "wd": wd, "momentum": mu, "predicted": predicted,
            "rms_ratio": rms(angles[-last:]) / predicted, "mean_ratio": angles[-last:].mean(0) / predicted,
            "first_within": first, "time_scale": equilibrium_steps(lr, wd, mu),
            "accuracy": float(result["accuracy"][index])}


def reached(summary, last=LAST):
    """Whether a run had time to settle: its time scale (1 - mu) / (2 lr wd) at most ``last`` steps, the
    window over which the angle is measured (so at least two time scales before it ends, in a 1,500-step run)."""
    return summary["time_scale"] <= last


def momentum_candidates(lr, wd, momentum):
    """Three guesses at the equilibrium angle with momentum: sqrt(2 lr wd) (momentum ignored), sqrt(2 lr wd /
    (1 + mu)) (Wan et al. 2021), sqrt(2 lr wd / (1 - mu)) (lr / (1 - mu) as the effective step)."""
    return {"sqrt(2 lr wd)": equilibrium_angle(lr, wd), "sqrt(2 lr wd / (1 + mu))": equilibrium_angle(lr, wd, momentum),
            "sqrt(2 lr wd / (1 - mu))": math.sqrt(2 * lr * wd / (1 - momentum))}

