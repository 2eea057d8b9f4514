"""Residual networks of fully connected blocks, and the variance of their residual stream at initialization.

``ResMLP(depth, kind)``: a stem Linear(784 -> width), ``depth`` residual blocks of width ``width``, a head
Linear(width -> 10) reading relu(x). A block adds a branch f(x) to its input; ``kind`` says where batch norm
sits (BN: torch's ``nn.BatchNorm1d``, the same arithmetic as bnlib's and cheaper per call):

- ``"branch"``:   x + BN(W2 relu(BN(W1 x)))            BN on the branch, nothing after the addition;
- ``"post"``:     relu(x + BN(W2 relu(BN(W1 x))))      He et al. 2016's original block, a ReLU after the addition;
- ``"after"``:    relu(BN(x + W2 relu(BN(W1 x))))      BN after the addition: it normalizes the skip path too;
- ``"none"``:     x + W2 relu(W1 relu(x))              no normalization (biases instead of BN's beta);
- ``"skipinit"``: x + alpha W2 relu(W1 relu(x))        the same with a learnable scalar alpha, 0 at first
                                                      (De & Smith 2020's SkipInit).

Every weight starts as He's N(0, 2 / fan_in), so a branch without normalization hands on about the variance
it receives. The normalized kinds end their stem with BN (the stream starts with variance 1).

At initialization a branch is uncorrelated with its input, so Var(x_(l+1)) = Var(x_l) + Var(f_l). With BN
closing the branch, Var(f_l) = gamma^2 = 1 whatever came in: Var(x_l) = l + 1, and the branch of block l
carries 1/l of the variance of its input. Without normalization Var(f_l) = Var(x_l) and the variance doubles
per block. ``run_variance`` measures both on a real batch of MNIST.
"""

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from bnlib.course.cache import Config, experiment
from bnlib.course.training import mnist, small_model_settings

KINDS = ("branch", "post", "after", "none", "skipinit")
NORMALIZED = ("branch", "post", "after")


def he_linear(fan_in, fan_out, bias):
    """A Linear layer with He's initialization N(0, 2 / fan_in), its bias (if any) at zero."""
    layer = nn.Linear(fan_in, fan_out, bias=bias)
    nn.init.normal_(layer.weight, 0.0, math.sqrt(2.0 / fan_in))
    if bias:
        nn.init.zeros_(layer.bias)
    return layer


class Block(nn.Module):
    """One residual block of ``kind`` (see the module's docstring); ``branch(x)`` is f(x), ``forward(x)`` the block."""

    def __init__(self, width, kind):
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        self.kind, normalized = kind, kind in NORMALIZED
        self.linear1 = he_linear(width, width, bias=not normalized)
        self.linear2 = he_linear(width, width, bias=not normalized or kind == "after")
        if normalized:
            self.norm1, self.norm2 = nn.BatchNorm1d(width), nn.BatchNorm1d(width)
        if kind == "skipinit":
            self.alpha = nn.Parameter(torch.zeros(()))

    def branch(self, x):
        if self.kind in ("branch", "post"):
            return self.norm2(self.linear2(torch.relu(self.norm1(self.linear1(x)))))
        if self.kind == "after":
            return self.linear2(torch.relu(self.norm1(self.linear1(x))))
        f = self.linear2(torch.relu(self.linear1(torch.relu(x))))
        return self.alpha * f if self.kind == "skipinit" else f

    def join(self, x, f):
        """The block's output from its input ``x`` and its branch's output ``f``."""
        if self.kind == "post":
            return torch.relu(x + f)
        if self.kind == "after":
            return torch.relu(self.norm2(x + f))
        return x + f

    def forward(self, x):
        return self.join(x, self.branch(x))


class ResMLP(nn.Module):
    """784 -> stem (Linear, then BN for the normalized kinds) -> ``depth`` blocks -> relu -> Linear(10).
    The weights are drawn from torch's generator seeded with ``seed``; the head's from N(0, 1 / width)."""

    def __init__(self, depth, kind, width=100, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        normalized = kind in NORMALIZED
        self.stem = nn.Sequential(he_linear(784, width, bias=not normalized),
                                  *([nn.BatchNorm1d(width)] if normalized else []))
        self.blocks = nn.ModuleList(Block(width, kind) for _ in range(depth))
        self.head = nn.Linear(width, 10)
        nn.init.normal_(self.head.weight, 0.0, math.sqrt(1.0 / width))
        nn.init.zeros_(self.head.bias)

    def forward(self, x):
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        return self.head(torch.relu(x))


def zero_init_last_bn(model):
    """Goyal et al. 2017's initialization: gamma = 0 in the last BN of each residual block's branch, so that
    every block starts as the identity; returns ``model``, changed in place."""
    for block in model.blocks:
        nn.init.zeros_(block.norm2.weight)
    return model


@dataclass(frozen=True)
class VarianceRun(Config):
    """One ``depth``-block net of each kind (and "branch" with zero-init gamma), one forward pass in train mode on
    ``examples`` random training images: the stream after block l of a deep net is that of an l-block net."""

    depth: int = 64
    width: int = 100
    examples: int = 500
    seed: int = 0


STREAMS = KINDS + ("zero gamma",)  # "zero gamma": "branch" with zero_init_last_bn


def variance_net(variant, config):
    if variant == "zero gamma":
        return zero_init_last_bn(ResMLP(config.depth, "branch", config.width, config.seed))
    return ResMLP(config.depth, variant, config.width, config.seed)


@experiment("ch11_variance", VarianceRun)
@torch.no_grad()
def run_variance(config):
    """Per variant (rows, ``STREAMS``) and depth l = 0..depth: ``variance``, the mean over units of the batch
    variance of the stream x_l, and ``ratio``, Var(f_l) / Var(x_(l-1)) for block l (NaN at l = 0)."""
    images, _ = mnist(train=True)
    x0 = images[torch.randint(len(images), (config.examples,), generator=torch.Generator().manual_seed(config.seed))]
    variance = np.empty((len(STREAMS), config.depth + 1))
    ratio = np.full((len(STREAMS), config.depth + 1), np.nan)
    with small_model_settings():
        for row, variant in enumerate(STREAMS):
            net = variance_net(variant, config).train()
            x = net.stem(x0)
            variance[row, 0] = x.var(0, unbiased=False).mean().item()
            for l, block in enumerate(net.blocks, start=1):
                f = block.branch(x)
                ratio[row, l] = (f.var(0, unbiased=False).mean() / x.var(0, unbiased=False).mean()).item()
                x = block.join(x, f)
                variance[row, l] = x.var(0, unbiased=False).mean().item()
    return {"variance": variance, "ratio": ratio}


def growth_per_block(variance, start=0):
    """The geometric mean growth of the variance per block, from depth ``start`` to the last."""
    return (variance[-1] / variance[start]) ** (1 / (len(variance) - 1 - start))
