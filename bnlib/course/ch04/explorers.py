"""Explorer: gamma and beta reshape a normalized unit, and decide how a sigmoid after it behaves.

BN turns a unit's pre-activations (here a skewed sample) into xhat with mean 0 and standard deviation 1,
then outputs y = gamma xhat + beta: mean beta, standard deviation gamma. Feeding y to a sigmoid, a
small gamma keeps the unit in the sigmoid's nearly linear middle, a large gamma or a large |beta|
pushes it into the flat tails where the gradient vanishes. Both choices are learned.
"""

import ipywidgets as widgets
import numpy as np
from matplotlib.figure import Figure

from bnlib.course.explorer import Explorer
from bnlib.normalization import batch_norm_forward

SATURATION = 4.0  # |y| > 4: the sigmoid is within 0.018 of 0 or 1 and its slope under 1/14 of its peak
Y_RANGE = 12.0  # the histogram of y spans [-12, 12]; values beyond are counted at its edges, not drawn


def pre_activations(size=5000, seed=0):
    """A skewed, offset sample of one unit's pre-activations Wu over a batch, shape (size, 1)."""
    return 10 + np.random.default_rng(seed).gamma(2.0, 3.0, size=(size, 1))


def gamma_beta_readout(y):
    """Mean and std of y = BN(x), the fraction of its values where a sigmoid saturates, and the fractions
    beyond the histogram's range on either side."""
    return {"mean": float(y.mean()), "std": float(y.std()),
            "saturated": float(np.mean(np.abs(y) > SATURATION)),
            "below": float(np.mean(y < -Y_RANGE)), "above": float(np.mean(y > Y_RANGE))}


def gamma_beta_explorer(size=5000, seed=0):
    """Sliders for gamma and beta; histograms of BN's output y and of sigmoid(y)."""
    x = pre_activations(size, seed)
    figure = Figure(figsize=(8.2, 3.2))
    figure.subplots_adjust(left=0.08, right=0.98, bottom=0.16, top=0.9, wspace=0.25)
    ax_y, ax_sigmoid = figure.subplots(1, 2)
    bins_y, bins_sigmoid = np.linspace(-Y_RANGE, Y_RANGE, 97), np.linspace(0, 1, 51)

    def draw(gamma, beta):
        y = batch_norm_forward(x, np.array([gamma]), np.array([beta]))[0].ravel()  # y = gamma xhat + beta
        readout = gamma_beta_readout(y)
        ax_y.cla()
        counts, _, _ = ax_y.hist(y, bins=bins_y, color="C0")  # values outside the bins are left out...
        for side in (-1, 1):
            ax_y.axvspan(side * SATURATION, side * Y_RANGE, color="C3", alpha=0.12)
        top = max(counts.max(), 1) * 1.25
        for side, share in ((-1, readout["below"]), (1, readout["above"])):
            if share:  # ...and counted at the edge instead
                ax_y.annotate(f"{share:.1%} beyond {side * Y_RANGE:+g}", xy=(side * Y_RANGE, 0.92 * top),
                              xytext=(side * (Y_RANGE - 0.4), 0.92 * top), ha="right" if side > 0 else "left",
                              va="center", fontsize=8, color="C3",
                              arrowprops={"arrowstyle": "->", "color": "C3"})
        ax_y.set(xlim=(-Y_RANGE, Y_RANGE), ylim=(0, top), xlabel="y = gamma * xhat + beta", ylabel="count",
                 title="BN output (red: sigmoid saturates)")
        ax_sigmoid.cla()
        ax_sigmoid.hist(1 / (1 + np.exp(-y)), bins=bins_sigmoid, color="C2")
        ax_sigmoid.set(xlim=(0, 1), xlabel="sigmoid(y)", title="after the sigmoid")
        text = (f"saturated: {100 * readout['saturated']:.1f}% of the batch (|y| over {SATURATION:g}); "
                f"y has mean {round(readout['mean'], 2) + 0.0:.2f} (beta {beta:.2f}) and std {readout['std']:.2f} "
                f"(gamma {gamma:.2f})")
        return figure, text

    controls = {
        "gamma": widgets.FloatSlider(value=1.0, min=0.0, max=6.0, step=0.1, description="gamma"),
        "beta": widgets.FloatSlider(value=0.0, min=-8.0, max=8.0, step=0.1, description="beta"),
    }
    return Explorer(controls, draw)
