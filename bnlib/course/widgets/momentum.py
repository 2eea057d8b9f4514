"""Momentum explorer: the running statistics of the paper's MNIST run, replayed for any momentum.

Training is the same for every momentum: the BN network normalizes each batch with its own statistics,
and the running averages are only read at inference. So one training run (``run_paper_experiment``,
which records every step's batch mean and variance) serves every momentum: the slider replays the
running averages (``bnlib.running_stats.replay_running_stats``) and evaluates the network in eval mode with
them. Everything that does not depend on the momentum (the first layer's products on the test images,
the weights at the checkpoints, the population statistics) is computed once, before the first draw.
"""

import numpy as np
import torch
from ipywidgets import FloatLogSlider, IntSlider, Layout
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, MultipleLocator

from bnlib.course.ch06.paper import inference_layers, inference_pass, run_paper_experiment, stack_network
from bnlib.course.plots import STEP_TICKS
from bnlib.course.training import small_model_settings
from bnlib.course.widgets.explorer import Explorer
from bnlib.running_stats import population_statistics, replay_running_stats, unbiased_variance

LAYER = 2  # the last hidden layer, as in Figure 1
TRACE_EVERY = 50  # steps between the plotted points of the running averages


class MomentumReplay:
    """Everything about the run that does not depend on the momentum, and ``replay(momentum, unit)``.

    The eval-mode accuracy is measured at every ``checkpoint_every``-th checkpoint on the first
    ``test_examples`` test images, so that one replay stays well under 100 ms.
    """

    def __init__(self, result, test_images, test_labels, checkpoint_every=5, test_examples=1000):
        self.steps = result["steps"]
        self.every = int(self.steps[1] - self.steps[0])
        self.batch_mean, self.batch_var = np.asarray(result["batch_mean"]), np.asarray(result["batch_var"])
        self.batch_size = int(result["batch_size"])
        self.picked = np.arange(0, len(self.steps), checkpoint_every)  # the checkpoints evaluated on each draw
        self.network = stack_network(result["bn_parameters"][self.picked], batch_norm=True)
        self.first_products = test_images[:test_examples] @ self.network["weights"][0]  # x W_1, per checkpoint
        self.test_labels = test_labels[:test_examples]
        # Algorithm 2 over the batches between consecutive checkpoints: E[mu_B], m/(m-1) E[sigma_B^2].
        blocks = lambda values: values.reshape(-1, self.every, *values.shape[1:]).swapaxes(0, 1)  # noqa: E731
        self.population_mean, self.population_var = population_statistics(
            blocks(self.batch_mean), blocks(np.asarray(result["batch_var"])), int(result["batch_size"]))
        after_start = self.picked[1:]  # no batches before step 0, hence no population statistics there
        self.population_accuracy = self.accuracy(self.population_mean[after_start - 1],
                                                 self.population_var[after_start - 1], rows=slice(1, None))

    def accuracy(self, running_mean, running_var, rows=slice(None)):
        """Eval-mode test accuracy at the picked checkpoints ``rows``, normalizing with the given statistics."""
        network = {key: [value[rows] for value in values] for key, values in self.network.items()}
        _, logits = inference_pass(self.first_products[rows], inference_layers(network, running_mean, running_var))
        return (logits.argmax(2) == self.test_labels).to(torch.float64).mean(1).numpy()

    def replay(self, momentum, unit):
        """Running mean and variance of ``unit`` every TRACE_EVERY steps; eval accuracy at the picked checkpoints."""
        trace_mean, trace_var = replay_running_stats(self.batch_mean[:, LAYER, unit], self.batch_var[:, LAYER, unit],
                                                     self.batch_size, momentum, TRACE_EVERY)
        running_mean, running_var = (stat[self.picked] for stat in replay_running_stats(
            self.batch_mean, self.batch_var, self.batch_size, momentum, self.every))
        return trace_mean, trace_var, self.accuracy(running_mean, running_var)


def momentum_explorer(result=None, momentum=0.1, unit=0):
    """Log slider for momentum (0.001 to 1), slider for the unit; running vs population statistics, accuracy.

    The axes do not depend on the momentum (the accuracy axis only moves in steps of 0.1), so moving it
    redraws only the curves (blitting): the figure without them is drawn once per unit and kept as a
    background; each draw restores it and draws the curves, the legends and the momentum's title on top.
    """
    from bnlib.course.data import load_mnist

    result = run_paper_experiment() if result is None else result
    with small_model_settings():
        replay = MomentumReplay(result, *load_mnist(train=False))
    steps = replay.steps
    trace_steps = np.arange(0, len(replay.batch_mean) + 1, TRACE_EVERY)
    populations = (replay.population_mean, replay.population_var)
    figure = Figure(figsize=(13, 3.6), dpi=80)
    canvas = FigureCanvasAgg(figure)
    figure.subplots_adjust(left=0.06, right=0.99, bottom=0.15, top=0.9, wspace=0.3)  # fixed: faster redraws
    axes = figure.subplots(1, 3)
    running_lines, population_lines = [], []
    for ax, name in zip(axes[:2], ("mean", "variance")):
        running_lines.append(ax.plot([], [], color="tab:red", label="running")[0])
        population_lines.append(ax.plot([], [], color="black", linestyle=":", marker=".", markersize=3,
                                        label="population (Alg. 2)")[0])
        ax.set_ylabel(f"{name} of u W (BN input)")
        ax.set_xlim(0, steps[-1])
    axes[0].legend(loc="upper right", fontsize=8)
    accuracy_line = axes[2].plot(steps[replay.picked], np.zeros(len(replay.picked)), color="tab:red", marker="o",
                                 markersize=3, label="running statistics")[0]
    population_accuracy_line = axes[2].plot(steps[replay.picked[1:]], replay.population_accuracy, color="black",
                                            linestyle=":", label="population statistics")[0]
    axes[2].set_ylabel(f"accuracy, {len(replay.test_labels)} test images")
    axes[2].legend(loc="lower right", fontsize=8)
    for ax in axes:  # few ticks and labels: rendering text is most of the time of a redraw
        ax.xaxis.set_major_locator(MultipleLocator(25_000))
        ax.xaxis.set_major_formatter(STEP_TICKS)
        ax.yaxis.set_major_locator(MaxNLocator(4))
        ax.grid(alpha=0.3)
    axes[1].set_xlabel("training step (one run, replayed for every momentum)")
    # Redrawn on every move, in this order (the population curves and the legends stay on top of the red curves).
    on_top = [*running_lines, *population_lines, accuracy_line, population_accuracy_line,
              axes[0].get_legend(), axes[2].get_legend(), axes[2].title]
    for artist in on_top:
        artist.set_animated(True)  # left out of canvas.draw(), hence out of the background
    background = {"for": None, "pixels": None}  # the figure without the artists on top, for (unit, accuracy floor)

    def draw_background(unit, accuracy_floor):
        batch_values = (replay.batch_mean, unbiased_variance(replay.batch_var, replay.batch_size))
        for ax, population_line, batch, population, start in zip(
                axes[:2], population_lines, batch_values, populations, (0.0, 1.0)):
            population_line.set_data(steps[1:], population[:, LAYER, unit])
            # A running average stays between its start and the batch values (of which 1% are clipped).
            low, high = np.percentile(batch[:, LAYER, unit], [0.5, 99.5])
            low, high = min(low, start), max(high, start)
            margin = 0.1 * (high - low) + 1e-6
            ax.set_ylim(low - margin, high + margin)
            ax.set_title(f"last hidden layer, unit {unit}", fontsize=10)
        axes[2].set_ylim(accuracy_floor, 1.0)
        canvas.draw()
        return canvas.copy_from_bbox(figure.bbox)

    def draw(momentum, unit):
        with small_model_settings():
            trace_mean, trace_var, accuracy = replay.replay(momentum, unit)
        lowest = min(accuracy[1:].min(), replay.population_accuracy.min())  # step 0 is chance for any momentum
        accuracy_floor = max(0.0, np.floor(10 * (lowest - 0.01)) / 10)  # in steps of 0.1: it rarely moves
        if background["for"] != (unit, accuracy_floor):
            background.update({"for": (unit, accuracy_floor), "pixels": draw_background(unit, accuracy_floor)})
        canvas.restore_region(background["pixels"])
        running_lines[0].set_data(trace_steps, trace_mean)
        running_lines[1].set_data(trace_steps, trace_var)
        accuracy_line.set_ydata(accuracy)
        axes[2].set_title(f"eval mode, momentum {momentum:.3g}", fontsize=10)
        for artist in on_top:
            figure.draw_artist(artist)
        figure.stale = False  # the canvas shows the figure as it now is: render_png encodes it without drawing
        text = (f"momentum {momentum:.3g}, unit {unit} of the last hidden layer: at the end running mean "
                f"{trace_mean[-1]:.3g}, variance {trace_var[-1]:.3g}; population mean "
                f"{replay.population_mean[-1, LAYER, unit]:.3g}, variance {replay.population_var[-1, LAYER, unit]:.3g}. "
                f"Final eval-mode accuracy {accuracy[-1]:.2%} with the running "
                f"statistics, {replay.population_accuracy[-1]:.2%} with population statistics. Training is "
                f"identical for every momentum (one run, replayed); only the statistics used at inference change. "
                f"Accuracy on the first {len(replay.test_labels)} test images at {len(replay.picked)} checkpoints.")
        return figure, text

    controls = {
        "momentum": FloatLogSlider(value=momentum, base=10, min=-3, max=0, step=0.05, description="momentum",
                                   readout_format=".3g", continuous_update=False, layout=Layout(width="45%")),
        "unit": IntSlider(value=unit, min=0, max=99, description="unit", continuous_update=False),
    }
    explorer = Explorer(controls, draw, dpi=figure.dpi)  # the background is drawn at this dpi
    explorer.replay = replay
    return explorer
