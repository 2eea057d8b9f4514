"""Batch-size explorer: the paper's MNIST experiment, shorter, at the batch size you pick.

Batch norm estimates each unit's mean and variance from the mini-batch. With 60 examples the estimate
is good; with 2 or 4 it is so noisy that the normalization itself becomes noise, and the network trains
on a moving target. Each choice runs ``run_paper_experiment`` with fewer steps and caches it, so coming
back to a batch size is instant. A batch size not cached yet trains both networks (a few seconds to a
minute): the explorer says so at once and shows the progress bar under the control.
"""

from ipywidgets import Dropdown
from matplotlib.figure import Figure

from bnlib.course.cache import cache_path
from bnlib.course.ch06.paper import SHORT_RUN, findings, paper_config, run_paper_experiment
from bnlib.course.plots import COLORS, LABELS, accuracy_curves, percentile_bands
from bnlib.course.widgets.explorer import Explorer

BATCH_SIZES = (2, 4, 8, 16, 32, 60, 128, 256)


def is_cached(**overrides):
    """Whether ``run_paper_experiment(**overrides)`` will come from the cache."""
    return cache_path("paper_mnist", paper_config(**overrides), run_paper_experiment.__module__).exists()


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


def batch_size_explorer(batch_size=60, steps=SHORT_RUN["steps"], checkpoints=SHORT_RUN["checkpoints"]):
    """Pick a batch size; see both networks' accuracy and a typical unit's sigmoid-input percentiles."""

    def pending(batch_size):
        if not is_cached(batch_size=batch_size, steps=steps, checkpoints=checkpoints):
            return f"training both networks at batch size {batch_size} for {steps:,} steps ..."
        return None

    def draw(batch_size):
        result = run_paper_experiment(batch_size=batch_size, steps=steps, checkpoints=checkpoints)
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
