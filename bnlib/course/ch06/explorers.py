"""Notebook 06's explorers: the momentum of the running statistics, and the batch size.

``momentum_explorer``: the running statistics of the paper's MNIST run, replayed for any momentum, against
the paper's population statistics (Algorithm 2).

Training is the same for every momentum: the BN network normalizes each batch with its own statistics,
and the running averages are only read at inference. So one training run (``run_paper_experiment``,
which records every step's batch mean and variance) serves every momentum: the slider replays the
running averages (``bnlib.running_stats.replay_running_stats``) and evaluates the network in eval mode with
them. Algorithm 2 runs the frozen network over the training set at each evaluated checkpoint
(``bnlib.course.ch06.population``, cached); its statistics, and everything else that does not depend on
the momentum (the first layer's products on the test images, the weights at the checkpoints), are
computed once, before the first draw.

``batch_size_explorer``: the paper's MNIST experiment, shorter, at the batch size you pick.

Batch norm estimates each unit's mean and variance from the mini-batch. With 60 examples the estimate
is good; with 2 or 4 it is so noisy that the normalization itself becomes noise, and the network trains
on a moving target. Each choice runs ``run_paper_experiment`` with fewer steps and caches it, so coming
back to a batch size is instant. A batch size not cached yet trains both networks (a few seconds to a
minute): the explorer says so at once and shows the progress bar under the control.
"""

import numpy as np
import torch
from ipywidgets import Dropdown, FloatLogSlider, IntSlider
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, MultipleLocator

from bnlib.course.ch06.paper import (SHORT_RUN, findings, inference_layers, inference_pass, run_paper_experiment,
                                     stack_network)
from bnlib.course.ch06.population import population_at_checkpoints
from bnlib.course.explorer import RENDER_DPI, Explorer
from bnlib.course.plots import COLORS, LABELS, STEP_TICKS, accuracy_curves, percentile_bands
from bnlib.course.training import small_model_settings
from bnlib.running_stats import replay_running_stats, unbiased_variance

LAYER = 2  # the last hidden layer, as in Figure 1
TRACE_EVERY = 50  # steps between the plotted points of the running averages
EARLY_STEP = 2_500  # the checkpoint the readout leads with: early in training, where a small momentum lags


class MomentumReplay:
    """Everything about the run that does not depend on the momentum, and ``replay(momentum, unit)``.

    The eval-mode accuracy is measured at every ``checkpoint_every``-th checkpoint (the ``picked`` ones),
    on every ``test_every``-th test image (2,000 of them: one draw stays near 0.2 s), with the running statistics or with Algorithm 2's
    (``population_mean``, ``population_var``, (K, 3, 100) at the picked checkpoints).
    """

    def __init__(self, result, test_images, test_labels, checkpoint_every=5, test_every=5):
        self.steps = result["steps"]
        self.every = int(self.steps[1] - self.steps[0])
        self.batch_mean, self.batch_var = np.asarray(result["batch_mean"]), np.asarray(result["batch_var"])
        self.batch_size = int(result["batch_size"])
        self.picked = np.arange(0, len(self.steps), checkpoint_every)  # the checkpoints evaluated on each draw
        self.network = stack_network(result["bn_parameters"][self.picked], batch_norm=True)
        self.first_products = test_images[::test_every] @ self.network["weights"][0]  # x W_1, per checkpoint
        self.test_labels = test_labels[::test_every]
        population = population_at_checkpoints(result, self.picked)
        self.population_mean, self.population_var = population["population_mean"], population["population_var"]
        self.population_accuracy = self.accuracy(self.population_mean, self.population_var)

    def accuracy(self, running_mean, running_var):
        """Eval-mode test accuracy at the picked checkpoints, normalizing with the given statistics (K, 3, 100)."""
        _, logits = inference_pass(self.first_products, inference_layers(self.network, running_mean, running_var))
        return (logits.argmax(2) == self.test_labels).to(torch.float64).mean(1).numpy()

    def running(self, momentum):
        """The running mean and variance (torch's, from 0 and 1) at the picked checkpoints, (K, 3, 100) each."""
        return replay_running_stats(self.batch_mean, self.batch_var, self.batch_size, momentum,
                                    self.every * int(self.picked[1] - self.picked[0]))

    def mean_error(self, running_mean):
        """|running mean - Algorithm 2's mean| in units of Algorithm 2's standard deviation, (K, 3, 100)."""
        return np.abs(running_mean - self.population_mean) / np.sqrt(self.population_var)

    def replay(self, momentum, unit):
        """Running mean and variance of ``unit`` every TRACE_EVERY steps; the running statistics and the
        eval accuracy with them at the picked checkpoints."""
        trace_mean, trace_var = replay_running_stats(self.batch_mean[:, LAYER, unit], self.batch_var[:, LAYER, unit],
                                                     self.batch_size, momentum, TRACE_EVERY)
        running_mean, running_var = self.running(momentum)
        return trace_mean, trace_var, running_mean, running_var, self.accuracy(running_mean, running_var)


def momentum_readout(replay, momentum, unit, running_mean, running_var, accuracy):
    """At EARLY_STEP first, a headline that both controls change: how far the running means are from
    Algorithm 2's (all units, and the chosen unit's), and the accuracy with each; then the same distance
    averaged over training, the final accuracies and the unit's statistics at the end."""
    picked_steps = replay.steps[replay.picked]
    at = min(int(np.searchsorted(picked_steps, EARLY_STEP)), len(picked_steps) - 1)  # the first picked from there
    ours, theirs = accuracy[at], replay.population_accuracy[at]
    error = replay.mean_error(running_mean).mean(axis=(1, 2))  # over the units of all three BN layers
    return "; ".join([
        (f"step {picked_steps[at]:,}: running means off by {error[at]:.2g} σ (unit {unit}: "
         f"{running_mean[at, LAYER, unit]:.3g} against {replay.population_mean[at, LAYER, unit]:.3g}), accuracy "
         f"{ours:.1%} against {theirs:.1%} with Algorithm 2's statistics ({100 * (ours - theirs):+.1f} points)"),
        f"over training: off by {error[1:].mean():.2g} σ on average",
        f"final accuracy {accuracy[-1]:.1%} against {replay.population_accuracy[-1]:.1%}",
        (f"unit {unit} at the end: running mean {running_mean[-1, LAYER, unit]:.3g}, variance "
         f"{running_var[-1, LAYER, unit]:.3g}; Algorithm 2 {replay.population_mean[-1, LAYER, unit]:.3g}, "
         f"{replay.population_var[-1, LAYER, unit]:.3g}")])


def momentum_explorer(result=None, momentum=0.1, unit=0):
    """Log slider for momentum (0.001 to 1), slider for the unit; running vs Algorithm 2 statistics, accuracy.

    The axes do not depend on the momentum (the accuracy axis only moves in steps of 0.05), so moving it
    redraws only the curves (blitting): the figure without them is drawn once per unit and kept as a
    background; each draw restores it and draws the curves, the legends and the title on top.
    """
    from bnlib.course.data import load_mnist

    result = run_paper_experiment() if result is None else result
    with small_model_settings():
        replay = MomentumReplay(result, *load_mnist(train=False))
    steps, picked_steps = replay.steps, replay.steps[replay.picked]
    trace_steps = np.arange(0, len(replay.batch_mean) + 1, TRACE_EVERY)
    figure = Figure(figsize=(8.2, 3.6), dpi=RENDER_DPI)  # under Figure 1 on the app's first screen
    canvas = FigureCanvasAgg(figure)
    figure.subplots_adjust(left=0.085, right=0.98, bottom=0.13, top=0.91, wspace=0.3, hspace=0.14)
    grid = figure.add_gridspec(2, 2)
    axes = [figure.add_subplot(grid[0, 0]), figure.add_subplot(grid[1, 0]), figure.add_subplot(grid[:, 1])]
    axes[0].sharex(axes[1])
    axes[0].tick_params(labelbottom=False)
    running_lines, population_lines = [], []
    for ax, name in zip(axes[:2], ("mean", "variance")):
        running_lines.append(ax.plot([], [], color="tab:red", label="running")[0])
        population_lines.append(ax.plot([], [], color="black", linestyle=":", marker=".", markersize=4,
                                        label="Algorithm 2")[0])
        ax.set_ylabel(f"{name} of BN input", fontsize=9)
        ax.set_xlim(0, steps[-1])
    axes[0].legend(loc="upper right", fontsize=8)
    accuracy_line = axes[2].plot(picked_steps, np.zeros(len(picked_steps)), color="tab:red", marker="o",
                                 markersize=3, label="running statistics")[0]
    population_accuracy_line = axes[2].plot(picked_steps, replay.population_accuracy, color="black", linestyle=":",
                                            marker=".", label="Algorithm 2")[0]
    axes[2].axvline(EARLY_STEP, color="0.5", linewidth=0.8, zorder=1)  # under the curves, drawn or blitted
    axes[2].set_ylabel(f"eval-mode accuracy, {len(replay.test_labels):,} test images", fontsize=9)
    axes[2].legend(loc="lower right", fontsize=8)
    for ax in axes:  # few ticks and labels: rendering text is most of the time of a redraw
        ax.xaxis.set_major_locator(MultipleLocator(25_000))
        ax.xaxis.set_major_formatter(STEP_TICKS)
        ax.yaxis.set_major_locator(MaxNLocator(4))
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
    axes[1].set_xlabel("training step (one run)", fontsize=9)
    axes[2].set_xlabel("training step", fontsize=9)
    # Redrawn on every move, in this order (the population curves and the legends stay on top of the red curves).
    on_top = [*running_lines, *population_lines, accuracy_line, population_accuracy_line, axes[0].get_legend(),
              axes[2].get_legend(), axes[2].title]
    for artist in on_top:
        artist.set_animated(True)  # left out of canvas.draw(), hence out of the background
    background = {"for": None, "pixels": None}  # the figure without the artists on top, for (unit, accuracy floor)

    def draw_background(unit, accuracy_floor):
        batch_values = (replay.batch_mean, unbiased_variance(replay.batch_var, replay.batch_size))
        populations = (replay.population_mean, replay.population_var)
        for ax, population_line, batch, population, start in zip(
                axes[:2], population_lines, batch_values, populations, (0.0, 1.0)):
            population_line.set_data(picked_steps, population[:, LAYER, unit])
            # A running average stays between its start and the batch values (of which 1% are clipped).
            low, high = np.percentile(batch[:, LAYER, unit], [0.5, 99.5])
            low, high = min(low, start), max(high, start)
            margin = 0.1 * (high - low) + 1e-6
            ax.set_ylim(low - margin, high + margin)
        axes[0].set_title(f"last hidden layer, unit {unit}", fontsize=10)
        axes[2].set_ylim(accuracy_floor, 1.0)
        canvas.draw()
        return canvas.copy_from_bbox(figure.bbox)

    def draw(momentum, unit):
        with small_model_settings():
            trace_mean, trace_var, running_mean, running_var, accuracy = replay.replay(momentum, unit)
        lowest = min(accuracy[1:].min(), replay.population_accuracy[1:].min())  # step 0 is chance for any momentum
        accuracy_floor = max(0.0, np.floor(20 * (lowest - 0.005)) / 20)  # in steps of 0.05: it rarely moves
        if background["for"] != (unit, accuracy_floor):
            background.update({"for": (unit, accuracy_floor), "pixels": draw_background(unit, accuracy_floor)})
        canvas.restore_region(background["pixels"])
        running_lines[0].set_data(trace_steps, trace_mean)
        running_lines[1].set_data(trace_steps, trace_var)
        accuracy_line.set_ydata(accuracy)
        axes[2].set_title(f"momentum {momentum:.3g}", fontsize=10)
        for artist in on_top:
            figure.draw_artist(artist)
        figure.stale = False  # the canvas shows the figure as it now is: render_png encodes it without drawing
        return figure, momentum_readout(replay, momentum, unit, running_mean, running_var, accuracy)

    controls = {
        "momentum": FloatLogSlider(value=momentum, base=10, min=-3, max=0, step=0.05, description="momentum",
                                   readout_format=".3g", continuous_update=False),
        "unit": IntSlider(value=unit, min=0, max=99, description="unit", continuous_update=False),
    }
    explorer = Explorer(controls, draw)
    explorer.replay = replay
    return explorer


BATCH_SIZES = (2, 4, 8, 16, 32, 60, 128, 256)


def short_run_figure(result, facts):
    """Figure 1's three panels, small: both networks' accuracy, then a typical unit's percentile bands each."""
    steps, accuracy, percentiles = result["steps"], result["accuracy"], result["percentiles"]
    figure = Figure(figsize=(8.2, 3.1))
    figure.subplots_adjust(left=0.07, right=0.99, bottom=0.15, top=0.84, wspace=0.32)
    axes = figure.subplots(1, 3)
    axes[2].sharey(axes[1])  # one scale for both networks' bands, as in Figure 1
    accuracy_curves(axes[0], steps, accuracy)
    # A short run can leave a network near chance (0.1) for most of it: show every point of both curves.
    axes[0].set_ylim(max(0.0, float(accuracy.min()) - 0.05), 1.0)
    axes[0].legend(loc="lower right", fontsize=8)
    for net, (ax, name) in enumerate(zip(axes[1:], ("baseline", "batch norm"))):
        unit = facts["typical_unit"][name]
        percentile_bands(ax, steps, *percentiles[:, net, :, unit].T, color=COLORS[name])
        ax.set_title(f"{LABELS[name]}, unit {unit}: drift {facts['drift'][name]:.2f}", fontsize=9)
        ax.grid(alpha=0.3)
    axes[1].set_ylabel("sigmoid input, p15/50/85", fontsize=9)
    for ax in axes:
        ax.tick_params(labelsize=8)
        ax.xaxis.label.set_fontsize(9)
    axes[0].yaxis.label.set_fontsize(9)
    return figure


def batch_size_explorer(batch_size=60, run=SHORT_RUN):
    """Pick a batch size; see both networks' accuracy and a typical unit's sigmoid-input percentiles, after
    ``run`` (a ``PaperRun``, 3,000 steps by default) at that batch size."""
    steps = run.steps

    def pending(batch_size):
        if not run_paper_experiment.is_cached(run.replace(batch_size=batch_size)):
            return f"training both networks at batch size {batch_size} for {steps:,} steps ..."
        return None

    def draw(batch_size):
        result = run_paper_experiment(run.replace(batch_size=batch_size))
        facts = findings(result)
        figure = short_run_figure(result, facts)
        figure.suptitle(f"batch size {batch_size}, {steps:,} steps", fontsize=10)
        final = facts["final_accuracy"]
        text = (f"BN leads by {100 * (final['batch norm'] - final['baseline']):.1f} points: test accuracy "
                f"{final['batch norm']:.2%} with BN, {final['baseline']:.2%} without; drift of the sigmoid inputs "
                f"{facts['drift']['batch norm']:.2f} with BN, {facts['drift']['baseline']:.2f} without "
                f"(batch size {batch_size}, {steps:,} steps)")
        return figure, text

    controls = {"batch_size": Dropdown(options=BATCH_SIZES, value=batch_size, description="batch size")}
    return Explorer(controls, draw, pending)
