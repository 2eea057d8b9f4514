"""The drift explorer of notebook 02: scrub through training and watch a hidden unit's input distribution move.

From the cached recorded run (``bnlib.course.ch02.recording``): the quantiles of every hidden unit's sigmoid
input over the probe images, every 25 steps. Left, the unit's 15th, 50th and 85th percentiles over the whole
run, a line at the chosen step; right, its distribution at that step (bins of 5% of the probe images each,
between consecutive recorded quantiles) over its distribution at step ``DRIFT_FROM`` in grey.
"""

import ipywidgets as widgets
import numpy as np
from matplotlib.figure import Figure

from bnlib.course import drift
from bnlib.course.ch02.covariate_shift import DRIFT_FROM, drift_summary
from bnlib.course.ch02.recording import drift_percentiles, drift_run
from bnlib.course.plots import percentile_bands
from bnlib.course.explorer import Explorer


def quantile_density(quantiles, levels):
    """``(density, edges)`` of a distribution known by its quantiles: each bin between consecutive quantiles
    holds its share of the mass (5% for every 5th percentile), spread evenly over the bin's width."""
    widths = np.maximum(np.diff(quantiles), 1e-12 * max(np.ptp(quantiles), 1e-12))
    return np.diff(levels) / 100 / widths, quantiles


def unit_readout(run, layer, unit, step):
    """The numbers the readout shows: median and band width at ``step``, the drift from ``DRIFT_FROM`` to
    ``step`` (None before it), the band width relative to step ``DRIFT_FROM``'s, and the probe accuracy."""
    steps = run["steps"]
    index = int(np.searchsorted(steps, step))
    percentiles = drift_percentiles(run["x_quantiles"][:, layer - 1, :, unit:unit + 1])  # (S, 3, 1)
    start = drift.start_index(steps, DRIFT_FROM)
    band = percentiles[:, 2, 0] - percentiles[:, 0, 0]
    moved = (float(drift.unit_drifts(percentiles[:index + 1], steps[:index + 1], DRIFT_FROM)[0])
             if step >= DRIFT_FROM else None)
    return {"median": float(percentiles[index, 1, 0]), "band": float(band[index]), "drift": moved,
            "band_ratio": float(band[index] / band[start]), "accuracy": float(run["accuracy"][index])}


def drift_explorer(run=None):
    """Sliders for the training step and the unit, a chooser for the hidden layer (default: layer 3's typical unit)."""
    run = drift_run() if run is None else run
    steps, levels = run["steps"], run["levels"]
    figure = Figure(figsize=(8.4, 3.8), layout="constrained")
    bands_ax, density_ax = figure.subplots(1, 2)
    start = drift.start_index(steps, DRIFT_FROM)

    def draw(step, layer, unit):
        quantiles = run["x_quantiles"][:, layer - 1, :, unit]  # (S, 21)
        percentiles = drift_percentiles(quantiles[..., None])[..., 0]  # (S, 3)
        index = int(np.searchsorted(steps, step))
        bands_ax.cla()
        percentile_bands(bands_ax, steps, *percentiles.T, label="median, 15th to 85th percentile")
        bands_ax.axvline(DRIFT_FROM, color="0.6", linestyle=":", linewidth=1)
        bands_ax.axvline(step, color="C3", linewidth=1.2)
        bands_ax.set(ylabel=f"$x^{{({layer})}}_{{{unit}}}$", title=f"layer {layer}, unit {unit}: sigmoid input")
        bands_ax.legend(fontsize=8, loc="upper left")
        density_ax.cla()
        for row, color, label in ((start, "0.6", f"step {DRIFT_FROM}"), (index, "C0", f"step {step}")):
            density, edges = quantile_density(quantiles[row], levels)
            density_ax.stairs(density, edges, color=color, fill=row != start, alpha=0.5 if row != start else 1,
                              label=label)
        low, high = np.percentile(quantiles[[start, index]], [0, 100])
        density_ax.set(xlim=(low, high), xlabel=f"$x^{{({layer})}}_{{{unit}}}$ over the probe images",
                       ylabel="density", title="its distribution (5% of the probe images per bin)")
        density_ax.legend(fontsize=8, loc="upper right")
        numbers = unit_readout(run, layer, unit, step)
        moved = (f"drift since step {DRIFT_FROM}: {numbers['drift']:.2f} band widths" if numbers["drift"] is not None
                 else f"drift is counted from step {DRIFT_FROM}")
        readout = (f"median {numbers['median']:+.2f}, band {numbers['band']:.2f} wide "
                   f"({numbers['band_ratio']:.2f}x step {DRIFT_FROM}'s) at step {step}; {moved}; "
                   f"probe accuracy {numbers['accuracy']:.0%} (layer {layer}, unit {unit})")
        return figure, readout

    controls = {
        "step": widgets.IntSlider(value=int(steps[-1]), min=int(steps[0]), max=int(steps[-1]),
                                  step=int(steps[1] - steps[0]), description="step"),
        "layer": widgets.Dropdown(options=[1, 2, 3], value=3, description="layer"),
        "unit": widgets.IntSlider(value=drift_summary(run)["x"]["typical_unit"], min=0,
                                  max=run["x_quantiles"].shape[-1] - 1, description="unit"),
    }
    return Explorer(controls, draw)
