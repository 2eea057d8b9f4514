"""Batch norm one node at a time: every intermediate of the forward pass, and the chain rule back.

The core (``bnlib.batch_norm_forward`` / ``batch_norm_backward``) computes the same numbers in a few
fused lines and the compact backward formula; this staged version names each node of the computation
graph so that a learner can print it. The tests prove both agree to rounding.

Per channel, over the m values a mini-batch holds for it (m = N for ``(N, C)``, m = N*H*W for
``(N, C, H, W)``), the forward pass is the paper's Algorithm 1::

    mu   = 1/m sum_i x_i            mini-batch mean
    xc   = x - mu                   centred
    var  = 1/m sum_i xc_i^2         biased variance: divide by m, not m - 1
    std  = sqrt(var + eps)          eps keeps a constant channel from dividing by zero
    xhat = xc / std                 normalized: mean 0, variance var / (var + eps) ~ 1
    y    = gamma * xhat + beta      scale and shift
"""

import numpy as np
from matplotlib.figure import Figure

from bnlib.normalization import batch_norm_forward, per_channel, reduce_axes
from bnlib.validation import check_input_shape

# A batch small enough to read: 4 examples, 3 features on very different scales.
TINY_BATCH = np.array([[1.0, 200.0, -3.0],
                       [2.0, 220.0, -1.0],
                       [3.0, 180.0, -2.0],
                       [6.0, 200.0, 2.0]])


def per_channel_moments(x):
    """Mean and biased variance of each channel, over every axis but 1; both of shape (C,)."""
    x = np.asarray(x)
    return x.mean(axis=reduce_axes(x.ndim)), x.var(axis=reduce_axes(x.ndim))


def forward_steps(x, gamma, beta, eps=1e-5):
    """Every node of the forward graph as a dict, ``y`` last. Statistics keep their axes to broadcast."""
    x = np.asarray(x, dtype=np.float64)
    check_input_shape(x.shape, training=True)
    axes = reduce_axes(x.ndim)
    m = x.size // x.shape[1]
    mu = x.sum(axis=axes, keepdims=True) / m           # mu = 1/m sum x_i
    xc = x - mu                                        # xc = x - mu
    var = (xc ** 2).sum(axis=axes, keepdims=True) / m  # var = 1/m sum xc_i^2
    std = np.sqrt(var + eps)                           # std = sqrt(var + eps)
    xhat = xc / std                                    # xhat = xc / std
    gamma = per_channel(np.asarray(gamma, dtype=np.float64), x.ndim)
    y = gamma * xhat + per_channel(np.asarray(beta, dtype=np.float64), x.ndim)  # y = gamma xhat + beta
    return {"x": x, "m": m, "mu": mu, "xc": xc, "var": var, "std": std, "xhat": xhat,
            "gamma": gamma, "eps": eps, "y": y}


def backward_steps(dout, steps):
    """The chain rule through the graph of :func:`forward_steps`, node by node, ``dx`` last.

    Each line is "gradient of a node = gradient of its consumers times the local derivative";
    nodes used twice (xc feeds both xhat and var, x feeds both xc and mu) sum their two paths.
    """
    axes = reduce_axes(steps["x"].ndim)
    m, xc, std, xhat = steps["m"], steps["xc"], steps["std"], steps["xhat"]
    dbeta = dout.sum(axis=axes)                                   # y = ... + beta
    dgamma = (dout * xhat).sum(axis=axes)                         # y = gamma xhat + ...
    dxhat = dout * steps["gamma"]                                 # dy/dxhat = gamma
    dstd = -(dxhat * xc).sum(axis=axes, keepdims=True) / std ** 2  # xhat = xc / std
    dvar = dstd / (2 * std)                                       # std = sqrt(var + eps)
    dxc = dxhat / std + dvar * 2 * xc / m                         # xc feeds xhat and var
    dmu = -dxc.sum(axis=axes, keepdims=True)                      # xc = x - mu
    dx = dxc + dmu / m                                            # x feeds xc and mu = 1/m sum x
    return {"dbeta": dbeta, "dgamma": dgamma, "dxhat": dxhat, "dstd": dstd, "dvar": dvar,
            "dxc": dxc, "dmu": dmu, "dx": dx}


def print_steps(steps, names=("x", "mu", "xc", "var", "std", "xhat", "y"), decimals=3):
    """Print the chosen intermediates, one per paragraph, rounded for reading."""
    with np.printoptions(precision=decimals, suppress=True):
        for name in names:
            value = steps[name]
            print(f"{name}  shape {value.shape}\n{value}\n")


def batch_dependence(x, gamma, beta, example=0, other=1, shifts=np.linspace(-3.0, 3.0, 13), eps=1e-5):
    """How example ``example``'s output moves when only example ``other``'s input is shifted.

    Returns the shifts, the output of ``example`` for each shift (one row per shift) and the largest
    change. In training mode the mini-batch statistics mix the examples, so this change is not zero.
    """
    x = np.asarray(x, dtype=np.float64)
    if example == other:
        raise ValueError("example and other must differ: the point is that changing one example moves another")
    outputs = []
    for shift in shifts:
        moved = x.copy()
        moved[other] += shift
        outputs.append(batch_norm_forward(moved, gamma, beta, eps)[0][example])
    outputs = np.array(outputs)
    return {"shifts": np.asarray(shifts), "outputs": outputs,
            "largest_change": np.abs(outputs - outputs[np.argmin(np.abs(shifts))]).max()}


def forward_stages_figure(size=512, gamma=2.0, beta=1.0, seed=0):
    """Histograms of one skewed feature at each node: x, x - mu, xhat, gamma xhat + beta."""
    x = 10 + np.random.default_rng(seed).gamma(2.0, 3.0, size=(size, 1))
    steps = forward_steps(x, np.array([gamma]), np.array([beta]))
    stages = {"x": "input x", "xc": "centred x - mu", "xhat": "normalized xhat", "y": f"y = {gamma:g} xhat + {beta:g}"}
    figure = Figure(figsize=(11, 2.8))
    data = {}
    for ax, (name, title) in zip(figure.subplots(1, len(stages), sharey=True), stages.items()):
        values = steps[name].ravel()
        ax.hist(values, bins=30, color="C0")
        ax.axvline(values.mean(), color="C3")
        ax.set(title=title, xlabel=f"mean {round(values.mean(), 2) + 0.0:.2f}, std {values.std():.2f}")
        data[name] = {"mean": values.mean(), "std": values.std()}
    figure.tight_layout()
    return figure, data


def batch_dependence_figure():
    """Example 0's outputs as example 1 of TINY_BATCH is shifted: training-mode BN couples the examples."""
    gamma, beta = np.ones(3), np.zeros(3)
    result = batch_dependence(TINY_BATCH, gamma, beta)
    figure = Figure(figsize=(5.5, 3.8))
    ax = figure.subplots()
    for feature in range(TINY_BATCH.shape[1]):
        ax.plot(result["shifts"], result["outputs"][:, feature], "o-", ms=3, label=f"feature {feature}")
    ax.set(xlabel="shift added to example 1's input", ylabel="example 0's output",
           title="Changing example 1 moves example 0's output")
    ax.legend()
    figure.tight_layout()
    return figure, result


FIGURES = {"bn_forward_stages": forward_stages_figure, "bn_batch_dependence": batch_dependence_figure}
