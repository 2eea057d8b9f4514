"""Notebook 10's figures: the norm without weight decay, the angular update against its prediction, the two
equivalent runs, and the initial-scale sweep. Each draws a cached result (``python -m bnlib.figures NAME``)."""

import numpy as np
from matplotlib.figure import Figure

from bnlib.course.ch10.dynamics import angle_summary, norm_growth, reached, run_grid, trailing_rms
from bnlib.course.ch10.equivalence import EquivalenceRun, run_equivalence
from bnlib.course.ch10.initialization import FAMILIES, InitSweep, run_init_sweep
from bnlib.course.plots import STEP_TICKS

LAYER_COLORS = ("tab:blue", "tab:orange", "tab:green")


def no_decay_runs(result):
    return [i for i, (wd, mu) in enumerate(zip(result["wd"], result["momentum"])) if wd == 0 and mu == 0]


def decay_runs(result):
    return [i for i, wd in enumerate(result["wd"]) if wd > 0]


def norm_growth_figure(result=None):
    """Without weight decay: ||W||^2 measured and predicted (lr 0.1), and lr / ||W||^2 at every lr."""
    result = run_grid() if result is None else result
    steps = np.arange(len(result["norm2"]))
    figure = Figure(figsize=(8.4, 7), layout="constrained")
    left, right = figure.subplots(2, 1)
    runs = no_decay_runs(result)
    growth = norm_growth(result, runs[0])
    data = {"steps": steps[::50], "lr": [float(result["lr"][i]) for i in runs], "layers": {}}
    for layer, color in enumerate(LAYER_COLORS):
        left.plot(steps, growth["measured"][:, layer], color=color, label=f"layer {layer + 1}, measured")
        left.plot(steps, growth["predicted"][:, layer], color="black", linestyle=":", linewidth=1)
        data["layers"][layer + 1] = {"measured": growth["measured"][::50, layer],
                                     "predicted": growth["predicted"][::50, layer]}
    left.plot([], [], color="black", linestyle=":", label=r"$\|W_0\|^2 + lr^2 \sum_s \|g_s\|^2$")
    left.set(title=f"||W||^2, plain SGD at lr {result['lr'][runs[0]]:g}, no weight decay", xlabel="step")
    left.legend()
    for i, style in zip(runs, ("-", "--", ":")):
        effective = norm_growth(result, i)["effective_lr"]
        for layer, color in enumerate(LAYER_COLORS):
            right.plot(steps, effective[:, layer], color=color, linestyle=style,
                       label=f"lr {result['lr'][i]:g}" if layer == 0 else None)
        data[f"effective_lr {result['lr'][i]:g}"] = effective[::50]
    right.set(yscale="log", title="effective learning rate lr / ||W||^2 (colours: layers)", xlabel="step")
    right.legend()
    for ax in (left, right):
        ax.xaxis.set_major_formatter(STEP_TICKS)
        ax.grid(alpha=0.3)
    return figure, data


def angle_figure(result=None):
    """With weight decay: layer 1's angle per step (trailing RMS) against sqrt(2 lr wd / (1 + mu)), and the RMS
    over the last 500 steps over the prediction, per run and layer."""
    result = run_grid() if result is None else result
    steps = np.arange(len(result["angle"])) + 1
    figure = Figure(figsize=(8.4, 8.4), layout="constrained")
    left, right = figure.subplots(2, 1, height_ratios=(1.2, 1))
    runs = decay_runs(result)
    summaries = [angle_summary(result, i) for i in runs]
    for position, (i, summary) in enumerate(zip(runs, summaries)):
        color = f"C{position % 10}"
        if reached(summary):
            left.plot(steps, trailing_rms(result["angle"][:, 0, i]), color=color,
                      label=f"lr {summary['lr']:g}, wd {summary['wd']:g}" + (f", mu {summary['momentum']:g}"
                                                                            if summary["momentum"] else ""))
            left.axhline(summary["predicted"], color=color, linestyle=":", linewidth=1)
        for layer, marker in enumerate("o^s"):
            right.plot(position, summary["rms_ratio"][layer], marker, color=LAYER_COLORS[layer],
                       label=f"layer {layer + 1}" if position == 0 else None)
    left.set(yscale="log", xlabel="step", title="layer 1: RMS angle per step (last 200 steps); dotted: prediction")
    left.xaxis.set_major_formatter(STEP_TICKS)
    left.legend(loc="upper left", bbox_to_anchor=(1.01, 1))  # beside the curves, not over them
    right.axhspan(0.9, 1.1, color="0.9")
    right.axhline(1.0, color="black", linewidth=0.8)
    labels = [f"{s['lr']:g}/{s['wd']:g}" + ("/mu" if s["momentum"] else "") + ("" if reached(s) else "*")
              for s in summaries]
    right.set_xticks(range(len(runs)), labels, rotation=60)
    right.set(ylabel="RMS angle, last 500 steps / prediction", xlabel="lr / wd (*: (1 - mu) / (2 lr wd) > 500 steps)",
              title="measured over predicted")
    right.legend()
    for ax in (left, right):
        ax.grid(alpha=0.3)
    return figure, {"runs": labels, "predicted": [s["predicted"] for s in summaries],
                    "rms_ratio": [s["rms_ratio"] for s in summaries], "time_scale": [s["time_scale"] for s in summaries]}


def case_label(case):
    dtype, eps, _ = case
    return f"{dtype}, eps {eps:g}"


def equivalence_figure(result=None, config=EquivalenceRun()):
    """||W_B / sqrt(c) - W_A|| / ||W_A|| at the checkpoints, for each case and c."""
    result = run_equivalence(config) if result is None else result
    figure = Figure(figsize=(8.4, 3.4), layout="constrained")
    ax = figure.subplots()
    series = {}
    for case_index, case in enumerate(config.cases):
        for j, c in enumerate(case[2]):
            values = result["hidden"][case_index, j]
            label = f"{case_label(case)}, c = {c:g}"
            ax.plot(result["checkpoints"], values, "o-", label=label)
            series[label] = result["hidden"][case_index, j]
    ax.set(xscale="log", yscale="log", xlabel="step", ylabel=r"$\|W_B/\sqrt{c} - W_A\| \,/\, \|W_A\|$",
           title="run B: (c lr, wd / c) from sqrt(c) W0, against run A: (lr, wd) from W0\n(largest over the layers)")
    ax.legend()
    ax.grid(alpha=0.3)
    return figure, {"checkpoints": result["checkpoints"], **series}


def initialization_figure(result=None, config=InitSweep()):
    """Step 0: the activations' std per layer and layer 1's update-to-data ratio; after training: test accuracy;
    all against k, the multiple of He's scale."""
    result = run_init_sweep(config) if result is None else result
    scales = np.array(config.scales)
    figure = Figure(figsize=(8.4, 7.4), layout="constrained")
    grid = figure.add_gridspec(2, 2)
    axes = [figure.add_subplot(grid[0, 0]), figure.add_subplot(grid[0, 1]), figure.add_subplot(grid[1, :])]
    for family, (name, style) in enumerate(zip(FAMILIES, ("--", "-", ":"))):
        for layer, color in enumerate(LAYER_COLORS):
            if family < 2:  # the third family's forward pass is the second's up to the last layer
                axes[0].plot(scales, result["activation_std"][family, :, layer], style, marker="o", color=color,
                             label=f"{name}, layer {layer + 1}")
        axes[1].plot(scales, result["update_ratio"][family, :, 0], style, marker="o", color="black", label=name)
        accuracy = np.where(result["diverged"][family], np.nan, result["accuracy"][family])
        axes[2].plot(scales, 100 * accuracy, style, marker="o", color="black", label=name)
    axes[0].set(title="step 0: std of ReLU outputs", ylabel="std")
    axes[1].set(title="step 0: layer 1, lr std(dL/dW) / std(W)")
    axes[2].set(title=f"test accuracy after {config.steps} steps (gaps: diverged)", ylabel="%")
    for ax in axes:
        ax.set(xscale="log", xlabel="k (weights ~ N(0, (k sqrt(2/fan_in))^2))")
        ax.grid(alpha=0.3)
        ax.legend()
    axes[0].set_yscale("log")
    axes[1].set_yscale("log")
    return figure, {"scales": scales, "families": FAMILIES, "activation_std": result["activation_std"],
                    "update_ratio": result["update_ratio"], "accuracy": result["accuracy"],
                    "diverged": result["diverged"]}


FIGURES = {"ch10_norm_growth": norm_growth_figure, "ch10_angular_update": angle_figure,
           "ch10_equivalence": equivalence_figure, "ch10_initialization": initialization_figure}
