"""Notebook 11's figures: the residual stream's variance over depth, the learning-rate sweep of the residual
nets, and batch norm against Batch Renorm and GroupNorm over batch size. Each draws a cached result
(``python -m bnlib.figures NAME``)."""

import numpy as np
from matplotlib.figure import Figure

from bnlib.course.ch11.explorers import COLORS
from bnlib.course.ch11.renorm import GRID, cell, run_grid
from bnlib.course.ch11.residual import STREAMS, VarianceRun, run_variance
from bnlib.course.ch11.sweep import SWEEP, run_sweep

KIND_STYLES = {"branch": ("tab:red", "BN on the branch: x + BN(...)"),
               "post": ("tab:orange", "ReLU after the addition"), "after": ("tab:brown", "BN after the addition"),
               "none": ("tab:blue", "no normalization"), "skipinit": ("tab:green", "SkipInit (alpha = 0)"),
               "zero gamma": ("tab:purple", "BN, zero-init gamma")}
SWEEP_COLORS = {"BN": "tab:red", "BN, zero gamma": "tab:purple", "SkipInit": "tab:green",
                "no normalization": "tab:blue"}


def variance_figure(result=None):
    """Var(x_l) against depth l for every block kind, with l + 1 and 2^l v_0; block l's branch over its input."""
    result = run_variance() if result is None else result
    depth = np.arange(result["variance"].shape[1])
    figure = Figure(figsize=(8.4, 3.4), layout="constrained")
    left, right = figure.subplots(1, 2)
    for row, variant in enumerate(STREAMS):
        color, label = KIND_STYLES[variant]
        left.plot(depth, result["variance"][row], color=color, label=label)
    v0 = result["variance"][STREAMS.index("none"), 0]
    left.plot(depth, depth + 1, "k:", linewidth=1, label="l + 1")
    left.plot(depth[:40], v0 * 2.0 ** depth[:40], "k--", linewidth=1, label="2^l Var(x_0)")
    left.set(yscale="log", ylim=(0.05, 1e6), xlabel="block l", title="Var(x_l) at initialization (train mode)")
    left.legend(fontsize=7, ncol=2)
    for variant in ("branch", "post", "none"):
        color, label = KIND_STYLES[variant]
        right.plot(depth[1:], result["ratio"][STREAMS.index(variant), 1:], color=color, label=label)
    right.plot(depth[1:], 1 / depth[1:], "k:", linewidth=1, label="1 / l")
    right.set(xscale="log", yscale="log", xlabel="block l", title="Var(branch of block l) / Var(its input)")
    right.legend(fontsize=7)
    for ax in (left, right):
        ax.grid(alpha=0.3)
    return figure, {"depth": depth, "variants": STREAMS, "variance": result["variance"], "ratio": result["ratio"],
                    "config": VarianceRun()}


def sweep_figure(result=None, lr=0.8, early=60):
    """The first ``early`` steps at ``lr`` with and without zero-init gamma; test accuracy against lr."""
    result = run_sweep() if result is None else result
    figure = Figure(figsize=(8.4, 3.3), layout="constrained")
    left, right = figure.subplots(1, 2)
    column = SWEEP.lrs.index(lr)
    data = {"lrs": SWEEP.lrs, "accuracy": {}, f"loss at lr {lr:g}": {}}
    for row, variant in enumerate(SWEEP.variants):
        color = SWEEP_COLORS[variant]
        if variant.startswith("BN"):
            left.plot(np.arange(early), result["loss"][row, column, :early], color=color, label=variant)
            data[f"loss at lr {lr:g}"][variant] = result["loss"][row, column, :early]
        right.plot(SWEEP.lrs, 100 * np.nan_to_num(result["accuracy"][row], nan=0.1), "o-", color=color, label=variant)
        data["accuracy"][variant] = result["accuracy"][row]
    left.axhline(np.log(10), color="0.5", linewidth=0.8, linestyle=":", label="ln 10 (a uniform guess)")
    left.set(xlabel="step", ylabel="training loss", title=f"8 blocks, lr {lr:g}: the first {early} steps")
    left.legend(fontsize=7)
    right.axhline(90, color="0.5", linewidth=0.8, linestyle=":")
    right.set(xscale="log", xlabel="learning rate", ylabel="test accuracy (%)", ylim=(0, 100),
              title=f"after {SWEEP.steps} steps (diverged: 10%)")
    right.set_xticks(SWEEP.lrs, [f"{lr:g}" for lr in SWEEP.lrs], fontsize=7)
    right.legend(fontsize=7, loc="lower left")
    for ax in (left, right):
        ax.grid(alpha=0.3)
    return figure, data


def renorm_figure(result=None):
    """Eval accuracy against batch size, and the train-eval gap, for each norm: iid (solid) and sorted (dashed)."""
    result = run_grid() if result is None else result
    figure = Figure(figsize=(8.4, 3.3), layout="constrained")
    left, right = figure.subplots(1, 2)
    data = {}
    for norm in GRID.norms:
        for composition, style in zip(GRID.compositions, ("-", "--")):
            cells = [cell(result, norm, composition, m) for m in GRID.batch_sizes]
            label = f"{norm}, {composition}"
            left.plot(GRID.batch_sizes, [100 * c["eval"] for c in cells], style, marker="o", color=COLORS[norm],
                      label=label)
            if norm != "GroupNorm":
                right.plot(GRID.batch_sizes, [100 * c["gap"] for c in cells], style, marker="o", color=COLORS[norm],
                           label=label)
            data[label] = {"eval": [c["eval"] for c in cells], "gap": [c["gap"] for c in cells]}
    left.set(ylabel="test accuracy, eval mode (%)", ylim=(0, 100), title="eval mode")
    right.axhline(0, color="black", linewidth=0.8)
    right.set(ylabel="train mode - eval (points)", title="the train-eval gap")
    for ax in (left, right):
        ax.set_xscale("log")
        ax.minorticks_off()
        ax.set_xticks(GRID.batch_sizes, [str(m) for m in GRID.batch_sizes])
        ax.set_xlabel("batch size")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    return figure, {"batch_sizes": GRID.batch_sizes, **data}


FIGURES = {"ch11_residual_variance": variance_figure, "ch11_residual_lr_sweep": sweep_figure,
           "ch11_batch_renorm": renorm_figure}
