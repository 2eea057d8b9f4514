"""Notebook 10's explorer: learning rate x weight decay, and what they do to a scale-invariant weight.

Every position of the controls is a run of the cached grid (``bnlib.course.ch10.dynamics.run_grid``: the
chapter's network on MNIST, 1,500 steps of plain SGD from the same weights on the same batches), so a move
only redraws. For the chosen hidden layer: ||W|| over training, the effective learning rate lr / ||W||^2,
and the angle of each step (RMS over a trailing window) against sqrt(2 lr wd), with the time scale
1 / (2 lr wd) marked. The readout leads with the measured angle against its prediction.
"""

import numpy as np
from ipywidgets import SelectionSlider, ToggleButtons
from matplotlib.figure import Figure

from bnlib.course.ch10.dynamics import GRID, LAST, angle_summary, run_grid, run_index, trailing_rms
from bnlib.course.explorer import Explorer
from bnlib.course.plots import STEP_TICKS

EVERY = 5  # steps between plotted points


def optimizer_readout(result, index, layer):
    """"RMS angle vs prediction; norm; effective lr; accuracy" for run ``index`` and hidden layer ``layer``."""
    norm2 = result["norm2"][:, layer, index]
    lr, wd = float(result["lr"][index]), float(result["wd"][index])
    measured = np.sqrt(np.mean(np.square(result["angle"][-LAST:, layer, index])))
    if wd:  # (angle_summary's prediction and time scale need a weight decay)
        summary = angle_summary(result, index)
        headline = (f"angle per step {measured:.4f} rad (RMS, last {LAST} steps) against sqrt(2 lr wd) = "
                    f"{summary['predicted']:.4f}: ratio {summary['rms_ratio'][layer]:.2f}")
        settle = f"time scale 1/(2 lr wd) = {summary['time_scale']:,.0f} steps"
    else:
        headline = f"angle per step {measured:.4f} rad (RMS, last {LAST} steps), still falling: no equilibrium"
        settle = "without weight decay there is no equilibrium"
    return "; ".join([
        headline,
        f"layer {layer + 1}: ||W|| {np.sqrt(norm2[0]):.2f} -> {np.sqrt(norm2[-1]):.2f}",
        f"effective lr {lr / norm2[0]:.3g} -> {lr / norm2[-1]:.3g}", settle,
        f"test accuracy {result['accuracy'][index]:.2%} (lr {lr:g}, wd {wd:g})"])


def optimizer_explorer(lr=0.2, wd=3e-3, layer=1, config=GRID):
    """Sliders for the learning rate and the weight decay, buttons for the hidden layer; three panels."""
    result = run_grid(config)
    steps = np.arange(1, len(result["norm2"]) + 1)[::EVERY]
    figure = Figure(figsize=(8.4, 3.3))
    figure.subplots_adjust(left=0.07, right=0.99, bottom=0.16, top=0.84, wspace=0.35)
    axes = figure.subplots(1, 3)

    def draw(lr, wd, layer):
        index, layer = run_index(result, lr, wd), layer - 1
        for ax in axes:
            ax.cla()
        norm2 = result["norm2"][::EVERY, layer, index]
        axes[0].plot(steps, np.sqrt(norm2), color="tab:blue")
        axes[0].set(title="||W||", ylim=(0, 1.05 * np.sqrt(result["norm2"][:, layer].max())))
        axes[1].plot(steps, lr / norm2, color="tab:purple")
        axes[1].set(title="effective lr = lr / ||W||^2", yscale="log",
                    ylim=(0.5 * (result["lr"] / result["norm2"][:, layer]).min(), 2 * (result["lr"] / result["norm2"][:, layer]).max()))
        axes[2].plot(steps, trailing_rms(result["angle"][:, layer, index])[::EVERY], color="tab:red",
                     label="measured (RMS, last 200 steps)")
        if wd:
            summary = angle_summary(result, index)
            axes[2].axhline(summary["predicted"], color="black", linestyle=":", label="sqrt(2 lr wd)")
            if summary["time_scale"] <= steps[-1]:
                axes[2].axvline(summary["time_scale"], color="0.5", linewidth=0.8, label="1 / (2 lr wd)")
        axes[2].set(title="angle per step (rad)", yscale="log", ylim=(1e-3, 0.2))
        axes[2].legend(fontsize=7, loc="upper right")
        for ax in axes:
            ax.set_xlabel("step", fontsize=9)
            ax.xaxis.set_major_formatter(STEP_TICKS)
            ax.tick_params(labelsize=8)
            ax.title.set_fontsize(9)
            ax.grid(alpha=0.3)
        figure.suptitle(f"layer {layer + 1}, plain SGD at lr {lr:g}, weight decay {wd:g}", fontsize=10)
        return figure, optimizer_readout(result, index, layer)

    controls = {
        "lr": SelectionSlider(options=[float(v) for v in config.lrs], value=lr, description="learning rate"),
        "wd": SelectionSlider(options=[float(v) for v in config.wds], value=wd, description="weight decay"),
        "layer": ToggleButtons(options=[1, 2, 3], value=layer, description="layer"),
    }
    return Explorer(controls, draw)
