"""SGD with weight decay, written out, on many runs at once; what it does to a scale-invariant weight.

Each run of a ``BatchedMLP`` has its own ``Optimizer``: plain SGD with weight decay, ``w <- w - lr (g + wd w)``,
or heavy-ball momentum as torch writes it, ``v <- mu v + g + wd w``, ``w <- w - lr v``. The three hidden
weights take ``lr`` and ``wd``; gamma, beta and the last Linear take ``other_lr`` (the same by default), the
last Linear's weight ``last_wd`` (``wd`` by default), and gamma, beta and the biases ``gamma_beta_wd`` (none by
default: Goyal et al. 2017, section 5.1, and He et al. 2019's "no bias decay").

At every step ``train_runs`` records, for each hidden weight W of each run, before the update: ||W||^2, the
squared norm of the gradient ||g||^2, cos(W, g), and the angle by which the step turns W. The formulas the
chapter tests against those records are at the end: the norm without weight decay, the effective learning
rate, the angle at equilibrium.
"""

import math
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from bnlib.course.cache import Config
from bnlib.course.ch10.batched import HIDDEN, per_run_loss
from bnlib.course.training import small_model_settings


@dataclass(frozen=True)
class Optimizer(Config):
    """One run's optimizer settings (see the module's docstring)."""

    lr: float
    wd: float = 0.0
    momentum: float = 0.0
    other_lr: float | None = None
    last_wd: float | None = None
    gamma_beta_wd: float = 0.0

    def __post_init__(self):
        for name in ("lr", "other_lr"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be a positive learning rate, got {value!r}")
        for name in ("wd", "last_wd", "gamma_beta_wd"):
            value = getattr(self, name)
            if value is not None and not value >= 0:
                raise ValueError(f"{name} must be a weight decay of 0 or more, got {value!r}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1) (0: plain SGD), got {self.momentum!r}")

    def groups(self):
        """(lr, wd) for the hidden weights, the last weight, and gamma, beta and the biases."""
        other = self.lr if self.other_lr is None else self.other_lr
        return ((self.lr, self.wd), (other, self.wd if self.last_wd is None else self.last_wd),
                (other, self.gamma_beta_wd))


def update_direction(w, g, wd, momentum=0.0, velocity=None):
    """The direction u of the step w <- w - lr u (rows of ``w`` = runs; ``wd``, ``momentum`` per run, shaped to
    broadcast). Plain SGD: u = g + wd w. Heavy-ball momentum mu, as torch: v <- mu v + g + wd w (``velocity``,
    updated in place), u = v."""
    u = g + wd * w
    return u if velocity is None else velocity.mul_(momentum).add_(u)


def step_records(w, g, lr, wd, u=None):
    """Per run (row of ``w``, the flattened weights before the step w <- w - lr u): ||w||^2, ||g||^2, cos(w, g)
    and the angle between w and w - lr u, as float64. ``u`` is g + wd w unless given (momentum's v); its dot
    products with w then follow from the others, which saves two passes over the weights."""
    dots = lambda a, b: torch.linalg.vecdot(a, b).double()  # noqa: E731
    norm2, grad2, dot = dots(w, w), dots(g, g), dots(w, g)
    wd = wd.view(-1).double()
    if u is None:  # u = g + wd w
        wu, u2 = dot + wd * norm2, grad2 + 2 * wd * dot + wd ** 2 * norm2
    else:
        wu, u2 = dots(w, u), dots(u, u)
    along = wu / norm2.sqrt()                                            # u . w / |w|
    across = (u2 - along ** 2).clamp(min=0).sqrt()                       # |u_perp|, the part orthogonal to w
    angle = torch.atan2(lr.view(-1).double() * across, norm2.sqrt() - lr.view(-1).double() * along)
    return norm2, grad2, dot / (norm2 * grad2).sqrt(), angle             # tan(angle) = lr |u_perp| / (|w| - lr u.w/|w|)


def _columns(model, parameter, values):
    """Per-run ``values`` as a tensor shaped to broadcast against ``parameter`` viewed per run."""
    shape = (model.runs,) + (1,) * (model.per_run(parameter).dim() - 1)
    return [torch.tensor(v, dtype=parameter.dtype).view(shape) for v in values]


def train_runs(model, images, labels, batches, optimizers, report=None, on_step=None):
    """Train each run r of ``model`` (a ``BatchedMLP``) with ``optimizers[r]`` on ``batches`` (index tensors,
    the same for every run). ``report(n)`` counts steps (a progress bar), ``on_step(t)`` is called after step t.

    Returns numpy arrays: ``loss`` (steps, R), each run's mean cross-entropy on the step's batch, and for the
    hidden weights, measured before each step, ``norm2``, ``grad2``, ``cos`` and ``angle`` (steps, 3, R)
    (``step_records``).
    """
    if len(optimizers) != model.runs:
        raise ValueError(f"one Optimizer per run: got {len(optimizers)} for {model.runs} runs")
    settings = [optimizer.groups() for optimizer in optimizers]  # per run: (lr, wd) of each group
    mu = [optimizer.momentum for optimizer in optimizers]
    momentum = any(mu)
    grouped = [(w, 0) for w in model.weights[:HIDDEN]] + [(model.weights[-1], 1)]
    grouped += [(p, 2) for p in [*model.biases, *model.norms.parameters()]]
    parameters = [(p, *_columns(model, p, ([s[group][0] for s in settings], [s[group][1] for s in settings], mu)))
                  for p, group in grouped]  # (parameter, lr, wd, momentum), the last three per run
    records = {name: np.zeros((len(batches), HIDDEN, model.runs)) for name in ("norm2", "grad2", "cos", "angle")}
    records["loss"] = np.zeros((len(batches), model.runs))
    velocities = {}
    dtype = model.weights[0].dtype
    model.train()
    with small_model_settings():
        for step, batch in enumerate(batches):
            losses = per_run_loss(model(images[batch].to(dtype)), labels[batch])
            for p in model.parameters():
                p.grad = None
            losses.sum().backward()  # each run's loss depends on its own parameters only
            records["loss"][step] = losses.detach().double().numpy()
            with torch.no_grad():
                for index, (p, lr, wd, mu) in enumerate(parameters):
                    w, g = model.per_run(p), model.per_run(p.grad)
                    velocity = velocities.setdefault(index, torch.zeros_like(w)) if momentum else None
                    u = update_direction(w, g, wd, mu, velocity)
                    if index < HIDDEN:  # measured before the step
                        flat = [t.reshape(model.runs, -1) for t in (w, g, u)]
                        found = step_records(*flat[:2], lr, wd, flat[2] if momentum else None)
                        for name, value in zip(("norm2", "grad2", "cos", "angle"), found):
                            records[name][step, index] = value.numpy()
                    w.sub_(lr * u)  # w <- w - lr u
            if report is not None:
                report(1)
            if on_step is not None:
                on_step(step)
    return records


@contextmanager
def steps_counter(total, desc, report=None, progress=True):
    """``report`` if given (a worker's, counted by the parent's bar), else a progress bar's ``update``."""
    if report is not None:
        yield report
        return
    from tqdm.auto import tqdm

    with tqdm(total=total, desc=desc, unit="step", disable=not progress, mininterval=0.5) as bar:
        yield bar.update


# The formulas the records are tested against.

def predicted_norm2(norm2, grad2, lr):
    """||W_t||^2 predicted for plain SGD without weight decay from ||W_0||^2 and the gradients so far:
    ||W_t||^2 = ||W_0||^2 + lr^2 (||g_0||^2 + ... + ||g_{t-1}||^2), since each update -lr g is orthogonal to W.
    ``norm2``, ``grad2``: (steps, ...) as recorded; returns the prediction for every recorded step."""
    grad2 = np.asarray(grad2, dtype=np.float64)
    before = np.concatenate([np.zeros_like(grad2[:1]), np.cumsum(grad2, axis=0)[:-1]])  # sum over s < t
    return np.asarray(norm2, dtype=np.float64)[0] + lr ** 2 * before


def effective_lr(lr, norm2):
    """lr / ||W||^2: how fast a scale-invariant weight's direction moves per unit of lr (Hoffer et al. 2018)."""
    return lr / np.asarray(norm2, dtype=np.float64)


def equilibrium_angle(lr, wd, momentum=0.0):
    """The angle a step turns W by once its norm is at equilibrium: sqrt(2 lr wd / (1 + mu)), mu = 0 for plain
    SGD (Wan et al. 2021, their theorem on the angular update at equilibrium)."""
    return math.sqrt(2 * lr * wd / (1 + momentum))


def equilibrium_steps(lr, wd, momentum=0.0):
    """The time scale of the approach to equilibrium, (1 - mu) / (2 lr wd) steps: the time weight decay alone (lr wd
    / (1 - mu) per step with momentum mu) takes to shrink ||W||^2 by a factor e. Wan et al. (2021) prove that the
    equilibrium is reached at a linear rate."""
    return (1 - momentum) / (2 * lr * wd)


def rms(angles, axis=0):
    """Root mean square: sqrt(mean(angle^2)), what the equilibrium prediction is about."""
    return np.sqrt(np.mean(np.square(angles), axis=axis))
