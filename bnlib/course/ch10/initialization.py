""""Less careful about initialization" (Ioffe & Szegedy 2015, abstract and section 3.3), tested on MNIST.

The initial weights are N(0, (k sqrt(2 / fan_in))^2): k times He et al.'s scale, for k from 0.1 to 10. Three
families, each from the same draws (only k differs) and on the same batches:

- no BN: the plain ReLU network (hidden biases 0);
- BN: every Linear scaled by k;
- BN, last at He: the hidden Linears scaled by k, the last one (which feeds no BN) at He's scale.

At step 0, on the first batch, the diagnostics of Karpathy's "Building makemore Part 3: Activations &
Gradients, BatchNorm": per hidden layer the standard deviation of the activations (ReLU outputs) and of the
loss's gradient with respect to them, and the update-to-data ratio lr std(dL/dW) / std(W) of every weight. Then
plain SGD, no weight decay, and the test accuracy.
"""

from dataclasses import dataclass

import numpy as np

from bnlib.course.cache import Config, experiment
from bnlib.course.ch10.batched import HIDDEN, WIDTHS, BatchedMLP, evaluate_runs, he_std, per_run_loss
from bnlib.course.ch10.optimizer import Optimizer, steps_counter, train_runs
from bnlib.course.training import mnist, random_batches, small_model_settings

FAMILIES = ("no BN", "BN", "BN, last at He")
TAIL = 100  # the final training loss is averaged over the last TAIL steps


@dataclass(frozen=True)
class InitSweep(Config):
    """Each family of ``FAMILIES`` at each multiple ``scales`` of He's standard deviation; plain SGD at ``lr``."""

    scales: tuple = (0.1, 0.3, 1.0, 3.0, 10.0)
    lr: float = 0.1
    steps: int = 500
    batch_size: int = 60
    seed: int = 0

    def __post_init__(self):
        if len(self.scales) < 4 or max(self.scales) / min(self.scales) < 100 or min(self.scales) <= 0:
            raise ValueError(f"scales must hold at least 4 positive multiples of He's scale spanning two orders of "
                             f"magnitude, got {self.scales!r}")
        if self.steps <= TAIL:
            raise ValueError(f"steps must exceed the {TAIL} over which the final training loss is averaged")


def initial_stds(family, scales):
    """(runs, layers): each weight's standard deviation, k sqrt(2 / fan_in) (the last at He's in the third family)."""
    he = [he_std(fan_in) for fan_in in WIDTHS[:-1]]
    return np.array([[k * s if layer < HIDDEN or family != "BN, last at He" else s for layer, s in enumerate(he)]
                     for k in scales])


def step_zero(model, images, labels, lr):
    """Karpathy's diagnostics on one batch, per run: the loss, and per hidden layer (runs, 3) the std of the
    activations (ReLU outputs) and of dL/d(activations); the update-to-data ratio lr std(g) / std(W) of each
    weight (runs, 4). The model's gradients are left set (callers zero them)."""
    keep = {}
    losses = per_run_loss(model(images, keep), labels)
    for activation in keep["activation"]:
        activation.retain_grad()
    losses.sum().backward()  # each run's loss depends on its own weights only
    runs, batch = model.runs, len(images)
    per_run_std = lambda t: t.detach().view(batch, runs, -1).transpose(0, 1).reshape(runs, -1).std(1).double().numpy()  # noqa: E731
    return {"loss": losses.detach().double().numpy(),
            "activation_std": np.stack([per_run_std(a) for a in keep["activation"]], axis=1),
            "activation_grad_std": np.stack([per_run_std(a.grad) for a in keep["activation"]], axis=1),
            "update_ratio": np.stack([(lr * w.grad.flatten(1).std(1) / w.detach().flatten(1).std(1)).double().numpy()
                                      for w in model.weights], axis=1)}


def sweep_family(family, config, report):
    """One family at every scale: step-0 diagnostics, training, the test accuracy and the final training loss."""
    images, labels = mnist(train=True)
    model = BatchedMLP(len(config.scales), batch_norm=family != "no BN")
    model.init_normal([config.seed] * len(config.scales), initial_stds(family, config.scales))
    batches = [batch for (batch,) in random_batches(len(images), config.batch_size, config.steps, config.seed)]
    with small_model_settings():
        found = step_zero(model, images[batches[0]], labels[batches[0]], config.lr)
    model.zero_grad(set_to_none=True)
    records = train_runs(model, images, labels, batches, [Optimizer(config.lr)] * model.runs, report)
    found["accuracy"] = evaluate_runs(model, *mnist(train=False))[0]
    found["final_loss"] = records["loss"][-TAIL:].mean(0)
    found["diverged"] = ~np.isfinite(records["loss"]).all(0)
    found["norm2"] = records["norm2"][[0, -1]]  # (start, end) x layer x run
    return found


@experiment("ch10_initialization", InitSweep)
def run_init_sweep(config, report=None, progress=True):
    """Every family at every scale (cached). Arrays over (family, scale, ...): ``loss`` at step 0,
    ``activation_std`` and ``activation_grad_std`` (family, scale, 3), ``update_ratio`` (family, scale, 4),
    ``accuracy``, ``final_loss``, ``diverged``; ``norm2`` (family, 2, 3, scale): the hidden weights' ||W||^2 at
    the start and at the end."""
    runs = len(config.scales)
    with steps_counter(len(FAMILIES) * runs * config.steps, "initial scales", report, progress) as count:
        families = [sweep_family(family, config, lambda n: count(n * runs)) for family in FAMILIES]
    return {key: np.stack([found[key] for found in families]) for key in families[0]}
