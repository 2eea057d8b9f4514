"""Batch norm at inference time: train versus eval mode, and where the inference statistics come from.

In training mode a BN layer normalizes with the batch's own mean and variance, so an example's output
depends on its batch companions (and a batch of one cannot be normalized at all). In eval mode it
uses the running statistics, a fixed per-channel affine map. This module trains a small MNIST network
with ``bnlib.BatchNorm1d`` (cached), measures what forgetting ``model.eval()`` costs, and recomputes
exact population statistics for trained weights (the paper's Algorithm 2).
"""

import copy
from dataclasses import dataclass

import numpy as np
import torch

from bnlib.course.cache import Config, experiment
from bnlib.course.models import paper_mlp
from bnlib.course.training import accuracy, consecutive_batches, mnist, random_batches, small_model_settings, train_mlp
from bnlib.running_stats import batch_norm_layers, recompute_population_statistics, replay_running_stats


@dataclass(frozen=True)
class MnistRun(Config):
    """The MNIST run's settings: the paper's sigmoid MLP, weights drawn from N(0, ``init_std``^2), trained by
    plain SGD for ``steps`` on random batches; ``momentum`` is its BN layers' running-average momentum (None:
    the cumulative average)."""

    steps: int = 3000
    batch_size: int = 60
    lr: float = 0.5
    init_std: float = 0.01
    momentum: float = 0.1
    seed: int = 0

    def __post_init__(self):
        if self.steps < 1:
            raise ValueError(f"steps must be at least 1, got {self.steps}")
        if self.batch_size < 2:
            raise ValueError(f"batch_size must be at least 2 for batch norm in training, got {self.batch_size}")
        if self.momentum is not None and not 0 <= self.momentum <= 1:
            raise ValueError(f"momentum must be between 0 and 1 (torch's convention: the weight of the new batch), "
                             f"or None for the cumulative average; got {self.momentum}")


RUN = MnistRun()
FORGOTTEN_EVAL_BATCH_SIZES = (2, 4, 8, 16, 32, 64, 256, 1000)
STATISTICS_MOMENTA = (0.1, 0.01, 0.001, 0.99)


@torch.no_grad()
def probabilities_with_companions(model, images, index, companions=7, draws=8, seed=0):
    """Class probabilities of example ``index`` fed in ``draws`` batches, each with ``companions``
    other random examples. Returns ``(train_mode, eval_mode)``, each of shape (draws, classes)."""
    generator = torch.Generator().manual_seed(seed)
    others = torch.cat([torch.arange(index), torch.arange(index + 1, len(images))])
    trained, evaluated = copy.deepcopy(model).train(), copy.deepcopy(model).eval()
    train_probs, eval_probs = [], []
    for _ in range(draws):
        picked = others[torch.randperm(len(others), generator=generator)[:companions]]
        batch = images[torch.cat([torch.tensor([index]), picked])]
        train_probs.append(trained(batch)[0].softmax(dim=0))
        eval_probs.append(evaluated(batch)[0].softmax(dim=0))
    return torch.stack(train_probs).numpy(), torch.stack(eval_probs).numpy()


def record_batch_statistics(layers):
    """Forward hooks that append each layer's batch mean and BIASED batch variance (float64, per channel)
    to lists; returns ``(means, variances, handles)`` with one list per layer. Remove the handles after."""
    means, variances, handles = [[] for _ in layers], [[] for _ in layers], []
    for i, layer in enumerate(layers):
        def hook(module, inputs, output, i=i):
            var, mean = torch.var_mean(inputs[0].detach().double(), dim=0, correction=0)
            means[i].append(mean)
            variances[i].append(var)
        handles.append(layer.register_forward_hook(hook))
    return means, variances, handles


def train_mnist_bn_mlp(steps, batch_size, lr, init_std, momentum, seed, progress=True):
    """The paper's sigmoid MLP with ``bnlib.BatchNorm1d``, trained by plain SGD on random MNIST batches.

    Returns ``(model, batch_means, batch_vars)``: the per-layer lists of arrays (steps, channels)
    hold every training batch's statistics, recorded by forward hooks.
    """
    from tqdm.auto import tqdm

    images, labels = mnist(train=True)
    torch.manual_seed(seed)
    model = paper_mlp(batch_norm=True, init_std=init_std)
    layers = batch_norm_layers(model)
    for layer in layers:
        layer.momentum = momentum
    means, variances, handles = record_batch_statistics(layers)
    with tqdm(total=steps, desc="training", disable=not progress) as bar:
        train_mlp(model, images, labels, random_batches(len(images), batch_size, steps, seed), lr, progress=bar)
    for handle in handles:
        handle.remove()
    stacked = [[torch.stack(values).numpy() for values in per_layer] for per_layer in (means, variances)]
    return model.eval(), stacked[0], stacked[1]


@experiment("ema_inference_mnist", MnistRun)
def mnist_run(config, progress=True):
    """The cached MNIST run, for a ``MnistRun`` (by default ``RUN``): trained weights, recorded batch
    statistics and test accuracies.

    Keys: ``batch_size``, ``state.<name>`` (the state dict), ``batch_means.<layer>`` and ``batch_vars.<layer>``
    (steps, channels), ``eval_accuracy``, ``forgotten_batch_sizes`` and ``forgotten_accuracy`` (test
    accuracy left in training mode, test batches of each size).
    """
    from tqdm.auto import tqdm

    model, means, variances = train_mnist_bn_mlp(config.steps, config.batch_size, config.lr, config.init_std,
                                                 config.momentum, config.seed, progress=progress)
    test_images, test_labels = mnist(train=False)
    with small_model_settings():
        forgotten = [accuracy(model, test_images, test_labels, consecutive_batches(len(test_images), size))
                     for size in tqdm(FORGOTTEN_EVAL_BATCH_SIZES, desc="eval forgotten", disable=not progress)]
        arrays = {"batch_size": config.batch_size, "eval_accuracy": accuracy(model, test_images, test_labels),
                  "forgotten_batch_sizes": np.array(FORGOTTEN_EVAL_BATCH_SIZES),
                  "forgotten_accuracy": np.array(forgotten)}
    arrays.update({f"state.{name}": value.numpy() for name, value in model.state_dict().items()})
    arrays.update({f"batch_means.{i}": value for i, value in enumerate(means)})
    arrays.update({f"batch_vars.{i}": value for i, value in enumerate(variances)})
    return arrays


def model_from_run(run):
    """The trained network of ``mnist_run()``, in eval mode."""
    model = paper_mlp(batch_norm=True)
    state = {name[len("state."):]: torch.from_numpy(np.array(value))
             for name, value in run.items() if name.startswith("state.")}
    model.load_state_dict(state)
    return model.eval()


def replayed_running_statistics(run, momentum):
    """Each BN layer's ``(running_mean, running_var)`` at the end of the run, had it used ``momentum``
    (replayed from the recorded batch statistics, ``bnlib.running_stats.replay_running_stats``)."""
    layers = sum(name.startswith("batch_means.") for name in run)
    return [tuple(stat[-1] for stat in replay_running_stats(run[f"batch_means.{i}"], run[f"batch_vars.{i}"],
                                                            int(run["batch_size"]), momentum))
            for i in range(layers)]


def with_running_statistics(model, statistics):
    """A copy of ``model`` (eval mode) whose BN layers hold the given ``(running_mean, running_var)`` pairs."""
    model = copy.deepcopy(model).eval()
    layers = batch_norm_layers(model)
    if len(layers) != len(statistics):
        raise ValueError(f"{len(statistics)} pairs of statistics for {len(layers)} batch norm layers")
    for layer, (mean, var) in zip(layers, statistics):
        layer.running_mean.copy_(torch.as_tensor(mean))
        layer.running_var.copy_(torch.as_tensor(var))
    return model


def statistics_gap(statistics, reference):
    """How far running means sit from reference ones, in reference standard deviations, averaged over
    layers and channels: mean |mean - mean_ref| / sqrt(var_ref)."""
    gaps = [np.abs(np.asarray(mean) - np.asarray(ref_mean)) / np.sqrt(np.asarray(ref_var))
            for (mean, _), (ref_mean, ref_var) in zip(statistics, reference)]
    return float(np.mean(np.concatenate(gaps)))


def accuracy_by_statistics(run, train_images, test_images, test_labels):
    """Test accuracy of the run's trained weights under several choices of inference statistics.

    Returns ``{name: (accuracy, gap)}`` where ``gap`` is ``statistics_gap`` to the recomputed
    population statistics (a pass over ``train_images`` in the run's batch size, weights frozen).
    """
    model = model_from_run(run)
    with small_model_settings():
        population = recompute_population_statistics(copy.deepcopy(model), train_images.split(int(run["batch_size"])))
        reference = [(layer.running_mean.numpy(), layer.running_var.numpy()) for layer in batch_norm_layers(population)]
        choices = {f"EMA, momentum {m}": replayed_running_statistics(run, m) for m in STATISTICS_MOMENTA}
        choices["cumulative over training (momentum=None)"] = replayed_running_statistics(run, None)
        choices["recomputed, weights frozen (Algorithm 2)"] = reference
        return {name: (accuracy(with_running_statistics(model, statistics), test_images, test_labels),
                       statistics_gap(statistics, reference))
                for name, statistics in choices.items()}


def train_vs_eval(index=0, companions=7, draws=12):
    """(a) test accuracy left in training mode against the test batch size, with the eval-mode accuracy;
    (b) one test example's probability of its true class in ``draws`` batches of random companions."""
    from matplotlib.figure import Figure

    run = mnist_run()
    test_images, test_labels = mnist(train=False)
    train_probs, eval_probs = probabilities_with_companions(model_from_run(run), test_images, index, companions, draws)
    label = int(test_labels[index])
    figure = Figure(figsize=(8.4, 4.2), layout="constrained")
    sizes_ax, example_ax = figure.subplots(1, 2)
    sizes_ax.semilogx(run["forgotten_batch_sizes"], 100 * run["forgotten_accuracy"], "o-", base=2,
                      label="model.eval() forgotten (train mode)")
    sizes_ax.axhline(100 * float(run["eval_accuracy"]), color="black", linestyle="--", label="eval mode")
    sizes_ax.set(xlabel="test batch size", ylabel="test accuracy (%)", title="(a) the forgotten\nmodel.eval()")
    sizes_ax.legend()
    draw_numbers = np.arange(1, draws + 1)
    example_ax.plot(draw_numbers, train_probs[:, label], "o-", label="train mode")
    example_ax.plot(draw_numbers, eval_probs[:, label], "s--", color="black", label="eval mode")
    example_ax.set(xlabel=f"draw of {companions} batch companions", ylabel=f"P(true class {label})", ylim=(-0.05, 1.05),
                   title=f"(b) test example {index},\nsame input every time")
    example_ax.legend()
    data = {"batch_sizes": run["forgotten_batch_sizes"], "forgotten_accuracy": run["forgotten_accuracy"],
            "eval_accuracy": run["eval_accuracy"], "example": index, "label": label,
            "train_mode_probability": train_probs[:, label], "eval_mode_probability": eval_probs[:, label]}
    return figure, data


def inference_statistics():
    """Test accuracy of one trained network under each choice of inference statistics."""
    from matplotlib.figure import Figure

    results = accuracy_by_statistics(mnist_run(), mnist(train=True)[0], *mnist(train=False))
    names = list(results)
    accuracies = [100 * results[name][0] for name in names]
    figure = Figure(figsize=(8, 3.8), layout="constrained")
    ax = figure.subplots()
    bars = ax.barh(names, accuracies, color="tab:blue")
    ax.bar_label(bars, fmt="%.2f%%", padding=3)
    ax.invert_yaxis()
    ax.set(xlabel="test accuracy (%)", xlim=(min(accuracies) - 5, 100),
           title="Same weights, different inference statistics")
    return figure, {name: {"accuracy": acc, "gap_to_population": gap} for name, (acc, gap) in results.items()}


FIGURES = {
    "train_vs_eval": train_vs_eval,
    "inference_statistics": inference_statistics,
}
