"""Explorer: how noisy are a real unit's batch statistics, and what does the noise do to one example?

A batch of m examples gives the unit a batch mean and a batch variance, estimates of the unit's true
ones that change from batch to batch (std of the mean: sigma / sqrt(m)). BN normalizes each example
with them, so one and the same example gets a different normalized value in every batch it lands in:
at m = 2 it is always -1 or +1, at m = 256 close to its value under the true statistics.
"""

import ipywidgets as widgets
import numpy as np
from matplotlib.figure import Figure

from bnlib.course.ch07.small_batches import NOISE_BATCH_SIZES, normalized_value_spread, sample_batches, unit_activations
from bnlib.course.explorer import Explorer

DRAWS = 1000


def batch_noise_summary(values, example, batch_size, draws=DRAWS, seed=0):
    """Batch means, batch variances and the example's normalized values over ``draws`` random batches."""
    batches = sample_batches(values, batch_size, draws, seed)
    return {"means": batches.mean(1), "variances": batches.var(1),
            "normalized": normalized_value_spread(values, example, batch_size, draws, seed)}


def batch_noise_explorer(draws=DRAWS):
    """Batch size and unit sliders; the sampling distributions of the batch mean and variance of a real
    hidden unit on MNIST, and of one example's normalized value."""
    activations = unit_activations().astype(np.float64)
    figure = Figure(figsize=(8.2, 3.0))
    figure.subplots_adjust(left=0.03, right=0.98, bottom=0.17, top=0.88, wspace=0.12)
    axes = figure.subplots(1, 3)

    def draw(batch_size, unit):
        values = activations[:, unit]
        mean, std = values.mean(), values.std()
        example = float(np.quantile(values, 0.9))  # a fixed example: the unit's 90th percentile
        summary = batch_noise_summary(values, example, batch_size, draws)
        ideal = (example - mean) / std
        panels = [(summary["means"], mean, "batch mean", (mean - 3 * std, mean + 3 * std)),
                  (summary["variances"], std ** 2, "batch variance", (0, 4 * std ** 2)),
                  (summary["normalized"], ideal, "normalized value of one example", (-4, 4))]
        for ax, (samples, truth, label, limits) in zip(axes, panels):
            ax.cla()
            ax.hist(np.clip(samples, *limits), bins=np.linspace(*limits, 61), color="C0", histtype="stepfilled")
            ax.axvline(truth, color="C3", label="with the true statistics")
            ax.set(xlim=limits, xlabel=label, yticks=[])
        axes[2].legend(fontsize=8, loc="upper left")
        figure.suptitle(f"{draws} random batches of {batch_size}, unit {unit}", fontsize=10)
        low, high = np.percentile(summary["normalized"], [5, 95])
        text = (f"the example normalizes to {low:+.2f} ... {high:+.2f} in 90% of batches ({ideal:+.2f} with the true "
                f"statistics); std of the batch mean {summary['means'].std():.3f} (sigma/sqrt(m) = "
                f"{std / np.sqrt(batch_size):.3f}); batch {batch_size}, unit {unit} (mean {mean:.3f}, sigma {std:.3f})")
        return figure, text

    controls = {
        "batch_size": widgets.SelectionSlider(options=list(NOISE_BATCH_SIZES), value=8, description="batch size"),
        "unit": widgets.IntSlider(value=0, min=0, max=activations.shape[1] - 1, description="unit"),
    }
    return Explorer(controls, draw)
