"""Checks for notebook 04, gamma and beta: the identity with fixed statistics, folding BN into the Linear
before it, the gradient under scaling, and where gamma and beta put a sigmoid's inputs."""

import numpy as np
import torch

from bnlib.course.ch04.reparameterization import gradient_ratio, scale_problem
from bnlib.course.checks import (call, check, check_choice, check_close, close, folded_layer, layer_output,
                                 not_yet, passed)
from bnlib.course.ch04.explorers import SATURATION, pre_activations
from bnlib.normalization import batch_norm_forward

EPS = 1e-5
IDENTITY_EPS = (EPS, 0.1)  # the default, and one an answer that ignores its eps argument gets wrong
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


@check
def check_eval_identity(eval_identity_parameters):
    """``eval_identity_parameters(running_mean, running_var, eps) -> (gamma, beta)``: with them an eval-mode BN
    returns every input unchanged, whatever batch it comes in; tried with the default eps and a larger one."""
    __tracebackhide__ = True  # noqa: F841
    for eps in IDENTITY_EPS:
        layer, x = eval_layer()
        layer.eps = eps
        mean, var = layer.running_mean.numpy().copy(), layer.running_var.numpy().copy()
        answer = call(eval_identity_parameters, mean, var, eps)
        if answer.shape != (2, len(mean)):
            not_yet(f"Return a pair (gamma, beta), each with one value per channel (shape ({len(mean)},)).")
        with torch.no_grad():  # what the exercise states: the layer loaded with them gives back its input
            layer.weight.copy_(torch.from_numpy(answer[0]))
            layer.bias.copy_(torch.from_numpy(answer[1]))
            output = layer(x).numpy()
        std = np.sqrt(var + eps)
        mistakes = [
            (np.stack([mean, std]), "You swapped them: beta is the shift (it puts the mean back), gamma the scale."),
            (np.stack([np.sqrt(var), mean]), "Close, but not exact: the layer divides by sqrt(running_var + eps), so "
                                            "gamma must multiply by the same."),
            (np.stack([np.sqrt(var + EPS), mean]), f"With eps = {eps:g} your gamma is sqrt(running_var + 1e-5): you "
                                                   "ignored the eps argument. Use the eps you are given."),
            (np.stack([var + eps, mean]), "gamma multiplies: it must undo a division by a standard deviation, not by a "
                                          "variance."),
            (np.stack([var, mean]), "gamma multiplies: it must undo a division by a standard deviation, not by a "
                                    "variance."),
            (np.stack([std, -mean]), "beta is added after the scaling: to put the mean back it is +running_mean."),
            (np.stack([1 / std, mean]), "gamma must undo the division by sqrt(running_var + eps): multiply by it, "
                                        "not by its inverse."),
        ]
        named = next((hint for params, hint in mistakes if close(answer, params)), None)
        check_close(output, x.numpy(), None, "The eval-mode layer computes gamma (x - running_mean) / "
                    "sqrt(running_var + eps) + beta. Which gamma and beta turn that back into x?",
                    [(output, named)] if named else [], rtol=1e-10, atol=1e-10)
    passed("With fixed statistics your gamma and beta make BN the identity on every input, whatever eps.")


def fold_example(bias=True, seed=5, inputs=6, units=3):
    """A float64 Linear (with or without bias) and a BatchNorm1d, both in eval mode (as torch's
    ``fuse_linear_bn_eval`` requires), the BN with running statistics of its own; and a batch of inputs."""
    generator = torch.Generator().manual_seed(seed)
    linear = torch.nn.Linear(inputs, units, bias=bias, dtype=torch.float64).eval()
    with torch.no_grad():
        for tensor in linear.parameters():
            tensor.copy_(torch.randn(tensor.shape, generator=generator, dtype=torch.float64))
    bn = eval_layer(seed, units)[0]
    x = torch.randn(10, inputs, generator=generator, dtype=torch.float64)
    return linear, bn, x


def eval_bn(z, bn, eps=None, gamma=True, beta=True, mean=True):
    """Eval-mode BN of ``z`` with ``bn``'s numbers, or a mistake's version (another eps, a term left out)."""
    eps = bn.eps if eps is None else eps
    scale = (bn.weight if gamma else 1.0) / torch.sqrt(bn.running_var + eps)
    return scale * (z - (bn.running_mean if mean else 0.0)) + (bn.bias if beta else 0.0)


def _fold_mistakes(linear, bn, x):
    """(what a common fold mistake computes on x; its hint)."""
    with torch.no_grad():
        z, wx = linear(x), x @ linear.weight.T
        mistakes = [
            (eval_bn(wx, bn), "Almost: the Linear's own bias b goes through BN too. The folded "
                                               "bias is scale * (b - running_mean) + beta."),
            (eval_bn(z, bn, eps=0.0), "Close, but eps is missing: BN divides by sqrt(running_var + eps)."),
            (eval_bn(z, bn, gamma=False), "gamma is missing: the scale of unit k is gamma_k / sqrt(running_var_k + "
                                          "eps)."),
            (eval_bn(z, bn, beta=False), "beta is missing from the folded bias: scale * (b - running_mean) + beta."),
            (eval_bn(z, bn, mean=False), "running_mean is missing from the folded bias: scale * (b - running_mean) "
                                         "+ beta."),
            (bn.weight * (z - bn.running_mean) / (bn.running_var + bn.eps) + bn.bias,
             "That divides by the variance: the scale is gamma / sqrt(running_var + eps)."),
            (wx + eval_bn(z - wx, bn), "Only the bias was folded: the weight rows must be scaled too "
                                                   "(row k of W by s_k)."),
        ]
    return [(value.numpy(), hint) for value, hint in mistakes]


@check
def check_fold_linear_bn(fold_linear_bn):
    """``fold_linear_bn(linear, bn) -> torch.nn.Linear``: one Linear (with a bias) whose output is ``bn(linear(x))``
    in eval mode, for every x, whether or not ``linear`` has a bias. Torch's own ``fuse_linear_bn_eval`` passes."""
    __tracebackhide__ = True  # noqa: F841
    if not callable(fold_linear_bn):
        call(fold_linear_bn)  # the hint for a missing answer or a result passed instead of the function
    for bias in (True, False):
        linear, bn, x = fold_example(bias)
        folded = folded_layer(fold_linear_bn, linear, bn, torch.nn.Linear, "the folded layer, one torch.nn.Linear")
        if folded.bias is None:
            not_yet("The folded Linear needs a bias (bias=True), even when linear has none: beta - s * running_mean "
                    "ends up there.")
        with torch.no_grad():
            expected = bn(linear(x)).numpy()
        check_close(layer_output(folded, x), expected, None,
                    f"{'With' if bias else 'Without'} a bias in linear: in eval mode BN is y = s (z - running_mean) + "
                    "beta per unit, with s = gamma / sqrt(running_var + eps), and z = W x + b (b = 0 without bias). "
                    "Substitute z and collect the terms that multiply x (row k of W by s_k) and the rest.",
                    _fold_mistakes(linear, bn, x), rtol=1e-10, atol=1e-10)
    passed("Your single Linear gives bn(linear(x)) on every input, with or without a bias in linear: Algorithm 2's "
           "step 11, composed with the Linear.")


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
