"""Notebook 08's figures: the learning-rate sweep, per-channel statistics of real feature maps, and
recalibration after a shift."""

import numpy as np
from matplotlib.figure import Figure

from bnlib.course.ch08.convnet import channel_statistics, images_2d, lr_sweep, trained_net
from bnlib.course.ch08.deployment import RECALIBRATE, recalibration
from bnlib.course.plots import COLORS, LABELS

VERSIONS = ("baseline", "batch norm")


def sweep_figure(sweep=None):
    """Test accuracy over training at each learning rate, without and with BN."""
    sweep = lr_sweep() if sweep is None else sweep
    columns = 3
    rows = -(-len(sweep["lrs"]) // columns)
    figure = Figure(figsize=(8.4, 2.7 * rows), layout="constrained")
    axes = figure.subplots(rows, columns, sharey=True, squeeze=False).ravel()
    for ax in axes[len(sweep["lrs"]):]:
        ax.remove()  # an empty cell: figure.axes holds one panel per learning rate
    axes = axes[:len(sweep["lrs"])]
    for i, (ax, lr) in enumerate(zip(axes, sweep["lrs"])):
        for v, version in enumerate(VERSIONS):
            ax.plot(sweep["steps"], sweep["accuracy"][v, i], color=COLORS[version], label=LABELS[version])
        ax.set(title=f"learning rate {lr:g}", xlabel="step", ylim=(0, 1))
    for ax in axes[::columns]:
        ax.set_ylabel("test accuracy")
    axes[0].legend(loc="lower right")
    return figure, {"lrs": sweep["lrs"], "steps": sweep["steps"], "accuracy": sweep["accuracy"]}


def statistics_figure():
    """Per-channel mean and standard deviation of the first conv's output on 256 test digits, before BN and
    after it (train mode: the batch's own statistics), in the BN net trained at rate 0.1."""
    net = trained_net(lr_sweep())
    stats = channel_statistics(net, images_2d(False)[0][:256])
    figure = Figure(figsize=(8.4, 3.0), layout="constrained")
    axes = figure.subplots(1, 2)
    channels = np.arange(len(stats["mean before"]))
    for ax, what in zip(axes, ("mean", "std")):
        ax.bar(channels - 0.2, stats[f"{what} before"], 0.4, label="conv output (before BN)", color="0.6")
        ax.bar(channels + 0.2, stats[f"{what} after"], 0.4, label="after BN, before gamma and beta",
               color=COLORS["batch norm"])
        ax.set(xlabel="channel", title=f"per-channel {what} over N, H and W")
    axes[0].legend(fontsize=8)
    return figure, stats


def recalibration_figure(result=None):
    """Accuracy on shifted test digits against the number of recalibration batches, per shift."""
    result = recalibration() if result is None else result
    figure = Figure(figsize=(8.4, 3.4), layout="constrained")
    ax = figure.add_subplot()
    positions = np.arange(len(RECALIBRATE.batches))
    for row, (kind, level) in enumerate(RECALIBRATE.shifts):
        line, = ax.plot(positions, result["accuracy"][row], "o-", ms=3, label=f"{kind} {level:g}")
        ax.axhline(result["plain_accuracy"][row], color=line.get_color(), linestyle=":", linewidth=1)
    ax.set_xticks(positions, [str(k) for k in RECALIBRATE.batches])
    ax.set(xlabel="recalibration batches of 64 unlabeled shifted digits (0: the statistics from training)",
           ylabel="test accuracy, shifted digits", ylim=(0, 1),
           title="BN net recalibrated (solid) and the plain net (dotted), per shift")
    ax.legend(fontsize=8, ncol=3, loc="lower right")
    return figure, {"batches": RECALIBRATE.batches, "shifts": [f"{k} {v:g}" for k, v in RECALIBRATE.shifts],
                    "accuracy": result["accuracy"], "plain_accuracy": result["plain_accuracy"]}


FIGURES = {"ch08_lr_sweep": sweep_figure, "ch08_channel_statistics": statistics_figure,
           "ch08_recalibration": recalibration_figure}
