"""Alternatives for small batches: normalize over the units of one example instead of over the batch.

All three layers compute (x - mean) / sqrt(var + eps), then a per-unit scale and shift; they differ
only in which values share one mean and variance. For a hidden layer's activations h of shape (N, C):

- BatchNorm: per unit c, over the N examples of the batch: mu_c = 1/N sum_n h[n, c].
- LayerNorm (Ba, Kiros & Hinton 2016): per example n, over its C units: mu_n = 1/C sum_c h[n, c].
- GroupNorm (Wu & He 2018): per example n and group g of C/G units: mu_ng = 1/(C/G) sum_{c in g} h[n, c].
  LayerNorm is GroupNorm with one group.

For images (N, C, H, W) the same rule adds the spatial axes: BN over (N, H, W), LN over (C, H, W), GN over
(C/G, H, W). LayerNorm and GroupNorm never look across examples, so an example's output does not
depend on its batch-mates, training and inference compute the same thing, and batch size 1 works.

The same reasoning explains why BN does not fit recurrent networks well: statistics would be needed
per time step, sequences have different lengths, and a test sequence can be longer than any seen in
training; LayerNorm normalizes each example at each step on its own.
"""

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from torch import nn

from bnlib.course.ch07.network import GROUPS
from bnlib.course.ch07.small_batches import SWEEP_CONFIG, batch_size_sweep
from bnlib.functional import batch_norm_train
from bnlib.normalization import EPS

STATISTIC_AXIS = {"batch": 0, "layer": 1, "group": 2}  # of h (N, C), or of h as (N, G, C/G) for group
AXES = tuple(STATISTIC_AXIS)


def normalize(h, norm, groups=GROUPS, eps=EPS):
    """(h - mean) / sqrt(var + eps) for (N, C) numpy activations, statistics as ``norm`` takes them."""
    h = np.asarray(h, dtype=np.float64)
    if h.ndim != 2:
        raise ValueError(f"h must be (N, C) activations, got shape {h.shape}")
    if norm not in AXES:
        raise ValueError(f"norm must be one of {AXES}, got {norm!r}")
    if norm == "group" and h.shape[1] % groups:
        raise ValueError(f"{h.shape[1]} units do not split into {groups} equal groups; pick a divisor")
    x = h.reshape(len(h), groups, -1) if norm == "group" else h   # group: (N, G, C/G)
    axis = STATISTIC_AXIS[norm]  # batch: over examples, per unit; layer: over units; group: within each group
    mean, var = x.mean(axis, keepdims=True), x.var(axis, keepdims=True)
    return ((x - mean) / np.sqrt(var + eps)).reshape(h.shape)


def torch_reference(h, norm, groups=GROUPS, eps=EPS):
    """The same normalization by the torch layers (no scale and shift), float64."""
    x = torch.as_tensor(np.asarray(h, dtype=np.float64))
    if norm == "batch":
        return batch_norm_train(x, None, None, eps)[0].numpy()
    layer = nn.LayerNorm(x.shape[1], eps=eps, elementwise_affine=False) if norm == "layer" else \
        nn.GroupNorm(groups, x.shape[1], eps=eps, affine=False)
    return layer(x).numpy()


def batch_mate_influence(h, norm, example=0, seed=0):
    """Largest change of example ``example``'s normalized output when every OTHER example of the batch
    is replaced by fresh random values: positive for BN, zero for LayerNorm and GroupNorm."""
    h = np.asarray(h, dtype=np.float64)
    others = np.random.default_rng(seed).normal(size=h.shape)
    changed = np.where(np.arange(len(h))[:, None] == example, h, others)
    return float(np.abs(normalize(changed, norm)[example] - normalize(h, norm)[example]).max())


def shared_cells(norm, examples, units, groups, at=(0, 0)):
    """Boolean (examples, units) map of the cells sharing one mean and variance with cell ``at``."""
    n, c = np.indices((examples, units))
    if norm == "batch":
        return c == at[1]
    if norm == "layer":
        return n == at[0]
    size = units // groups
    return (n == at[0]) & (c // size == at[1] // size)


def alternatives_figure(examples=6, units=12, groups=3):
    """Which activations share a statistic (left three panels) and test accuracy at batch 2 (right)."""
    figure = Figure(figsize=(8.4, 5.6))
    axes = figure.subplots(2, 2).ravel()
    for ax, norm in zip(axes, AXES):
        cells = shared_cells(norm, examples, units, groups)
        for (n, c), shared in np.ndenumerate(cells):
            ax.add_patch(Rectangle((c, examples - 1 - n), 1, 1, facecolor="C1" if shared else "white",
                                   edgecolor="gray", lw=0.5))
        ax.set(xlim=(0, units), ylim=(0, examples), aspect="equal", xticks=[], yticks=[],
               xlabel="units C", ylabel="examples N", title=f"{norm} norm")
    sweep = batch_size_sweep()
    column = SWEEP_CONFIG.batch_sizes.index(2)
    accuracies = 100 * sweep["eval_accuracy"][:, column]
    axes[3].bar(AXES, accuracies, color=["C0", "C1", "C2"])
    axes[3].set(ylabel="test accuracy (%)", title="Trained at batch size 2", ylim=(0, 100))
    figure.tight_layout()
    return figure, {"norms": AXES, "accuracy_at_batch_2": accuracies}


FIGURES = {"ch07_norm_alternatives": alternatives_figure}
