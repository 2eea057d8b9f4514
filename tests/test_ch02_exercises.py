"""The exercise checks of notebook 02 accept every correct form of the solutions, and refuse the usual mistakes
and hostile answers with a hint that names them."""

import numpy as np
import pytest
import torch
from exercise_checks import refused, stub

from bnlib.course.ch02 import exercises as ch02
from bnlib.course.checks import NotYet


def solution(u, target, b):
    x = u + b
    return ((x - x.mean() - target) / len(x)).sum()


def in_numpy(u, target, b):
    x = u.numpy() + b
    return float(np.mean(x - x.mean() - target.numpy()))


def by_loop(u, target, b):
    mean, total = sum(float(v) + b for v in u) / len(u), 0.0
    for v, t in zip(u, target):
        total += (float(v) + b - mean - float(t)) / len(u)
    return total


def without_b(u, target, b):
    """b cancels out of x - E[x]: the mean of u - E[u] - t is the same number."""
    return (u - u.mean() - target).mean().reshape(1)


@pytest.mark.parametrize("answer", [solution, in_numpy, by_loop, without_b,
                                    lambda u, t, b: -(t - (u + b) + (u + b).mean()).mean().item()])
def test_bias_gradient_accepts_every_correct_form(answer, capsys):
    assert ch02.check_bias_gradient(answer) is None
    assert capsys.readouterr().out.startswith("Correct.")


def by_autograd(u, target, b):
    bias = torch.tensor(float(b), dtype=torch.float64, requires_grad=True)
    x = u + bias
    (0.5 * ((x - x.mean().detach() - target) ** 2).mean()).backward()
    return bias.grad


@pytest.mark.parametrize("wrong, hint", [
    (lambda u, t, b: (u + b - (u + b).mean() - t).sum(), "N times too large"),
    (lambda u, t, b: 2 * solution(u, t, b), "Twice too large"),
    (lambda u, t, b: -solution(u, t, b), "wrong sign"),
    (lambda u, t, b: 0.0 * b, "Zero is the gradient with the mean inside"),
    (lambda u, t, b: (1 - 1 / len(u)) * solution(u, t, b), "in part"),
    (lambda u, t, b: (u + b - t).mean(), "left E[x] out"),
    (lambda u, t, b: (u + b - (u + b).mean() - t).sum() / (len(u) - 1), "not N - 1"),
    (lambda u, t, b: (u + b - t).mean() ** 2, "Not autograd"),
    (lambda u, t, b: solution(u.float(), t.float(), b), "float32"),
    (by_autograd, "by hand"),
])
def test_bias_gradient_names_the_mistake(wrong, hint):
    refused(ch02.check_bias_gradient, wrong, hint)


@pytest.mark.parametrize("hostile, hint", [
    (None, "Fill in"),
    (stub, "not written yet"),
    (lambda u, t, b: None, "returned None"),
    (lambda u, t, b: float("nan"), "NaN"),
    (lambda u, t, b: u, "one number"),
    (lambda u, t, b: u + b, "one number"),
    (lambda u, t, b: 0.1, "Not autograd"),
    (lambda u, t, b: u[len(u)], "IndexError"),
    (lambda u, t, b: (u.sub_(u.mean()), solution(u, t, b))[1], "changed its argument 1 (Tensor) in place"),
    (lambda u, t, b: t.mul_(0).sum(), "in place"),
    (lambda u, t, b: "a tenth", "return numbers"),
    (solution(*ch02.bias_cases()[0]), "Pass your function itself"),
])
def test_bias_gradient_refuses_hostile_answers(hostile, hint):
    refused(ch02.check_bias_gradient, hostile, hint)


@pytest.mark.parametrize("answer", [lambda x: x - x.mean(), lambda x: x - x.sum() / len(x),
                                    lambda x: x - torch.mean(x, dim=0, keepdim=True),
                                    lambda x: torch.sub(x, x.mean(0)), lambda x: x - x.clone().mean()])
def test_center_inside_gradient_accepts_every_correct_form(answer, capsys):
    assert ch02.check_center_inside_gradient(answer) is None
    assert capsys.readouterr().out.startswith("Correct.")


@pytest.mark.parametrize("wrong, hint", [
    (lambda x: x - x.mean().detach(), "hidden from autograd"),
    (lambda x: x - x.mean().item(), "hidden from autograd"),
    (lambda x: x - torch.tensor(x.tolist(), dtype=x.dtype).mean(), "hidden from autograd"),
    (lambda x: x - torch.tensor(x.tolist()).mean(), "float32"),
    (lambda x: (x - x.mean()).detach(), "cut from the graph"),
    (lambda x: torch.from_numpy(x.detach().numpy() - x.detach().numpy().mean()), "cut from the graph"),
    (lambda x: x.detach().numpy() - x.detach().numpy().mean(), "ndarray"),
    (lambda x: (x - x.mean()) / x.std(), "Only center"),
    (lambda x: x - x.median(), "mean 0"),
    (lambda x: (x - x.mean()).float(), "float32"),
    (lambda x: x - x[0] + x[0].detach() - x.detach().mean(), "gradients of the single x_i"),
])
def test_center_inside_gradient_names_the_mistake(wrong, hint):
    refused(ch02.check_center_inside_gradient, wrong, hint)


@pytest.mark.parametrize("hostile, hint", [
    (None, "Fill in"),
    (stub, "not written yet"),
    (lambda x: None, "returned None"),
    (lambda x: x, "x itself"),
    (lambda x: x * float("nan"), "NaN"),
    (lambda x: torch.zeros_like(x), "mean 0"),
    (lambda x: x.unsqueeze(0) - x.mean(), "shape"),
    (lambda x: x.sub_(x.mean()), "changed its argument 1 (Tensor) in place"),
    (lambda x: x.mul_(0), "in place"),
    (lambda x: x.reshape(2, -1), "shape"),
    (lambda x: x.missing(), "AttributeError"),
    (lambda x: [v - x.mean() for v in x], "list"),
])
def test_center_inside_gradient_refuses_hostile_answers(hostile, hint):
    refused(ch02.check_center_inside_gradient, hostile, hint)


def test_doubled_learning_rate_leaves_the_loss_where_it_was():
    assert ch02.doubled_lr_prediction() == "the same"
    ch02.check_doubled_lr_prediction("the same")
    for wrong in ("lower", "higher", None, "same"):
        with pytest.raises(NotYet):
            ch02.check_doubled_lr_prediction(wrong)


@pytest.mark.slow  # reads (or computes) the recorded MNIST run
def test_layer_1_drifts_more_than_layer_3():
    assert ch02.layer_prediction() == "more"
    ch02.check_layer_prediction("more")
    for wrong in ("less", "about the same", None):
        with pytest.raises(NotYet):
            ch02.check_layer_prediction(wrong)
