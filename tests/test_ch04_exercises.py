"""The exercise checks of notebook 04 accept the solutions and reject wrong answers with a hint that names
the mistake."""

import copy

import numpy as np
import pytest
import torch
from exercise_checks import refused, stub
from torch.nn.utils.fusion import fuse_linear_bn_eval

from bnlib.course.ch04 import exercises as ch04


def identity_solution(running_mean, running_var, eps=1e-5):
    return np.sqrt(running_var + eps), running_mean


def identity_in_torch(running_mean, running_var, eps=1e-5):
    return torch.sqrt(torch.from_numpy(running_var) + eps), torch.from_numpy(running_mean)


def identity_stacked(running_mean, running_var, eps=1e-5):
    return np.stack([(running_var + eps) ** 0.5, running_mean.copy()])


@pytest.mark.parametrize("answer", [identity_solution, identity_in_torch, identity_stacked,
                                    lambda mean, var, eps: [list(np.sqrt(var + eps)), list(mean)]])
def test_eval_identity_accepts_every_correct_form(answer, capsys):
    assert ch04.check_eval_identity(answer) is None
    assert capsys.readouterr().out.startswith("Correct.")


@pytest.mark.parametrize("wrong, hint", [
    (lambda mean, var, eps: (np.sqrt(var), mean), "eps"),
    (lambda mean, var, eps=1e-5: (np.sqrt(var + 1e-5), mean), "ignored the eps argument"),
    (lambda mean, var, eps: (mean, np.sqrt(var + eps)), "swapped"),
    (lambda mean, var, eps: (var + eps, mean), "variance"),
    (lambda mean, var, eps: (var, mean), "variance"),
    (lambda mean, var, eps: (np.sqrt(var + eps), -mean), "+running_mean"),
    (lambda mean, var, eps: (1 / np.sqrt(var + eps), mean), "inverse"),
    (lambda mean, var, eps: (np.sqrt(var + eps).astype(np.float32), mean.astype(np.float32)), "float32"),
])
def test_eval_identity_names_the_mistake(wrong, hint):
    refused(ch04.check_eval_identity, wrong, hint)


def identity_in_place(running_mean, running_var, eps=1e-5):
    running_var += eps
    return np.sqrt(running_var), running_mean


@pytest.mark.parametrize("hostile, hint", [
    (None, "still None"),
    (stub, "not written yet"),
    (lambda mean, var, eps: None, "returned None"),
    (lambda mean, var, eps: (mean, var), "Which gamma"),
    (lambda mean, var, eps: (np.ones(3), np.zeros(3)), "Which gamma"),
    (lambda mean, var, eps: (np.sqrt(var + eps), mean + np.inf), "NaN or inf"),
    (lambda mean, var, eps: (mean * np.nan, mean), "NaN"),
    (lambda mean, var, eps: 1 / 0, "raised ZeroDivisionError"),
    (lambda mean, var, eps: np.ones(3), "pair"),
    (lambda mean, var, eps: (np.sqrt(var + eps)[:2], mean[:2]), "pair"),
    (identity_in_place, "changed its argument 2 (ndarray) in place"),
    (lambda mean, var, eps: {"gamma": mean}, "return numbers"),
    (identity_solution(np.zeros(3), np.ones(3)), "Pass your function itself"),
])
def test_eval_identity_refuses_hostile_answers(hostile, hint):
    refused(ch04.check_eval_identity, hostile, hint)


def test_the_identity_holds_for_any_batch_only_with_fixed_statistics():
    """What exercise 1 corrects: gamma = sqrt(var + eps), beta = mu taken from one batch give back that batch
    in training mode, but not another batch; in eval mode (fixed statistics) they give back every input."""
    generator = torch.Generator().manual_seed(0)
    first, second = (5 + 3 * torch.randn(64, 4, generator=generator, dtype=torch.float64) for _ in range(2))
    layer = torch.nn.BatchNorm1d(4, momentum=1.0, dtype=torch.float64)
    with torch.no_grad():
        layer.weight.copy_(torch.sqrt(first.var(0, correction=0) + layer.eps))
        layer.bias.copy_(first.mean(0))
        assert (layer(first) - first).abs().max() < 1e-12                       # and the running stats = first's
        assert (layer(second) - second).abs().max() > 0.1                       # batch statistics of another batch
        layer.running_var.copy_(first.var(0, correction=0))
        layer.running_mean.copy_(first.mean(0))
        layer.eval()
        assert (layer(second) - second).abs().max() < 1e-12


def fold_solution(linear, bn):
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    bias = linear.bias if linear.bias is not None else torch.zeros_like(bn.running_mean)
    folded = torch.nn.Linear(linear.in_features, linear.out_features, dtype=linear.weight.dtype)
    with torch.no_grad():
        folded.weight.copy_(scale[:, None] * linear.weight)
        folded.bias.copy_(scale * (bias - bn.running_mean) + bn.bias)
    return folded


def fold_by_matrices(linear, bn):
    s = torch.diag(bn.weight / (bn.running_var + bn.eps).sqrt())
    folded = copy.deepcopy(linear)
    b = 0 if linear.bias is None else linear.bias
    folded.weight = torch.nn.Parameter(s @ linear.weight)
    folded.bias = torch.nn.Parameter(s @ (b - bn.running_mean) + bn.bias)
    return folded


def fold_by_the_layer(linear, bn):
    """Run bn on the Linear's outputs for x = 0 (the bias) and the unit vectors (the columns)."""
    with torch.no_grad():
        bias = bn(linear(torch.zeros(1, linear.in_features, dtype=torch.float64)))[0]
        columns = bn(linear(torch.eye(linear.in_features, dtype=torch.float64))) - bias
        folded = torch.nn.Linear(linear.in_features, linear.out_features).double()
        folded.weight.copy_(columns.T)
        folded.bias.copy_(bias)
    return folded


def fold_with_data(linear, bn):
    folded = torch.nn.Linear(linear.in_features, linear.out_features, bias=True).to(torch.float64)
    scale = bn.weight.data / torch.sqrt(bn.running_var + bn.eps)
    folded.weight.data = linear.weight.data * scale.unsqueeze(1)
    folded.bias.data = (0 if linear.bias is None else linear.bias.data) * scale + bn.bias.data - bn.running_mean * scale
    return folded


@pytest.mark.parametrize("answer", [fold_solution, fold_by_matrices, fold_by_the_layer, fold_with_data,
                                    fuse_linear_bn_eval])
def test_fold_linear_bn_accepts_every_correct_form(answer, capsys):
    assert ch04.check_fold_linear_bn(answer) is None
    assert capsys.readouterr().out.startswith("Correct.")


def folded_with(scale=None, bias=None, weight=None, dtype=None):
    """A fold whose scale s, folded bias or weight is a mistake's, from (linear, bn, s, b)."""
    def fold(linear, bn):
        b = linear.bias if linear.bias is not None else torch.zeros_like(bn.running_mean)
        s = (scale or (lambda bn: bn.weight / torch.sqrt(bn.running_var + bn.eps)))(bn)
        folded = torch.nn.Linear(linear.in_features, linear.out_features, dtype=dtype or linear.weight.dtype)
        with torch.no_grad():
            folded.weight.copy_((weight or (lambda linear, s: s[:, None] * linear.weight))(linear, s))
            folded.bias.copy_((bias or (lambda bn, s, b: s * (b - bn.running_mean) + bn.bias))(bn, s, b))
        return folded
    return fold


def fold_without_bias_check(linear, bn):
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    folded = torch.nn.Linear(linear.in_features, linear.out_features, dtype=linear.weight.dtype)
    with torch.no_grad():
        folded.weight.copy_(scale[:, None] * linear.weight)
        folded.bias.copy_(scale * (linear.bias - bn.running_mean) + bn.bias)
    return folded


def fold_keeping_no_bias(linear, bn):
    folded = fuse_linear_bn_eval(linear, bn)
    return folded if linear.bias is not None else torch.nn.Linear(
        linear.in_features, linear.out_features, bias=False, dtype=torch.float64)


@pytest.mark.parametrize("wrong, hint", [
    (folded_with(bias=lambda bn, s, b: s * (0 - bn.running_mean) + bn.bias), "own bias"),
    (folded_with(scale=lambda bn: bn.weight / torch.sqrt(bn.running_var)), "eps is missing"),
    (folded_with(scale=lambda bn: 1 / torch.sqrt(bn.running_var + bn.eps)), "gamma is missing"),
    (folded_with(bias=lambda bn, s, b: s * (b - bn.running_mean)), "beta is missing"),
    (folded_with(bias=lambda bn, s, b: s * b + bn.bias), "running_mean is missing"),
    (folded_with(scale=lambda bn: bn.weight / (bn.running_var + bn.eps)), "divides by the variance"),
    (folded_with(weight=lambda linear, s: linear.weight), "weight rows must be scaled"),
    (folded_with(dtype=torch.float32), "float32"),
    (fold_without_bias_check, "has no bias: its .bias is None"),
    (fold_keeping_no_bias, "needs a bias"),
    (lambda linear, bn: fold_solution(linear, bn).float(), "float32"),
])
def test_fold_linear_bn_names_the_mistake(wrong, hint):
    refused(ch04.check_fold_linear_bn, wrong, hint)


def fold_in_place(linear, bn):
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    with torch.no_grad():
        linear.weight.mul_(scale[:, None])
        if linear.bias is None:
            linear.bias = torch.nn.Parameter(torch.zeros_like(bn.running_mean))
        linear.bias.copy_(scale * (linear.bias - bn.running_mean) + bn.bias)
    return linear


def fold_spoiling_bn(linear, bn):
    folded = fold_solution(linear, bn)
    bn.running_var.fill_(1.0)
    return folded


@pytest.mark.parametrize("hostile, hint", [
    (None, "still None"),
    (stub, "not written yet"),
    (lambda linear, bn: None, "returned None"),
    (lambda linear, bn: torch.nn.Sequential(linear, bn), "not Sequential"),
    (lambda linear, bn: lambda x: bn(linear(x)), "not function"),
    (lambda linear, bn: bn, "not BatchNorm1d"),
    (lambda linear, bn: 3.0, "not float"),
    (lambda linear, bn: linear, "row k"),
    (lambda linear, bn: torch.nn.Linear(6, 3, dtype=torch.float64), "row k"),
    (lambda linear, bn: fold_solution(linear, bn).requires_grad_(False).apply(
        lambda m: m.weight.data.fill_(float("nan")) if hasattr(m, "weight") else None), "NaN"),
    (lambda linear, bn: 1 / 0, "raised ZeroDivisionError"),
    (lambda linear, bn: torch.nn.Linear(3, 6, dtype=torch.float64), "raised RuntimeError"),
    (lambda linear, bn: torch.nn.Linear(6, 4, dtype=torch.float64), "shape"),
    (fold_in_place, "changed its argument 1 (Linear) in place"),
    (fold_spoiling_bn, "changed its argument 2 (BatchNorm1d) in place"),
    (torch.nn.Linear(6, 3), "Pass your function itself"),
])
def test_fold_linear_bn_refuses_hostile_answers(hostile, hint):
    refused(ch04.check_fold_linear_bn, hostile, hint)


def test_the_fold_check_hands_over_eval_mode_layers_with_statistics_of_their_own():
    for bias in (True, False):
        linear, bn, _ = ch04.fold_example(bias)
        assert not linear.training and not bn.training and (linear.bias is not None) == bias
        assert not torch.equal(bn.running_mean, torch.zeros(3)) and not torch.equal(bn.running_var, torch.ones(3))


def test_scaled_gradient(capsys):
    assert ch04.measured_gradient_factor() == pytest.approx(1 / ch04.SCALE, rel=1e-5)
    ch04.check_scaled_gradient("4 times smaller")
    assert capsys.readouterr().out.startswith("Correct.")


@pytest.mark.parametrize("answer, hint", [
    ("4 times larger", "chain rule"), ("the same", "chain rule"), ("16 times smaller", "chain rule"),
    (None, "still None"), ("smaller", "Answer with one of"), (0.25, "Answer with one of"),
    (np.float64(0.25), "Answer with one of"), (float("nan"), "Answer with one of"), ("4 Times Smaller", "Answer with"),
])
def test_scaled_gradient_refuses(answer, hint):
    refused(ch04.check_scaled_gradient, answer, hint)


def test_saturation(capsys):
    """A shift of 5 saturates most of the unit, a scale of 4 about a quarter (the explorer's sample)."""
    assert ch04.saturated_fraction(1.0, 5.0) > 0.7
    assert 0.15 < ch04.saturated_fraction(4.0, 0.0) < 0.4
    ch04.check_saturation("gamma=1, beta=5")
    assert capsys.readouterr().out.startswith("Correct.")


@pytest.mark.parametrize("answer, hint", [
    ("gamma=4, beta=0", "explorer"), ("about the same", "explorer"), (None, "still None"),
    ("beta", "Answer with one of"), (5, "Answer with one of"), (float("nan"), "Answer with one of"),
    (("gamma=1, beta=5",), "Answer with one of"),
])
def test_saturation_refuses(answer, hint):
    refused(ch04.check_saturation, answer, hint)
