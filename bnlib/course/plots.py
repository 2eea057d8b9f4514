"""Plots several chapters draw: percentile bands of a unit's inputs over training, accuracy curves.

``percentile_bands`` and ``accuracy_curves`` draw on any matplotlib ``Axes``, with the course's colours
and labels for the network without BN ("baseline") and with it; ``STEP_TICKS`` writes steps as 10K.
"""

from matplotlib.ticker import FuncFormatter

COLORS = {"baseline": "tab:blue", "batch norm": "tab:red"}
LABELS = {"baseline": "Without BN", "batch norm": "With BN"}
STEP_TICKS = FuncFormatter(lambda step, _: f"{step / 1000:g}K" if step else "0")


def percentile_bands(ax, steps, p15, p50, p85, color="tab:blue", label=None):
    """The 15th, 50th and 85th percentiles against step: three lines, the 15-85 band shaded."""
    ax.fill_between(steps, p15, p85, color=color, alpha=0.15, linewidth=0)
    for values, width in ((p15, 1.0), (p50, 1.8), (p85, 1.0)):
        ax.plot(steps, values, color=color, linewidth=width, label=label if values is p50 else None)
    ax.xaxis.set_major_formatter(STEP_TICKS)
    ax.set_xlabel("training step")


def accuracy_curves(ax, steps, accuracy, networks=("baseline", "batch norm")):
    """Test accuracy against step, one curve per network; ``accuracy`` is (checkpoints, networks)."""
    for net, name in enumerate(networks):
        ax.plot(steps, accuracy[:, net], color=COLORS[name], linestyle="--" if net == 0 else "-",
                label=LABELS[name])
    ax.xaxis.set_major_formatter(STEP_TICKS)
    ax.set_xlabel("training step")
    ax.set_ylabel("test accuracy")
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
