"""Notebook 11's explorer: batch size and batch composition, for batch norm, Batch Renorm and GroupNorm.

Every position of the controls is a run of the cached grid (``bnlib.course.ch11.renorm.run_grid``: the same
network, seed and steps for the three norms), so a move only redraws. Left: each norm's test accuracy in eval
mode and in train mode (test batches composed as in training); the gap between the two bars is the train-eval
gap. Right: the training loss. The readout leads with the three eval accuracies.
"""

import numpy as np
from ipywidgets import SelectionSlider, ToggleButtons
from matplotlib.figure import Figure

from bnlib.course.ch11.renorm import GRID, cell, run_grid
from bnlib.course.explorer import Explorer

COLORS = {"BN": "tab:red", "Batch Renorm": "tab:purple", "GroupNorm": "tab:green"}
SMOOTH = 25  # steps in the moving average of the plotted loss


def smoothed(losses, window=SMOOTH):
    """The moving average of ``losses`` over ``window`` steps (one value per full window)."""
    return np.convolve(losses, np.ones(window) / window, mode="valid")


def composition_readout(result, batch_size, composition, config=GRID):
    """"eval accuracy of each norm; train-eval gaps; setting" for one cell of the grid."""
    cells = {norm: cell(result, norm, composition, batch_size, config) for norm in config.norms}
    best = max(cells, key=lambda norm: cells[norm]["eval"])
    return "; ".join([
        "eval accuracy " + ", ".join(f"{norm} {c['eval']:.1%}" for norm, c in cells.items()),
        "train-eval gap " + ", ".join(f"{norm} {100 * c['gap']:+.1f}" for norm, c in cells.items()
                                      if norm != "GroupNorm") + " points",
        f"best: {best}",
        f"batches of {batch_size}, {'one class each' if composition == 'sorted' else 'drawn at random'}, "
        f"lr {config.lr(batch_size):g}, {config.steps} steps"])


def composition_explorer(batch_size=2, composition="iid", config=GRID):
    """A slider for the batch size, buttons for the composition; accuracy bars and loss curves."""
    result = run_grid(config)
    figure = Figure(figsize=(8.4, 3.2))
    figure.subplots_adjust(left=0.08, right=0.99, bottom=0.16, top=0.84, wspace=0.28)
    bars, curves = figure.subplots(1, 2, width_ratios=(1, 1.2))
    steps = np.arange(SMOOTH, config.steps + 1)

    def draw(batch_size, composition):
        for ax in (bars, curves):
            ax.cla()
        for i, norm in enumerate(config.norms):
            c = cell(result, norm, composition, batch_size, config)
            bars.bar(i - 0.18, 100 * c["eval"], width=0.36, color=COLORS[norm], label="eval mode" if i == 0 else None)
            bars.bar(i + 0.18, 100 * c["train_mode"], width=0.36, color=COLORS[norm], alpha=0.4, hatch="//",
                     label="train mode" if i == 0 else None)
            bars.text(i - 0.18, 100 * c["eval"] + 1.5, f"{c['eval']:.0%}", ha="center", fontsize=8)
            loss = result["loss"][i, config.compositions.index(composition), config.batch_sizes.index(batch_size)]
            curves.plot(steps, smoothed(loss), color=COLORS[norm], label=norm)
        bars.set(xticks=range(len(config.norms)), xticklabels=config.norms, ylim=(0, 105), ylabel="test accuracy (%)",
                 title="eval mode (solid) and train mode (hatched)")
        bars.legend(fontsize=7, loc="lower right")
        curves.set(xlabel="step", ylim=(0, 2.5), title=f"training loss (mean of {SMOOTH} steps)")
        curves.legend(fontsize=7)
        for ax in (bars, curves):
            ax.tick_params(labelsize=8)
            ax.title.set_fontsize(9)
            ax.grid(alpha=0.3)
        figure.suptitle(f"batches of {batch_size}, {'one class per batch' if composition == 'sorted' else 'iid'}",
                        fontsize=10)
        return figure, composition_readout(result, batch_size, composition, config)

    controls = {
        "batch_size": SelectionSlider(options=list(config.batch_sizes), value=batch_size, description="batch size"),
        "composition": ToggleButtons(options=list(config.compositions), value=composition, description="batches"),
    }
    return Explorer(controls, draw)
