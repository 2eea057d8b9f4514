"""Devices explorer: how many devices share the batch, how non-iid their shards are, and what batch norm
per device (plain BatchNorm1d under DDP) does against synchronized batch norm.

Every position of the sliders is a precomputed run of ``bnlib.course.ch09.devices.device_grid`` (the
paper's network on MNIST, the same global batches of 60 split between the devices), computed once and
cached; a move only redraws. Synchronized batch norm is one run for all settings: it normalizes with the
whole batch's statistics, and the whole batch is the same however it is split.
"""

import numpy as np
from ipywidgets import SelectionSlider
from matplotlib.figure import Figure

from bnlib.course.ch09.devices import GRID_CONFIG, device_grid
from bnlib.course.explorer import Explorer


def devices_explorer(devices=4, skew=1.0, config=GRID_CONFIG):
    """Sliders for the number of devices and the skew of their shards; accuracy and normalization error."""
    grid = device_grid(config)
    figure = Figure(figsize=(8.4, 3.4))
    left, right = figure.subplots(1, 2)
    layers = np.arange(grid["error"].shape[2])

    def draw(devices, skew):
        i, j = list(grid["devices"]).index(devices), list(grid["skews"]).index(skew)
        accuracy, population = grid["accuracy"][i], grid["population_accuracy"][i]
        left.cla()
        left.plot(grid["skews"], 100 * accuracy, "o-", color="C0", label="per device, rank 0's running statistics")
        left.plot(grid["skews"], 100 * population, "o--", color="C1", label="per device, population statistics")
        left.axhline(100 * grid["sync_accuracy"], color="black", linestyle=":", label="synchronized")
        left.axvline(skew, color="gray", alpha=0.4, linewidth=8)
        left.set(ylim=(0, 100), xticks=grid["skews"], xlabel="skew of the shards (0: iid, 1: sorted by class)",
                 ylabel="test accuracy (%)", title=f"{devices} devices of {config.batch_size // devices} examples")
        left.legend(fontsize=8, loc="lower left")
        right.cla()
        right.bar(layers - 0.2, grid["error"][i, j], 0.4, color="C0", label="per device")
        right.bar(layers + 0.2, grid["sync_error"], 0.4, color="black", label="synchronized")
        right.set(xticks=layers, xticklabels=[f"layer {layer + 1}" for layer in layers],
                  ylim=(0, max(0.2, 1.1 * grid["error"].max())), ylabel="normalization error",
                  title=f"Running statistics at skew {skew:g}")
        right.legend(fontsize=8)
        figure.tight_layout()
        text = (f"per-device batch norm {accuracy[j]:.1%} test accuracy with rank 0's running statistics, "
                f"{population[j]:.1%} with population statistics; synchronized {grid['sync_accuracy']:.1%} "
                f"(the same for every split); normalization error {grid['error'][i, j].mean():.3f} per device, "
                f"{grid['sync_error'].mean():.3f} synchronized (mean over the layers); {devices} devices of "
                f"{config.batch_size // devices}, skew {skew:g}: {grid['classes_per_device'][i, j]:.1f} classes in a "
                f"device's shard on average")
        return figure, text

    controls = {
        "devices": SelectionSlider(options=list(grid["devices"]), value=devices, description="devices"),
        "skew": SelectionSlider(options=[float(s) for s in grid["skews"]], value=skew, description="skew"),
    }
    return Explorer(controls, draw)
