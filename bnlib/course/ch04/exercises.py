"""Checks for notebook 04, gamma and beta: the identity with fixed statistics, folding BN into the Linear
before it, the gradient under scaling, and where gamma and beta put a sigmoid's inputs."""

import numpy as np
import torch

from bnlib.course.ch04.reparameterization import gradient_ratio, scale_problem
from bnlib.course.checks import call, check_choice, not_yet, verdict
from bnlib.course.ch04.explorers import SATURATION, pre_activations
from bnlib.normalization import batch_norm_forward

EPS = 1e-5
SCALE = 4.0
GRADIENT_CHOICES = {"4 times larger": SCALE, "the same": 1.0, "4 times smaller": 1 / SCALE,
                    "16 times smaller": 1 / SCALE ** 2}
SATURATION_SETTINGS = {"gamma=4, beta=0": (4.0, 0.0), "gamma=1, beta=5": (1.0, 5.0)}


def eval_layer(seed=4, channels=3):
    """A float64 ``torch.nn.BatchNorm1d`` in eval mode with fixed running statistics (one channel's variance
    is small, so that eps matters) and random gamma and beta; and a batch x of inputs for it."""
    rng = np.random.default_rng(seed)
    layer = torch.nn.BatchNorm1d(channels, eps=EPS, dtype=torch.float64).eval()
    with torch.no_grad():
        layer.running_mean.copy_(torch.from_numpy(rng.normal(0.0, 10.0, channels)))
        layer.running_var.copy_(torch.from_numpy(np.array([4.0, 1e-3, 900.0][:channels])))
        layer.weight.copy_(torch.from_numpy(rng.uniform(0.5, 2.0, channels)))
        layer.bias.copy_(torch.from_numpy(rng.normal(0.0, 1.0, channels)))
    x = torch.from_numpy(rng.normal(0.0, 10.0, size=(16, channels)))
    return layer, x


def check_eval_identity(eval_identity_parameters):
    """``eval_identity_parameters(running_mean, running_var, eps) -> (gamma, beta)``: with them an eval-mode BN
    returns every input unchanged, whatever batch it comes in."""
    layer, x = eval_layer()
    mean, var = layer.running_mean.numpy().copy(), layer.running_var.numpy().copy()
    answer = call(eval_identity_parameters, mean, var, EPS)
    if answer.shape != (2, len(mean)):
        not_yet(f"Return a pair (gamma, beta), each with one value per channel (shape ({len(mean)},)).")
    gamma, beta = answer
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(gamma))
        layer.bias.copy_(torch.from_numpy(beta))
        error = ((layer(x) - x).abs().max() / x.abs().max()).item()
    if np.allclose(gamma, mean) and np.allclose(beta, np.sqrt(var + EPS)):
        not_yet("You swapped them: beta is the shift (it puts the mean back), gamma the scale.")
    if np.allclose(gamma, np.sqrt(var)):
        not_yet("Close, but not exact: the layer divides by sqrt(running_var + eps), so gamma must multiply "
                "by the same.")
    if np.allclose(gamma, var + EPS) or np.allclose(gamma, var):
        not_yet("gamma multiplies: it must undo a division by a standard deviation, not by a variance.")
    verdict(error < 1e-12, "With fixed statistics your gamma and beta make BN the identity on every input.",
            "The eval-mode layer computes gamma (x - running_mean) / sqrt(running_var + eps) + beta. "
            "Which gamma and beta turn that back into x?")


def fold_example(seed=5, inputs=6, units=3):
    """A float64 Linear (with bias) followed by an eval-mode BatchNorm1d, and a batch of inputs."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    linear = torch.nn.Linear(inputs, units, dtype=torch.float64)
    bn = eval_layer(seed, units)[0]
    x = torch.randn(10, inputs, generator=generator, dtype=torch.float64)
    return linear, bn, x


def check_fold_linear_bn(fold_linear_bn):
    """``fold_linear_bn(linear, bn) -> torch.nn.Linear``: one Linear whose output is ``bn(linear(x))`` in eval
    mode, for every x."""
    if isinstance(fold_linear_bn, torch.nn.Module):
        not_yet("Pass your function fold_linear_bn itself, not a layer it returned.")
    if not callable(fold_linear_bn):
        call(fold_linear_bn)  # the hint for a missing answer or a result passed instead of the function
    linear, bn, x = fold_example()
    with torch.no_grad():
        expected = bn(linear(x))

    def folded_output(linear, bn):
        folded = fold_linear_bn(linear, bn)
        if folded is None:
            return None
        if not callable(folded):
            not_yet(f"Return the folded layer, a torch.nn.Linear (got {type(folded).__name__}).")
        with torch.no_grad():
            return folded(x)

    mine = call(folded_output, linear, bn)
    if mine.shape != tuple(expected.shape):
        not_yet(f"The folded layer must map {x.shape[1]} inputs to {expected.shape[1]} units, like linear.")
    with torch.no_grad():
        weight, bias = linear.weight, linear.bias
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        scale_without_eps = bn.weight / torch.sqrt(bn.running_var)
        without_bias = x @ (scale[:, None] * weight).T + bn.bias - scale * bn.running_mean
        without_eps = (x @ (scale_without_eps[:, None] * weight).T
                       + scale_without_eps * (bias - bn.running_mean) + bn.bias)
    if np.allclose(mine, without_bias.numpy()):
        not_yet("Almost: the Linear's own bias b goes through BN too. The folded bias is "
                "scale * (b - running_mean) + beta.")
    if np.allclose(mine, without_eps.numpy()):
        not_yet("Close, but eps is missing: BN divides by sqrt(running_var + eps).")
    verdict(np.allclose(mine, expected.numpy(), rtol=1e-10, atol=1e-10),
            "Your single Linear gives bn(linear(x)) on every input: Algorithm 2's step 11, composed with the Linear.",
            "In eval mode BN is y = s (z - running_mean) + beta per unit, with s = gamma / sqrt(running_var + eps), "
            "and z = W x + b. Substitute z and collect the terms that multiply x (row k of W by s_k) and the rest.")


def measured_gradient_factor():
    """The measured dL/d(aW) / dL/dW at a = ``SCALE``, through bnlib.BatchNorm1d."""
    return gradient_ratio(SCALE, *scale_problem())[0]


def check_scaled_gradient(prediction):
    """``prediction``: how the weight gradient changes when W feeding BN is multiplied by 4."""
    measured = measured_gradient_factor()
    expected = min(GRADIENT_CHOICES, key=lambda choice: abs(np.log(GRADIENT_CHOICES[choice] / measured)))
    check_choice(prediction, expected, list(GRADIENT_CHOICES),
                 "BN ignores the scale of W, and the chain rule through aW does the rest (measured through "
                 "bnlib.BatchNorm1d).",
                 "The output does not change when W grows, but the chain rule through aW brings in a factor: "
                 "run gradient_ratio(4.0, *scale_problem()) from the notebook, or re-read section 4.")


def saturated_fraction(gamma, beta):
    """The fraction of y = gamma xhat + beta beyond |y| > SATURATION on the explorer's pre-activations."""
    x = pre_activations()
    y = batch_norm_forward(x, np.array([gamma]), np.array([beta]), EPS)[0]
    return float(np.mean(np.abs(y) > SATURATION))


def check_saturation(prediction):
    """``prediction``: which setting of the explorer puts more of the unit in the sigmoid's flat tails."""
    fractions = {name: saturated_fraction(*setting) for name, setting in SATURATION_SETTINGS.items()}
    low, high = sorted(fractions.values())
    expected = "about the same" if high - low < 0.05 else max(fractions, key=fractions.get)
    check_choice(prediction, expected, [*SATURATION_SETTINGS, "about the same"],
                 "A shift moves the whole unit toward one tail; a scale pushes out only its extremes.",
                 "Set both in the explorer above and read the saturated fraction. With gamma = 4, which values "
                 "of xhat end beyond |y| = 4? With beta = 5?")
