"""Scale invariance (Ioffe & Szegedy 2015, section 3.3): BN((aW)u) = BN(Wu), so dL/d(aW) = (1/a) dL/dW.

Notebook 04 defines ``scale_problem``, ``weight_gradient`` and ``gradient_ratio`` in a ``#@save`` cell (this
module holds that very code) and the figure generator draws the sweep over a with them. What else notebook 04
teaches (the output's moments, the identity for fixed statistics, the cancelled bias) is a few lines in the
notebook itself.
"""

import numpy as np
import torch
from matplotlib.figure import Figure

from bnlib.layers import BatchNorm1d


def scale_problem(units=8, inputs=20, batch=32, seed=0):
    """Weights W (units, inputs), a batch u (batch, inputs) and an upstream gradient dout, in float64."""
    generator = torch.Generator().manual_seed(seed)
    W, u, dout = (torch.randn(*shape, generator=generator, dtype=torch.float64)
                  for shape in ((units, inputs), (batch, inputs), (batch, units)))
    return W, u, dout


def weight_gradient(a, W, u, dout, eps=1e-5):
    """BN((aW)u) and the gradient of L = sum(BN((aW)u) * dout) with respect to the scaled weights aW."""
    aW = (a * W).requires_grad_()                       # the weights the layer holds: a leaf of the graph
    out = BatchNorm1d(len(W), eps=eps, dtype=W.dtype)(u @ aW.T)
    out.backward(dout)                                  # dout stands for the rest of the network
    return out.detach(), aW.grad


def gradient_ratio(a, W, u, dout, eps=1e-5):
    """The c in dL/d(aW) = c dL/dW (least squares; section 3.3 says 1/a) and max |BN((aW)u) - BN(Wu)|."""
    out, grad = weight_gradient(1.0, W, u, dout, eps)
    out_a, grad_a = weight_gradient(a, W, u, dout, eps)
    return ((grad_a * grad).sum() / (grad * grad).sum()).item(), (out_a - out).abs().max().item()


def scale_invariance_figure(scales=None, eps=1e-5):
    """Gradient ratio against a (default 10^-3 to 10^3), with the 1/a line; eps breaks the invariance once
    (aWu)'s variance nears eps."""
    scales = np.logspace(-3, 3, 25) if scales is None else np.asarray(scales)
    problem = scale_problem()
    ratios = np.array([gradient_ratio(a, *problem, eps=eps)[0] for a in scales])
    figure = Figure(figsize=(5.5, 4))
    ax = figure.subplots()
    ax.loglog(scales, 1 / scales, color="0.6", lw=3, label="1/a (the paper's section 3.3)")
    ax.loglog(scales, ratios, "o", ms=4, label="measured dL/d(aW) / dL/dW")
    ax.set(xlabel="weight scale a", ylabel="gradient ratio", title="BN(aWu) = BN(Wu): gradients shrink as 1/a")
    ax.legend()
    figure.tight_layout()
    return figure, {"scales": scales, "gradient_ratio": ratios, "eps": eps}


FIGURES = {"bn_scale_invariance": scale_invariance_figure}
