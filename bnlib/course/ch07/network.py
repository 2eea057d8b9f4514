"""The network of chapter 7's experiments: the paper's MLP with ReLU units and a choice of normalization.

It is the paper's MLP (``bnlib.course.models.mlp``: 784-100-100-100-10) with ReLU units and weights
drawn from N(0, 0.05^2) (0.05 is about He's sqrt(2 / 784) for the first layer). ReLU rather than sigmoid
because the chapter compares batch norm with LayerNorm and GroupNorm, and with sigmoid units those train
poorly in short runs, which would muddle the comparison.
"""

import torch
from torch import nn

from bnlib.course.models import mlp
from bnlib.layers import BatchNorm1d

INIT_STD = 0.05
GROUPS = 10  # GroupNorm: 100 units in 10 groups of 10

NORMS = {
    "none": None,
    "batch": BatchNorm1d,                            # statistics over the batch, per unit
    "layer": nn.LayerNorm,                           # over the units, per example
    "group": lambda units: nn.GroupNorm(GROUPS, units),  # over each group of units, per example
}


def chapter_mlp(norm="batch", init_std=INIT_STD, seed=0, **kwargs):
    """``paper_mlp`` with ReLU units and the hidden-layer normalization ``norm``.

    ``norm`` is a key of ``NORMS`` or a callable ``units -> module`` (e.g. a noisy batch norm);
    the weights are drawn from the torch generator seeded with ``seed``.
    """
    make_norm = NORMS[norm] if isinstance(norm, str) and norm in NORMS else norm
    if not callable(make_norm) and make_norm is not None:
        raise ValueError(f"norm must be one of {sorted(NORMS)} or a callable units -> module, got {norm!r}")
    torch.manual_seed(seed)
    return mlp(make_norm, nn.ReLU, init_std=init_std, **kwargs)
