"""Why batch norm works: the internal-covariate-shift story against the smoother loss landscape.

Ioffe and Szegedy explained BN's speed-up by less "internal covariate shift": each layer's inputs keep
a steadier distribution. Santurkar, Tsipras, Ilyas and Madry (2018, "How does batch normalization
help optimization?") tested that story and found it wanting. Three of their experiments, small:

1. Noisy BN (their section 2.1). Right after each BN layer, perturb every activation of every example with
   noise of non-zero mean and non-unit scale, from distributions redrawn at every step. The next layer's
   input then moves far more than in a network without BN, yet the network trains about as well as with
   plain BN. At test time the noise is off.
2. Internal covariate shift measured through the gradients (their section 2.2): how much a layer's weight
   gradient changes when the layers before it take their step, ``gradient_shift``.
3. The loss landscape (their section 3.1). At checkpoints during training, take the gradient g on a batch
   and look along it: for step sizes s, the loss L(w - s g) and the gradient there. With BN the loss
   varies less (a smaller range over the step sizes) and the gradient changes less,
   ||grad L(w - s g) - grad L(w)||: the gradient is more predictive, so larger steps are safe.

Whether BN networks then tolerate larger learning rates is the grid of ``learning_rate``.
"""

import copy
from dataclasses import dataclass

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn
from torch.nn.utils import parameters_to_vector, vector_to_parameters
from tqdm.auto import tqdm

from bnlib.course.cache import Config, experiment
from bnlib.course.ch07.network import chapter_mlp
from bnlib.course.training import accuracy, mnist, random_batches, train_mlp
from bnlib.layers import BatchNorm1d


@dataclass(frozen=True)
class NoisyRun(Config):
    """The noisy-BN experiment's settings: the networks (``variants``), their training, the ranges of the noise
    (``NoisyBatchNorm1d``'s scale, shift and spread), the steps between tests, the units whose input is recorded."""

    variants: tuple = ("none", "batch", "noisy batch")
    steps: int = 1500
    batch_size: int = 60
    lr: float = 0.1
    seed: int = 0
    noise_scale: float = 2.0
    noise_shift: float = 1.0
    noise_spread: float = 0.5
    eval_every: int = 100
    units: int = 20

    def __post_init__(self):
        if not 1 <= self.eval_every <= self.steps:
            raise ValueError(f"eval_every must be between 1 and steps ({self.steps}), got {self.eval_every}")


@dataclass(frozen=True)
class ProbedRun(Config):
    """Settings of a run probed along the way (``probed_training``): each of ``norms`` trained on the same
    batches, probed every ``probe_every`` steps."""

    norms: tuple = ("none", "batch")
    steps: int = 1000
    batch_size: int = 60
    lr: float = 0.1
    seed: int = 0
    probe_every: int = 25

    def __post_init__(self):
        if not 1 <= self.probe_every <= self.steps:
            raise ValueError(f"probe_every must be between 1 and steps ({self.steps}), got {self.probe_every}")


@dataclass(frozen=True)
class ShiftRun(ProbedRun):
    """The internal-covariate-shift experiment's settings: ``gradient_shift`` every ``probe_every`` steps."""


@dataclass(frozen=True)
class LandscapeRun(ProbedRun):
    """The loss-landscape experiment's settings: step sizes along the gradient are ``lr`` times the multipliers."""

    probe_every: int = 50
    step_multipliers: tuple = (0.5, 1, 2, 4)


NOISY_CONFIG = NoisyRun()
SHIFT_CONFIG = ShiftRun()
LANDSCAPE_CONFIG = LandscapeRun()


def uniform(*shape):
    """Independent draws from U(-1, 1), from torch's global generator (which ``chapter_mlp`` seeds)."""
    return 2 * torch.rand(*shape) - 1


class NoisyBatchNorm1d(nn.Module):
    """Batch norm, then (in training) noise on every activation of every example: Santurkar et al. 2018, 2.1.

    y_ij = m_ij BN(x)_ij + c_ij, with m_ij and c_ij drawn for each example i and unit j, from distributions
    whose centres are redrawn at every forward pass: m_ij ~ s_j U(1 - r, 1 + r) and c_ij ~ b_j + U(-r, r),
    log s_j ~ U(-log a, log a), b_j ~ U(-b, b). In eval mode the noise is off.
    """

    def __init__(self, num_features, scale=2.0, shift=1.0, spread=0.5):
        super().__init__()
        if scale < 1 or shift < 0 or not 0 <= spread < 1:
            raise ValueError(f"need scale >= 1, shift >= 0 and 0 <= spread < 1 (ranges of the noise); "
                             f"got {scale}, {shift}, {spread}")
        self.norm = BatchNorm1d(num_features)
        self.scale, self.shift, self.spread = scale, shift, spread

    def forward(self, x):
        x_hat = self.norm(x)
        if not self.training:
            return x_hat
        examples, units = x_hat.shape
        scale_centre = torch.exp(uniform(units) * np.log(self.scale))  # s_j, this step's
        shift_centre = uniform(units) * self.shift                       # b_j, this step's
        multiplier = scale_centre * (1 + self.spread * uniform(examples, units))  # m_ij, per activation
        offset = shift_centre + self.spread * uniform(examples, units)           # c_ij, per activation
        return multiplier * x_hat + offset


def make_variant(variant, config=NOISY_CONFIG):
    """The network of ``variant``: a ``NORMS`` key, or "noisy batch" (BN followed by the noise)."""
    if variant == "noisy batch":
        return chapter_mlp(lambda units: NoisyBatchNorm1d(units, config.noise_scale, config.noise_shift,
                                                          config.noise_spread), seed=config.seed)
    return chapter_mlp(variant, seed=config.seed)


@experiment("ch07_noisy_batch_norm", NoisyRun)
def noisy_batch_norm(config):
    """Train without BN, with BN, with noisy BN; test accuracy at checkpoints and, at every step, the
    batch mean and std of the input of the last ReLU for the first ``units`` units (cached)."""
    images, labels = mnist(train=True)
    test_images, test_labels = mnist(train=False)
    checkpoints = range(0, config.steps + 1, config.eval_every)
    batches = random_batches(len(labels), config.batch_size, config.steps, config.seed)
    result = {"checkpoints": np.array(checkpoints), "test_accuracy": [], "input_mean": [], "input_std": []}
    with tqdm(total=len(config.variants) * config.steps, desc="noisy batch norm") as bar:
        for variant in config.variants:
            model = make_variant(variant, config)
            means, stds, scores = [], [], []

            def record(module, inputs):
                if module.training:
                    unit_inputs = inputs[0][:, :config.units].detach()
                    means.append(unit_inputs.mean(0))
                    stds.append(unit_inputs.std(0))

            hook = model[-2].register_forward_pre_hook(record)  # model[-2]: the last ReLU
            train_mlp(model, images, labels, batches, config.lr, progress=bar, checkpoints=checkpoints,
                      on_checkpoint=lambda step: scores.append(accuracy(model, test_images, test_labels)))
            hook.remove()
            result["test_accuracy"].append(scores)
            result["input_mean"].append(torch.stack(means).numpy())
            result["input_std"].append(torch.stack(stds).numpy())
    return result


def distribution_movement(input_mean, input_std, skip=100):
    """How much a unit's input distribution moves from step to step: the std over steps of the batch
    mean, in units of the typical batch std, averaged over units (steps before ``skip`` left out)."""
    return float(np.mean(input_mean[skip:].std(0) / input_std[skip:].mean(0)))


def layer_parameters(model):
    """Santurkar et al.'s layers: each Linear with the normalization that follows it, as lists of parameters."""
    layers = []
    for module in model:
        if isinstance(module, nn.Linear):
            layers.append(list(module.parameters()))
        elif layers:
            layers[-1] += list(module.parameters())
    return layers


def weight_gradients(model, images, labels):
    """The gradient of the batch's mean cross-entropy with respect to each Linear layer's weight W_i."""
    model.zero_grad()
    nn.functional.cross_entropy(model(images), labels).backward()
    return [module.weight.grad.clone() for module in model if isinstance(module, nn.Linear)]


def gradient_shift(model, images, labels, lr):
    """Internal covariate shift as Santurkar et al. define it (2018, section 2.2), for layers 2..k on one batch.

    G_i is layer i's weight gradient with every layer at w_t, the gradient an SGD step applies to all layers
    at once; G'_i is the same gradient after layers 1..i-1 took their step w - lr G (layers i..k still at
    w_t). Returns ``(l2, cosine)``: ||G_i - G'_i|| and cos(G_i, G'_i), one per layer 2..k. Works on a copy.
    """
    twin = copy.deepcopy(model).train()
    before = weight_gradients(twin, images, labels)                       # G_i, every layer at w_t
    layers = layer_parameters(twin)
    start = [[p.detach().clone() for p in layer] for layer in layers]
    steps = [[-lr * p.grad for p in layer] for layer in layers]          # each layer's SGD step
    l2, cosine = [], []
    for i in range(1, len(layers)):
        with torch.no_grad():  # layers 1..i-1 have taken their step; layer i-1 joins them now
            for p, p0, step in zip(layers[i - 1], start[i - 1], steps[i - 1]):
                p.copy_(p0 + step)
        after = weight_gradients(twin, images, labels)[i]                # G'_i
        l2.append((before[i] - after).norm().item())
        cosine.append(nn.functional.cosine_similarity(before[i].flatten(), after.flatten(), dim=0).item())
    return l2, cosine


def probed_training(config, desc, probe):
    """Train the chapter's network once per normalization in ``config.norms`` (same weights and batches),
    calling ``probe(model, images, labels)`` on the batch of every ``probe_every``-th step before that step
    trains: ``(probed steps, per norm the list of probe results)``."""
    images, labels = mnist(train=True)
    probes = list(range(0, config.steps, config.probe_every))
    batches = random_batches(len(labels), config.batch_size, config.steps, config.seed)
    results = []
    with tqdm(total=len(config.norms) * config.steps, desc=desc) as bar:
        for norm in config.norms:
            model, measured = chapter_mlp(norm, seed=config.seed), []
            train_mlp(model, images, labels, batches, config.lr, progress=bar, checkpoints=probes,
                      on_checkpoint=lambda step: measured.append(
                          probe(model, images[batches[step][0]], labels[batches[step][0]])))
            results.append(measured)
    return np.array(probes), results


@experiment("ch07_internal_covariate_shift", ShiftRun)
def internal_covariate_shift(config):
    """``gradient_shift`` every ``probe_every`` steps of training, without and with BN (cached): ``l2`` and
    ``cosine`` of shape (norms, probes, layers 2..k), measured on the batch each probed step trains on."""
    probes, measured = probed_training(config, "gradient shift", lambda model, images, labels: gradient_shift(
        model, images, labels, config.lr))
    return {"checkpoints": probes, "l2": np.array([[m[0] for m in run] for run in measured]),
            "cosine": np.array([[m[1] for m in run] for run in measured])}


def gradient_at(model, images, labels):
    """(loss, flat gradient) on one batch."""
    model.zero_grad()
    loss = nn.functional.cross_entropy(model(images), labels)
    loss.backward()
    return loss.item(), torch.cat([p.grad.flatten() for p in model.parameters()])


def probe_along_gradient(model, images, labels, step_sizes):
    """Move from w along -g, g the gradient on the batch, by the step sizes s: returns (the loss range
    max_s L(w - s g) - min_s L(w - s g), the gradient change max_s ||grad L(w - s g) - g||, the effective
    beta-smoothness max_s ||grad L(w - s g) - g|| / ||s g|| (Santurkar et al.: the gradient's change per
    distance moved), ||g||). The distance moved is s ||g||: it differs between networks whose gradients
    differ in size. ``model`` is left untouched."""
    twin = copy.deepcopy(model).train()
    _, g = gradient_at(twin, images, labels)
    w = parameters_to_vector(twin.parameters()).detach()
    losses, changes, per_distance = [], [], []
    for s in step_sizes:
        with torch.no_grad():
            vector_to_parameters(w - s * g, twin.parameters())  # one step of size s along -g
        loss, gradient_there = gradient_at(twin, images, labels)
        losses.append(loss)
        changes.append((gradient_there - g).norm().item())
        per_distance.append(changes[-1] / (s * g.norm().item()))  # distance moved: ||s g||
    return max(losses) - min(losses), max(changes), max(per_distance), g.norm().item()


@experiment("ch07_loss_landscape", LandscapeRun)
def loss_landscape(config):
    """Loss range, gradient change, effective beta-smoothness and ||g|| along the gradient at checkpoints,
    with and without BN (cached); the probe batch is the next training batch, step sizes are ``lr`` times
    the multipliers."""
    step_sizes = [config.lr * k for k in config.step_multipliers]
    probes, measured = probed_training(config, "loss landscape", lambda model, images, labels: probe_along_gradient(
        model, images, labels, step_sizes))
    return {"checkpoints": probes, "loss_range": [[p[0] for p in run] for run in measured],
            "gradient_change": [[p[1] for p in run] for run in measured],
            "effective_smoothness": [[p[2] for p in run] for run in measured],
            "gradient_norm": [[p[3] for p in run] for run in measured]}


def noisy_figure():
    """Test accuracy over training (left) and, per network, one unit's input: batch mean +- batch std."""
    result, config = noisy_batch_norm(), NOISY_CONFIG
    figure = Figure(figsize=(8.4, 6.4))
    left, *bands = figure.subplots(2, 2).ravel()
    data = {"checkpoints": result["checkpoints"]}
    for k, (variant, ax) in enumerate(zip(config.variants, bands)):
        mean, std = result["input_mean"][k][:, 0], result["input_std"][k][:, 0]
        left.plot(result["checkpoints"], 100 * result["test_accuracy"][k], color=f"C{k}", label=variant)
        ax.fill_between(np.arange(len(mean)), mean - std, mean + std, color=f"C{k}", alpha=0.3, lw=0)
        ax.plot(mean, color=f"C{k}", lw=0.6)
        movement = distribution_movement(result["input_mean"][k], result["input_std"][k])
        ax.set(ylim=(-3.5, 3.5), xlabel="training step", title=f"{variant}: movement {movement:.2f}")
        data[variant] = {"test_accuracy": result["test_accuracy"][k], "movement": movement}
    for ax in bands:
        ax.set_ylabel("last ReLU's input, unit 0\n(batch mean ± batch std)")
    left.set(xlabel="training step", ylabel="test accuracy (%)", ylim=(80, 100), title="Accuracy")
    left.legend()
    figure.tight_layout()
    return figure, data


def landscape_figure():
    """Loss range and gradient change along the gradient, over training, with and without BN."""
    result, config = loss_landscape(), LANDSCAPE_CONFIG
    figure = Figure(figsize=(8.4, 7))
    grid = figure.add_gridspec(2, 2)
    axes = [figure.add_subplot(grid[0, 0]), figure.add_subplot(grid[0, 1]), figure.add_subplot(grid[1, :])]
    labels = (("loss range", r"$\max_s L(w - s g) - \min_s L(w - s g)$"),
              ("gradient change", r"$\max_s \|\nabla L(w - s g) - \nabla L(w)\|$"),
              ("gradient change per distance", r"$\max_s \|\nabla L(w - s g) - \nabla L(w)\| / \|s g\|$"))
    keys = ("loss_range", "gradient_change", "effective_smoothness")
    for key, ax, label in zip(keys, axes, labels):
        for k, norm in enumerate(config.norms):
            ax.semilogy(result["checkpoints"], result[key][k], "o-", ms=3, label="with BN" if norm == "batch" else "no BN")
        ax.set(xlabel="training step", ylabel=label[0], title=label[1])
        ax.legend()
    multipliers = ", ".join(f"{k:g}" for k in config.step_multipliers)
    figure.suptitle(f"Along the gradient g of a batch:\nstep sizes s = {multipliers} x lr (lr = {config.lr:g})")
    figure.tight_layout()
    return figure, {key: result[key] for key in ("checkpoints", *keys, "gradient_norm")}


def shift_figure():
    """Santurkar et al.'s internal covariate shift per layer, without and with BN: median and quartiles over
    the probed steps of the cosine between G and G' (left) and of ||G - G'|| (right)."""
    result, config = internal_covariate_shift(), SHIFT_CONFIG
    layers = np.arange(2, result["cosine"].shape[2] + 2)
    figure = Figure(figsize=(8.4, 4.2))
    data = {"layers": layers}
    for ax, key, label in zip(figure.subplots(1, 2), ("cosine", "l2"),
                              (r"$\cos(G_i, G'_i)$ (1: no shift)", r"$\|G_i - G'_i\|$ (0: no shift)")):
        for k, norm in enumerate(config.norms):
            low, median, high = np.percentile(result[key][k], (25, 50, 75), axis=0)
            name = "with BN" if norm == "batch" else "no BN"
            ax.errorbar(layers + 0.1 * (2 * k - 1), median, yerr=(median - low, high - median), fmt="o", capsize=4,
                        label=f"{name} (median, quartiles)")
            data.setdefault(name, {})[key] = median
        ax.set(xticks=layers, xticklabels=[f"layer {i}" + ("\n(output)" if i == layers[-1] else "") for i in layers],
               ylabel=label)
    figure.axes[0].legend(loc="lower left")  # one legend for both panels: on the right it would hide a bar
    figure.suptitle(f"Gradient change of layer i when layers 1..i-1 take their step\n(every {config.probe_every} "
                    f"of {config.steps} steps, lr {config.lr:g})")
    figure.tight_layout()
    return figure, data


FIGURES = {"ch07_noisy_batch_norm": noisy_figure, "ch07_internal_covariate_shift": shift_figure,
           "ch07_loss_landscape": landscape_figure}
