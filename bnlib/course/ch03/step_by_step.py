"""Notebook 03's small batch, and its figures: the forward pass stage by stage, and the batch coupling.

The histograms follow one skewed feature through the nodes of ``bnlib.batch_norm_forward``: x, x - mu,
x_hat, gamma x_hat + beta. Each node moves or rescales the histogram; none changes its shape.
"""

import numpy as np
from matplotlib.figure import Figure

from bnlib.course.ch03.batch_coupling import coupling_figure
from bnlib.normalization import batch_norm_forward

# A batch small enough to read: 4 examples, 3 features on very different scales.
TINY_BATCH = np.array([[1.0, 200.0, -3.0],
                       [2.0, 220.0, -1.0],
                       [3.0, 180.0, -2.0],
                       [6.0, 200.0, 2.0]])


def forward_stages_figure(size=512, gamma=2.0, beta=1.0, seed=0):
    """Histograms of one skewed feature at each node: x, x - mu, x_hat, gamma x_hat + beta."""
    x = 10 + np.random.default_rng(seed).gamma(2.0, 3.0, size=(size, 1))
    out, cache = batch_norm_forward(x, np.array([gamma]), np.array([beta]))
    stages = {"x": ("input x", x), "centered": ("centered x - mu", cache.centered),
              "x_hat": ("normalized x_hat", cache.x_hat), "out": (f"y = {gamma:g} x_hat + {beta:g}", out)}
    figure = Figure(figsize=(8.4, 5.6), layout="constrained")
    data = {}
    for ax, (name, (title, values)) in zip(figure.subplots(2, 2, sharey=True).ravel(), stages.items()):
        values = values.ravel()
        ax.hist(values, bins=30, color="C0")
        ax.axvline(values.mean(), color="C3")
        ax.set(title=title, xlabel=f"mean {round(values.mean(), 2) + 0.0:.2f}, std {values.std():.2f}")
        data[name] = {"mean": values.mean(), "std": values.std()}
    return figure, data


FIGURES = {"bn_forward_stages": forward_stages_figure, "bn_batch_dependence": coupling_figure}
