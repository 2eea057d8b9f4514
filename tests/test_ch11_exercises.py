"""The exercise checks of notebook 11 accept right answers written in different ways, and refuse blanks,
hostile answers and the usual mistakes, each with a hint that names it."""

import copy

import numpy as np
import pytest
import torch
from exercise_checks import refused, stub
from torch import nn

from bnlib import BatchRenorm1d
from bnlib.course.ch11 import exercises
from bnlib.course.ch11.residual import ResMLP

# Exercise 1: Batch Renorm's training forward


def renorm_lines(x, gamma, beta, mu, sigma, r_max, d_max, eps):
    """Right: Algorithm 1 line by line."""
    mean = x.mean(0)
    std = torch.sqrt(((x - mean) ** 2).mean(0) + eps)
    r = torch.clamp(std / sigma, 1 / r_max, r_max).detach()
    d = torch.clamp((mean - mu) / sigma, -d_max, d_max).detach()
    return gamma * ((x - mean) / std * r + d) + beta, r, d


def renorm_as_batch_norm(x, gamma, beta, mu, sigma, r_max, d_max, eps):
    """Right: batch norm with weight gamma r and bias gamma d + beta (torch's functional batch norm)."""
    with torch.no_grad():
        std = torch.sqrt(x.var(0, unbiased=False) + eps)
        r = (std / sigma).clamp(min=1 / r_max, max=r_max)
        d = ((x.mean(0) - mu) / sigma).clamp(min=-d_max, max=d_max)
    y = nn.functional.batch_norm(x, None, None, gamma * r, gamma * d + beta, training=True, eps=eps)
    return y, r, d


def renorm_minmax(x, gamma, beta, mu, sigma, r_max, d_max, eps):
    """Right: torch.minimum / maximum for the clips, var_mean, r and d returned as (1, C) rows."""
    var, mean = torch.var_mean(x, dim=0, keepdim=True, unbiased=False)
    std = (var + eps).sqrt()
    r = torch.minimum(torch.maximum(std / sigma, torch.full_like(std, 1 / r_max)), torch.full_like(std, r_max))
    d = torch.minimum(torch.maximum((mean - mu) / sigma, torch.full_like(std, -d_max)), torch.full_like(std, d_max))
    r, d = r.detach(), d.detach()
    return gamma * ((x - mean) / std * r + d) + beta, r, d


def test_the_reference_is_bnlibs_batch_renorm():
    for x, gamma, beta, mu, sigma, r_max, d_max, eps, _ in exercises._renorm_cases():
        layer = BatchRenorm1d(x.shape[1], eps=eps, r_max=r_max, d_max=d_max, dtype=torch.float64)
        with torch.no_grad():
            for buffer, value in ((layer.weight, gamma), (layer.bias, beta), (layer.running_mean, mu),
                                  (layer.running_std, sigma)):
                buffer.copy_(value)
        assert torch.allclose(layer(x), exercises.renorm_reference(x, gamma, beta, mu, sigma, r_max, d_max, eps)[0],
                              rtol=1e-12, atol=1e-12)


def test_batch_renorm_train(capsys):
    check = exercises.check_batch_renorm_train
    for right in (renorm_lines, renorm_as_batch_norm, renorm_minmax):
        check(right)
        assert capsys.readouterr().out.startswith("Correct.")

    def mistaken(name):
        return lambda *args: exercises.renorm_reference(*args, mistake=name)

    for name, hint in (("no detach", "detach them"), ("inverted r", "other way up"), ("r from 0", "[1 / r_max, r_max]"),
                       ("d over sigma_B", "not by sigma_B"), ("d sign", "minus the moving mean"),
                       ("eps outside", "inside the square root"), ("no eps", "eps inside"),
                       ("unbiased", "biased batch variance"), ("after gamma", "before gamma and beta")):
        refused(check, mistaken(name), hint)

    def updates_first(x, gamma, beta, mu, sigma, r_max, d_max, eps):
        mu += 0.01 * (x.mean(0) - mu)  # the moving averages updated before r and d, in place
        return renorm_lines(x, gamma, beta, mu, sigma, r_max, d_max, eps)

    refused(check, updates_first, "changed its argument 4")
    refused(check, lambda x, *args: (renorm_lines(x, *args)[0][:, :2], *renorm_lines(x, *args)[1:]), "shape")
    refused(check, lambda x, *args: (renorm_lines(x, *args)[0], torch.ones(x.shape[1], dtype=x.dtype),
                                     renorm_lines(x, *args)[2]), "r is not right")
    # hostile answers
    refused(check, None, "still None")
    refused(check, stub, "not written yet")
    refused(check, lambda x, *args: (x, *renorm_lines(x, *args)[1:]), "not Algorithm 1's output")
    refused(check, lambda x, *args: (torch.zeros_like(x), *renorm_lines(x, *args)[1:]), "not Algorithm 1's output")
    refused(check, lambda x, *args: (x * float("nan"), *renorm_lines(x, *args)[1:]), "NaN")
    refused(check, lambda *args: 1 / 0, "ZeroDivisionError")
    refused(check, lambda *args: renorm_lines(*args)[0], "three things")
    refused(check, lambda *args: None, "returned None")

    def in_place(x, gamma, beta, mu, sigma, r_max, d_max, eps):
        y, r, d = renorm_lines(x, gamma, beta, mu, sigma, r_max, d_max, eps)
        x -= x.mean(0)
        return y, r, d

    refused(check, in_place, "changed its argument 1")

    def layer_instead(x, gamma, beta, mu, sigma, r_max, d_max, eps):  # a composition: BN layer then a correction
        bn = nn.BatchNorm1d(x.shape[1], eps=eps, dtype=x.dtype)
        with torch.no_grad():
            bn.weight.copy_(gamma), bn.bias.copy_(beta)
        return bn(x), *renorm_lines(x, gamma, beta, mu, sigma, r_max, d_max, eps)[1:]

    refused(check, layer_instead, "No gradient reaches gamma")


# Exercise 2: zero-init gamma on every block

def zero_by_loop(model):
    for block in model.blocks:
        nn.init.zeros_(block.norm2.weight)
    return model


def zero_by_name(model):
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("norm2.weight"):
                parameter.zero_()
    return model


def zero_fresh_copy(model):
    twin = copy.deepcopy(model)
    with torch.no_grad():
        for block in twin.blocks:
            block.norm2.weight.mul_(0.0)
    return twin


def test_zero_init_last_bn(capsys):
    check = exercises.check_zero_init_last_bn
    for right in (zero_by_loop, zero_by_name, zero_fresh_copy):
        check(right)
        assert capsys.readouterr().out.startswith("Correct.")

    def every_bn(model):
        for module in model.modules():
            if isinstance(module, nn.BatchNorm1d):
                nn.init.zeros_(module.weight)
        return model

    def first_bn(model):
        for block in model.blocks:
            nn.init.zeros_(block.norm1.weight)
        return model

    def beta(model):
        for block in model.blocks:
            nn.init.zeros_(block.norm2.bias)
        return model

    def last_in_modules(model):
        nn.init.zeros_([m for m in model.modules() if isinstance(m, nn.BatchNorm1d)][-1].weight)
        return model

    def linear(model):
        for block in model.blocks:
            nn.init.zeros_(block.linear2.weight)
        return model

    def small(model):
        for block in model.blocks:
            nn.init.constant_(block.norm2.weight, 1e-3)
        return model

    refused(check, every_bn, "stem")
    refused(check, first_bn, "not the first")
    refused(check, beta, "not beta")
    refused(check, last_in_modules, "Every block")
    refused(check, linear, "not a Linear's weight")
    refused(check, small, "exactly 0")
    refused(check, lambda model: model, "Nothing changed")
    # hostile answers
    refused(check, None, "still None")
    refused(check, stub, "not written yet")
    refused(check, lambda model: None, "returned None")
    refused(check, lambda model: 0.0, "Return the model")
    refused(check, lambda model: model.blocks, "Return the model")
    refused(check, lambda model: 1 / 0, "ZeroDivisionError")
    refused(check, lambda model: zero_by_loop(ResMLP(4, "branch", width=12)), "not those of the model you were given")


def test_zero_init_makes_every_block_the_identity_and_gamma_trains():
    model = exercises.zero_init_last_bn(ResMLP(4, "branch", width=12, seed=1)).train()
    x = torch.randn(16, 12)
    for block in model.blocks:
        assert torch.equal(block(x), x)
    nn.functional.cross_entropy(model(torch.randn(16, 784)), torch.arange(16) % 10).backward()
    assert all(block.norm2.weight.grad.abs().sum() > 0 for block in model.blocks)


# Exercises 3 and 4: predictions read from the chapter's runs

@pytest.mark.slow
def test_predictions(capsys):
    exercises.check_variance_prediction("about 17")
    exercises.check_batch_two_prediction("GroupNorm")
    assert capsys.readouterr().out.count("Correct.") == 2
    refused(exercises.check_variance_prediction, "about 4", "Add up the variances")
    refused(exercises.check_variance_prediction, "about 65,000", "Add up the variances")
    refused(exercises.check_variance_prediction, 17, "Answer with one of")
    refused(exercises.check_variance_prediction, None, "still None")
    refused(exercises.check_batch_two_prediction, "Batch Renorm", "batch of two")
    refused(exercises.check_batch_two_prediction, "groupnorm", "Answer with one of")
    assert np.isclose(exercises.VARIANCE_CHOICES["about 17"], 17)


# Exercise 3: a SkipInit block

class SkipInitBlock(nn.Module):
    """Right: alpha as a 0-d parameter."""

    def __init__(self, width):
        super().__init__()
        self.linear1, self.linear2 = nn.Linear(width, width), nn.Linear(width, width)
        self.alpha = nn.Parameter(torch.tensor(0.0))

    def forward(self, x):
        return x + self.alpha * self.linear2(torch.relu(self.linear1(torch.relu(x))))


class SkipInitShaped(nn.Module):
    """Right: alpha of shape (1,), functional relu, the branch in its own method."""

    def __init__(self, width):
        super().__init__()
        self.alpha = nn.Parameter(torch.zeros(1))
        self.linear1 = nn.Linear(width, width)
        self.linear2 = nn.Linear(width, width)

    def branch(self, x):
        return self.linear2(nn.functional.relu(self.linear1(nn.functional.relu(x))))

    def forward(self, x):
        return torch.addcmul(x, self.alpha, self.branch(x))


class SkipInitNoBias(SkipInitBlock):
    """Right: Linear layers without biases (the check gives biases only where there are some)."""

    def __init__(self, width):
        super().__init__(width)
        self.linear1, self.linear2 = nn.Linear(width, width, bias=False), nn.Linear(width, width, bias=False)


def skipinit_variant(forward=None, alpha=lambda: nn.Parameter(torch.tensor(0.0))):
    class Variant(SkipInitBlock):
        def __init__(self, width):
            super().__init__(width)
            del self.alpha
            value = alpha()
            if isinstance(value, nn.Parameter):
                self.alpha = value
            elif isinstance(value, torch.Tensor):
                self.register_buffer("alpha", value)
            else:
                self.alpha = value

        def forward(self, x):
            return (forward or SkipInitBlock.forward)(self, x)

    return Variant


def test_skipinit_block(capsys):
    check = exercises.check_skipinit_block
    for right in (SkipInitBlock, SkipInitShaped, SkipInitNoBias):
        check(right)
        assert capsys.readouterr().out.startswith("Correct.")

    def f(block, x, first_relu=True):
        return block.linear2(torch.relu(block.linear1(torch.relu(x) if first_relu else x)))

    refused(check, skipinit_variant(alpha=lambda: torch.tensor(0.0)), "nn.Parameter")
    refused(check, skipinit_variant(alpha=lambda: 0.0), "scalar alpha")
    refused(check, skipinit_variant(alpha=lambda: nn.Parameter(torch.tensor(1.0))), "starts at 0")
    refused(check, skipinit_variant(lambda self, x: self.alpha * x + f(self, x)), "not the skip path")
    refused(check, skipinit_variant(lambda self, x: x + f(self, self.alpha * x)), "not its input")
    refused(check, skipinit_variant(lambda self, x: x + self.alpha * f(self, x, first_relu=False)), "starts with a ReLU")
    refused(check, skipinit_variant(lambda self, x: x + self.alpha.detach() * f(self, x)), "receive a gradient")
    # hostile answers
    refused(check, None, "still None")
    refused(check, stub, "not written yet")
    refused(check, skipinit_variant(lambda self, x: x), "With alpha = 0.5")
    refused(check, skipinit_variant(lambda self, x: torch.zeros_like(x)), "With alpha = 0 ")
    refused(check, skipinit_variant(lambda self, x: x * float("nan")), "NaN")
    refused(check, skipinit_variant(lambda self, x: x[:, :3]), "shape")
    refused(check, skipinit_variant(lambda self, x: 1 / 0), "ZeroDivisionError")
    refused(check, skipinit_variant(lambda self, x: x.add_(self.alpha * f(self, x))), "in place")
    refused(check, lambda width: nn.Sequential(nn.ReLU(), nn.Linear(width, width)), "two nn.Linear")
