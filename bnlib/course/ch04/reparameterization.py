"""What gamma and beta buy, and what batch norm makes irrelevant: the layer's bias and its weights' scale.

After normalization each unit has mean 0 and variance ~1 over the batch; ``y = gamma xhat + beta``
then has mean ``beta`` and standard deviation ``gamma sqrt(var / (var + eps)) ~ gamma``: the unit's
location and spread become two parameters that gradient descent sets directly.

- Identity: ``gamma = sqrt(var + eps)``, ``beta = mu`` undo the normalization, ``y = x``; so BN
  never takes anything away from what the layer can represent.
- Bias cancellation: ``BN(W u + b) = BN(W u)``, since b shifts every example's value and the mean
  alike; the gradient of any loss with respect to b is zero. beta takes the bias's place.
- Scale invariance (section 3.3 of the paper): ``BN(a W u) = BN(W u)`` for a > 0 (eps aside), hence
  ``dL/d(aW) = (1/a) dL/dW``: larger weights get smaller gradients, which stabilizes training.
"""

import numpy as np
import torch
from matplotlib.figure import Figure

from bnlib.layers import BatchNorm1d
from bnlib.normalization import batch_norm_forward


def output_moments(x, gamma, beta, eps=1e-5):
    """Mean and standard deviation of each unit of BN(x) over the batch: (~beta, ~gamma)."""
    out = batch_norm_forward(x, gamma, beta, eps)[0]
    return out.mean(axis=0), out.std(axis=0)


def identity_parameters(x, eps=1e-5):
    """The gamma and beta that make BN the identity on x: gamma = sqrt(var + eps), beta = mu."""
    cache = batch_norm_forward(x, np.ones(x.shape[1]), np.zeros(x.shape[1]), eps)[1]
    return np.sqrt(cache.var + eps), cache.mean


def identity_recovery_error(x, eps=1e-5):
    """max |BN(x; sqrt(var + eps), mu) - x|: zero up to rounding."""
    gamma, beta = identity_parameters(x, eps)
    return float(np.abs(batch_norm_forward(x, gamma, beta, eps)[0] - x).max())


def linear_then_bn(seed=0, inputs=20, units=8, batch=32, bias=True, scale=1.0, eps=1e-5):
    """A float64 ``Linear -> bnlib.BatchNorm1d`` pair, an input batch u and a fixed random upstream dout.

    The weights are multiplied by ``scale``; dout stands for whatever loss follows (L = sum(BN * dout)).
    """
    generator = torch.Generator().manual_seed(seed)
    linear = torch.nn.Linear(inputs, units, bias=bias).double()
    with torch.no_grad():
        linear.weight.copy_(scale * torch.randn(units, inputs, generator=generator, dtype=torch.float64))
        if bias:
            linear.bias.copy_(3 * torch.randn(units, generator=generator, dtype=torch.float64))
    bn = BatchNorm1d(units, eps=eps).double()
    u = torch.randn(batch, inputs, generator=generator, dtype=torch.float64)
    dout = torch.randn(batch, units, generator=generator, dtype=torch.float64)
    return linear, bn, u, dout


def bias_cancellation(seed=0):
    """The bias before BN: its gradient (zero up to rounding) next to the weight gradient's size,
    and how much the output moves when the bias is set to zero."""
    linear, bn, u, dout = linear_then_bn(seed)
    out = bn(linear(u))
    (out * dout).sum().backward()
    with torch.no_grad():
        without_bias = bn(u @ linear.weight.T)
    return {"bias_gradient": linear.bias.grad.numpy().copy(),
            "largest_bias_gradient": linear.bias.grad.abs().max().item(),
            "largest_weight_gradient": linear.weight.grad.abs().max().item(),
            "output_change_without_bias": (out - without_bias).abs().max().item()}


def weight_gradient(scale, seed=0, eps=1e-5):
    """BN's output and dL/dW at the weights ``scale * W`` (same W, u and dout for every scale)."""
    linear, bn, u, dout = linear_then_bn(seed, bias=False, scale=scale, eps=eps)
    out = bn(linear(u))
    (out * dout).sum().backward()
    return out.detach(), linear.weight.grad


def scale_invariance(a, seed=0, eps=1e-5):
    """Compare the layer at weights W and aW: output change and the gradient ratio (expected 1/a)."""
    out, grad = weight_gradient(1.0, seed, eps)
    out_scaled, grad_scaled = weight_gradient(a, seed, eps)
    ratio = (grad_scaled * grad).sum() / (grad * grad).sum()  # least-squares c in grad_scaled ~ c grad
    return {"a": a, "output_change": (out_scaled - out).abs().max().item(), "gradient_ratio": ratio.item(),
            "expected_ratio": 1 / a,
            "relative_deviation": ((a * grad_scaled - grad).abs().max() / grad.abs().max()).item()}


def scale_invariance_figure(scales=np.logspace(-3, 3, 25), eps=1e-5):
    """Gradient ratio against a, with the 1/a line; eps breaks the invariance once (a W u)'s variance ~ eps."""
    rows = [scale_invariance(a, eps=eps) for a in scales]
    ratios = np.array([row["gradient_ratio"] for row in rows])
    figure = Figure(figsize=(5.5, 4))
    ax = figure.subplots()
    ax.loglog(scales, 1 / scales, color="0.6", lw=3, label="1/a (the paper's section 3.3)")
    ax.loglog(scales, ratios, "o", ms=4, label="measured |dL/d(aW)| / |dL/dW|")
    ax.set(xlabel="weight scale a", ylabel="gradient ratio", title="BN(aWu) = BN(Wu): gradients shrink as 1/a")
    ax.legend()
    figure.tight_layout()
    return figure, {"scales": scales, "gradient_ratio": ratios, "eps": eps}


FIGURES = {"bn_scale_invariance": scale_invariance_figure}
