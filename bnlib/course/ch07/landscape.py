"""Why batch norm works: the internal-covariate-shift story against the smoother loss landscape.

Ioffe and Szegedy explained BN's speed-up by less "internal covariate shift": each layer's inputs keep
a steadier distribution. Santurkar, Tsipras, Ilyas and Madry (2018, "How does batch normalization
help optimization?") tested that story and found it wanting. Two of their experiments, small:

1. Noisy BN. Right after each BN layer, add noise that changes the distribution on purpose: at every
   step, for every unit j, draw a scale s_j = exp(U(-log a, log a)) and a shift c_j = U(-b, b) and
   output s_j BN(x)_j + c_j (non-unit variance, non-zero mean, redrawn each step). The next layer's
   input then moves far more than in a network without BN, yet the network trains about as well as
   with plain BN. (At test time the noise is off: s = 1, c = 0, its centre.)
2. The loss landscape. At checkpoints during training, take the gradient g on a batch and look along
   it: for step sizes eta, the loss L(w - eta g) and the gradient there. With BN the loss varies
   less (a smaller range over the step sizes) and the gradient changes less,
   ||grad L(w - eta g) - grad L(w)||: the gradient is more predictive, so larger steps are safe.

Which is why BN networks tolerate larger learning rates: we train with and without BN over a grid of
learning rates and report the largest one that still trains.
"""

import copy

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn
from torch.nn.utils import parameters_to_vector, vector_to_parameters
from tqdm.auto import tqdm

from bnlib.course.cache import cached
from bnlib.course.ch07.network import chapter_mlp
from bnlib.course.training import accuracy, mnist, random_batches, train_mlp
from bnlib.layers import BatchNorm1d

NOISY_CONFIG = {"variants": ("none", "batch", "noisy batch"), "steps": 1500, "batch_size": 60, "lr": 0.1,
                "seed": 0, "noise_scale": 2.0, "noise_shift": 1.0, "eval_every": 100, "units": 20}
LANDSCAPE_CONFIG = {"norms": ("none", "batch"), "steps": 1000, "batch_size": 60, "lr": 0.1, "seed": 0,
                    "probe_every": 50, "step_multipliers": (0.5, 1, 2, 4)}
MAX_LR_CONFIG = {"norms": ("none", "batch"), "lrs": (0.03, 0.1, 0.3, 1.0, 3.0, 10.0), "steps": 400,
                 "batch_size": 60, "seed": 0, "trains_if_accuracy_above": 0.9}


class NoisyBatchNorm1d(nn.Module):
    """BN followed, in training, by a random per-unit scale and shift redrawn at every forward pass:
    y_j = s_j BN(x)_j + c_j with log s_j ~ U(-log a, log a) and c_j ~ U(-b, b).

    The noise comes from torch's global generator, which ``chapter_mlp(seed=...)`` seeds: runs repeat."""

    def __init__(self, num_features, scale=2.0, shift=1.0):
        super().__init__()
        if scale < 1 or shift < 0:
            raise ValueError(f"need scale >= 1 and shift >= 0 (ranges of the noise), got {scale}, {shift}")
        self.norm = BatchNorm1d(num_features)
        self.scale, self.shift = scale, shift

    def forward(self, x):
        out = self.norm(x)
        if not self.training:
            return out
        units = out.shape[1]
        s = torch.exp((2 * torch.rand(units) - 1) * np.log(self.scale))  # s_j = exp(U(-log a, log a))
        c = (2 * torch.rand(units) - 1) * self.shift                      # c_j = U(-b, b)
        return out * s + c


def make_variant(variant, config=NOISY_CONFIG):
    """The network of ``variant``: a ``NORMS`` key, or "noisy batch" (BN followed by the noise)."""
    if variant == "noisy batch":
        return chapter_mlp(lambda units: NoisyBatchNorm1d(units, config["noise_scale"], config["noise_shift"]),
                           seed=config["seed"])
    return chapter_mlp(variant, seed=config["seed"])


def noisy_batch_norm(config=NOISY_CONFIG):
    """Train without BN, with BN, with noisy BN; test accuracy at checkpoints and, at every step, the
    batch mean and std of the input of the last ReLU for the first ``units`` units (cached)."""
    def compute():
        images, labels = mnist(train=True)
        test_images, test_labels = mnist(train=False)
        checkpoints = range(0, config["steps"] + 1, config["eval_every"])
        batches = random_batches(len(labels), config["batch_size"], config["steps"], config["seed"])
        result = {"checkpoints": np.array(checkpoints), "test_accuracy": [], "input_mean": [], "input_std": []}
        with tqdm(total=len(config["variants"]) * config["steps"], desc="noisy batch norm") as bar:
            for variant in config["variants"]:
                model = make_variant(variant, config)
                means, stds, scores = [], [], []

                def record(module, inputs):
                    if module.training:
                        unit_inputs = inputs[0][:, :config["units"]].detach()
                        means.append(unit_inputs.mean(0))
                        stds.append(unit_inputs.std(0))

                hook = model[-2].register_forward_pre_hook(record)  # model[-2]: the last ReLU
                train_mlp(model, images, labels, batches, config["lr"], progress=bar, checkpoints=checkpoints,
                          on_checkpoint=lambda step: scores.append(accuracy(model, test_images, test_labels)))
                hook.remove()
                result["test_accuracy"].append(scores)
                result["input_mean"].append(torch.stack(means).numpy())
                result["input_std"].append(torch.stack(stds).numpy())
        return result
    return cached("ch07_noisy_batch_norm", config, compute)


def distribution_movement(input_mean, input_std, skip=100):
    """How much a unit's input distribution moves from step to step: the std over steps of the batch
    mean, in units of the typical batch std, averaged over units (steps before ``skip`` left out)."""
    return float(np.mean(input_mean[skip:].std(0) / input_std[skip:].mean(0)))


def gradient_at(model, images, labels):
    """(loss, flat gradient) on one batch."""
    model.zero_grad()
    loss = nn.functional.cross_entropy(model(images), labels)
    loss.backward()
    return loss.item(), torch.cat([p.grad.flatten() for p in model.parameters()])


def probe_along_gradient(model, images, labels, step_sizes):
    """Move from w along -g (g the gradient on the batch): (max - min of L(w - eta g) over the step
    sizes, max over them of ||grad L(w - eta g) - g||). Works on a copy; ``model`` is untouched."""
    twin = copy.deepcopy(model).train()
    _, g = gradient_at(twin, images, labels)
    start = parameters_to_vector(twin.parameters()).detach()
    losses, changes = [], []
    for eta in step_sizes:
        with torch.no_grad():
            vector_to_parameters(start - eta * g, twin.parameters())
        loss, moved = gradient_at(twin, images, labels)
        losses.append(loss)
        changes.append((moved - g).norm().item())
    return max(losses) - min(losses), max(changes)


def loss_landscape(config=LANDSCAPE_CONFIG):
    """Loss range and gradient change along the gradient at checkpoints, with and without BN (cached);
    the probe batch is the next training batch, step sizes are ``lr`` times the multipliers."""
    def compute():
        images, labels = mnist(train=True)
        checkpoints = list(range(0, config["steps"], config["probe_every"]))
        batches = random_batches(len(labels), config["batch_size"], config["steps"], config["seed"])
        step_sizes = [config["lr"] * k for k in config["step_multipliers"]]
        loss_range, gradient_change = [], []
        with tqdm(total=len(config["norms"]) * config["steps"], desc="loss landscape") as bar:
            for norm in config["norms"]:
                model, probes = chapter_mlp(norm, seed=config["seed"]), []
                train_mlp(model, images, labels, batches, config["lr"], progress=bar, checkpoints=checkpoints,
                          on_checkpoint=lambda step: probes.append(
                              probe_along_gradient(model, images[batches[step][0]], labels[batches[step][0]],
                                                   step_sizes)))
                loss_range.append([p[0] for p in probes])
                gradient_change.append([p[1] for p in probes])
        return {"checkpoints": np.array(checkpoints), "loss_range": loss_range, "gradient_change": gradient_change}
    return cached("ch07_loss_landscape", config, compute)


def max_learning_rate(config=MAX_LR_CONFIG):
    """Test accuracy after ``steps`` steps for each norm and learning rate, (norms, lrs) (cached)."""
    def compute():
        images, labels = mnist(train=True)
        test_images, test_labels = mnist(train=False)
        batches = random_batches(len(labels), config["batch_size"], config["steps"], config["seed"])
        scores = np.zeros((len(config["norms"]), len(config["lrs"])))
        with tqdm(total=scores.size * config["steps"], desc="learning-rate grid") as bar:
            for i, norm in enumerate(config["norms"]):
                for j, lr in enumerate(config["lrs"]):
                    model = chapter_mlp(norm, seed=config["seed"])
                    train_mlp(model, images, labels, batches, lr, progress=bar)
                    scores[i, j] = accuracy(model, test_images, test_labels)
        return {"lrs": np.array(config["lrs"]), "test_accuracy": scores}
    return cached("ch07_max_learning_rate", config, compute)


def largest_trainable_lr(lrs, scores, threshold=MAX_LR_CONFIG["trains_if_accuracy_above"]):
    """The largest learning rate whose run reached ``threshold`` test accuracy (None if none did)."""
    good = [lr for lr, score in zip(lrs, scores) if score >= threshold]
    return max(good) if good else None


def noisy_figure():
    """Test accuracy over training (left) and, per network, one unit's input: batch mean +- batch std."""
    result, config = noisy_batch_norm(), NOISY_CONFIG
    figure = Figure(figsize=(13, 3.4))
    left, *bands = figure.subplots(1, 4, gridspec_kw={"width_ratios": [1.4, 1, 1, 1]})
    data = {"checkpoints": result["checkpoints"]}
    for k, (variant, ax) in enumerate(zip(config["variants"], bands)):
        mean, std = result["input_mean"][k][:, 0], result["input_std"][k][:, 0]
        left.plot(result["checkpoints"], 100 * result["test_accuracy"][k], color=f"C{k}", label=variant)
        ax.fill_between(np.arange(len(mean)), mean - std, mean + std, color=f"C{k}", alpha=0.3, lw=0)
        ax.plot(mean, color=f"C{k}", lw=0.6)
        movement = distribution_movement(result["input_mean"][k], result["input_std"][k])
        ax.set(ylim=(-3.5, 3.5), xlabel="training step", title=f"{variant}: movement {movement:.2f}")
        data[variant] = {"test_accuracy": result["test_accuracy"][k], "movement": movement}
    bands[0].set_ylabel("last ReLU's input, unit 0\n(batch mean ± batch std)")
    left.set(xlabel="training step", ylabel="test accuracy (%)", ylim=(80, 100), title="Accuracy")
    left.legend(fontsize=8)
    figure.tight_layout()
    return figure, data


def landscape_figure():
    """Loss range and gradient change along the gradient, over training, with and without BN."""
    result, config = loss_landscape(), LANDSCAPE_CONFIG
    figure = Figure(figsize=(10, 3.6))
    axes = figure.subplots(1, 2)
    for key, ax, label in zip(("loss_range", "gradient_change"), axes,
                              ("loss range along the gradient", r"max $\|\nabla L(w - \eta g) - g\|$")):
        for k, norm in enumerate(config["norms"]):
            ax.semilogy(result["checkpoints"], result[key][k], "o-", ms=3, label="with BN" if norm == "batch" else "no BN")
        ax.set(xlabel="training step", ylabel=label)
        ax.legend(fontsize=8)
    figure.suptitle(f"Step sizes {', '.join(str(k) for k in config['step_multipliers'])} x lr = {config['lr']}")
    figure.tight_layout()
    return figure, {key: result[key] for key in ("checkpoints", "loss_range", "gradient_change")}


def learning_rate_figure():
    """Test accuracy after a short run against the learning rate, with and without BN."""
    result, config = max_learning_rate(), MAX_LR_CONFIG
    figure = Figure(figsize=(5.5, 3.8))
    ax = figure.subplots()
    data = {"lrs": result["lrs"]}
    for k, norm in enumerate(config["norms"]):
        label = "with BN" if norm == "batch" else "no BN"
        ax.semilogx(result["lrs"], 100 * result["test_accuracy"][k], "o-", label=label)
        data[label] = {"test_accuracy": result["test_accuracy"][k],
                       "largest_trainable_lr": largest_trainable_lr(result["lrs"], result["test_accuracy"][k])}
    ax.axhline(100 * config["trains_if_accuracy_above"], color="gray", ls=":", label="trains (threshold)")
    ax.set(xlabel="learning rate", ylabel="test accuracy (%)", title=f"After {config['steps']} steps of SGD")
    ax.legend(fontsize=8)
    figure.tight_layout()
    return figure, data


FIGURES = {"ch07_noisy_batch_norm": noisy_figure, "ch07_loss_landscape": landscape_figure,
           "ch07_max_learning_rate": learning_rate_figure}
