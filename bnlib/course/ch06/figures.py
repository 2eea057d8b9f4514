"""Notebook 06's figures: the paper's Figure 1 reproduced, and a printed look at the checkpoints.

``figure1`` lays out the three panels as the paper does: (a) test accuracy of both networks against
training step, (b) without BN and (c) with BN the 15th, 50th and 85th percentiles of one typical
last-hidden-layer unit's sigmoid input over the test set.
"""

from matplotlib.figure import Figure

from bnlib.course.ch06.paper import PAPER, findings, run_paper_experiment
from bnlib.course.plots import COLORS, LABELS, accuracy_curves, percentile_bands
from bnlib.course.tables import table


def figure1(result, facts, row=False):
    """The paper's Figure 1 from ``run_paper_experiment()`` and its ``findings``; returns (Figure, plotted numbers).

    Drawn 8.4 in wide, a notebook cell's width: (a) above, (b) and (c) side by side below it. ``row=True``
    lays the three panels out in one row, 13 in wide, as the paper does: the classroom app shows it that way,
    scaled to ``FIGURE_1_WIDTH``, so that it stays low on the first screen."""
    steps, accuracy, percentiles = result["steps"], result["accuracy"], result["percentiles"]
    if row:
        figure = Figure(figsize=(13, 3.8), layout="constrained")
        axes = figure.subplots(1, 3, gridspec_kw={"width_ratios": [1.2, 1, 1]})
    else:
        figure = Figure(figsize=(8.4, 7), layout="constrained")
        grid = figure.add_gridspec(2, 2)
        axes = [figure.add_subplot(grid[0, :]), figure.add_subplot(grid[1, 0]), figure.add_subplot(grid[1, 1])]
    accuracy_curves(axes[0], steps, accuracy)
    axes[0].set_ylim(max(0.0, min(0.7, float(accuracy[-1].min()) - 0.05)), 1.0)  # the paper shows 0.7 to 1
    axes[0].set_title("(a) test accuracy")
    units = facts["typical_unit"]
    bands = {}
    for net, (ax, name, letter) in enumerate(zip(axes[1:], ("baseline", "batch norm"), "bc")):
        p15, p50, p85 = percentiles[:, net, :, units[name]].T
        percentile_bands(ax, steps, p15, p50, p85, color=COLORS[name])
        ax.set_title(f"({letter}) {LABELS[name]}:{' ' if row else chr(10)}unit {units[name]}, "
                     f"drift {facts['drift'][name]:.2f}")
        ax.set_ylabel("sigmoid input, percentiles 15/50/85")
        ax.grid(alpha=0.3)
        bands[name] = {"unit": units[name], "p15": p15, "p50": p50, "p85": p85}
    low = min(ax.get_ylim()[0] for ax in axes[1:])
    high = max(ax.get_ylim()[1] for ax in axes[1:])
    for ax in axes[1:]:
        ax.set_ylim(low, high)  # same scale, so the two panels compare at a glance
    data = {"steps": steps, "accuracy": {name: accuracy[:, net] for net, name in enumerate(LABELS)},
            "sigmoid_input_percentiles": bands, **facts}
    return figure, data


def make_mnist_fig1():
    """``figures/mnist_fig1.png``: the paper's Figure 1 from the full run (computed once, then cached)."""
    result = run_paper_experiment()
    facts = findings(result)
    figure, data = figure1(result, facts)
    figure.suptitle("Ioffe & Szegedy (2015) Figure 1 reproduced\n"
                    "MNIST, 3x100 sigmoid MLP, batch 60, SGD lr 0.5, init N(0, 0.01^2)")
    return figure, {"config": PAPER, "percentile_unit": "sigmoid input over the 10,000 test images",
                    "drift_definition": "bnlib.course.drift: per unit |median(end) - median(10% of training)| / mean "
                                        "15-85 band width, averaged over the 100 last-hidden-layer units",
                    **data}


FIGURES = {"mnist_fig1": make_mnist_fig1}


def checkpoint_table(result, every=10):
    """Test accuracy of both networks every ``every`` checkpoints, as a table for a quick printed look."""
    rows = [(int(step), base, bn) for step, (base, bn) in zip(result["steps"], result["accuracy"])][::every]
    return table(["step", "accuracy without BN", "with BN"], rows, [",", ".4f", ".4f"])
