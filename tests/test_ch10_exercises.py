"""The exercise checks of notebook 10 accept right answers written in different ways, and refuse blanks,
hostile answers and the usual mistakes, each with a hint that names it."""

import copy
import math

import numpy as np
import pytest
import torch
from exercise_checks import refused, stub
from torch import nn

from bnlib.course.ch10 import exercises
from bnlib.course.ch10.equivalence import parameter_groups

pytestmark = pytest.mark.slow  # the checks run the network on MNIST and read the chapter's cached runs


# Exercise 1: cos(W, g) and a ||g(aW)|| / ||g(W)||

def cosine_and_ratio(model, layer, a, images, labels, mode=True, scale_all=False, keep_grad=False):
    def gradient(net):
        net.train(mode)
        nn.functional.cross_entropy(net(images), labels).backward()
        return net[layer].weight.grad.clone()

    net = copy.deepcopy(model)
    w, g = net[layer].weight.detach().clone(), gradient(net)
    if not keep_grad:
        net.zero_grad()
    with torch.no_grad():
        for i, module in enumerate(net):
            if isinstance(module, nn.Linear) and (i == layer or scale_all):
                module.weight.mul_(a)
    g_a = gradient(net)
    return ((w * g).sum() / (w.norm() * g.norm())).item(), (a * g_a.norm() / g.norm()).item()


def in_place_and_back(model, layer, a, images, labels):
    """Right: scales the given model's weight, measures, and puts it back (a is a power of two: exactly)."""
    loss = lambda: nn.functional.cross_entropy(model.train()(images), labels)  # noqa: E731
    w = model[layer].weight
    g = torch.autograd.grad(loss(), w)[0]
    with torch.no_grad():
        w.mul_(a)
    g_a = torch.autograd.grad(loss(), w)[0]
    with torch.no_grad():
        w.div_(a)
    cosine = torch.nn.functional.cosine_similarity(w.detach().flatten(), g.flatten(), dim=0)
    return [cosine.item(), a * g_a.norm().item() / g.norm().item()]


def functional(model, layer, a, images, labels):
    """Right: torch.func.functional_call with the weight replaced, numpy for the arithmetic."""
    params = dict(model.named_parameters())
    name = f"{layer}.weight"

    def gradient(weight):
        weight = weight.detach().requires_grad_()
        out = torch.func.functional_call(model, {**params, name: weight}, (images,))
        return torch.autograd.grad(nn.functional.cross_entropy(out, labels), weight)[0].numpy()

    w = params[name].detach().numpy()
    g, g_a = gradient(params[name]), gradient(a * params[name])
    return np.array([(w * g).sum() / np.linalg.norm(w) / np.linalg.norm(g), a * np.linalg.norm(g_a) / np.linalg.norm(g)])


def test_cosine_and_ratio(capsys):
    check = exercises.check_cosine_and_ratio
    for right in (cosine_and_ratio, in_place_and_back, functional):
        check(right)
        assert capsys.readouterr().out.startswith("Correct.")
    refused(check, lambda m, l, a, x, y: cosine_and_ratio(m, l, a, x, y, mode=False), "train mode")
    refused(check, lambda m, l, a, x, y: cosine_and_ratio(m, l, a, x, y, scale_all=True), "Scale only")
    refused(check, lambda m, l, a, x, y: cosine_and_ratio(m, l, a, x, y, keep_grad=True), "Reset the gradients")
    refused(check, lambda m, l, a, x, y: (cosine_and_ratio(m, l, a, x, y)[0], cosine_and_ratio(m, l, a, x, y)[1] / a),
            "Multiply the ratio")
    refused(check, lambda m, l, a, x, y: (cosine_and_ratio(m, l, a, x, y)[0], 1 / cosine_and_ratio(m, l, a, x, y)[1]),
            "other way up")
    refused(check, lambda m, l, a, x, y: (cosine_and_ratio(m, l, a, x, y)[0], 1.0), "Measure g at aW")

    def raw_dot(model, layer, a, images, labels):
        net = copy.deepcopy(model)
        nn.functional.cross_entropy(net(images), labels).backward()
        return (net[layer].weight * net[layer].weight.grad).sum().item(), cosine_and_ratio(model, layer, a, images, labels)[1]

    refused(check, raw_dot, "divided by ||W|| ||g||")

    def scaled_for_good(model, layer, a, images, labels):
        with torch.no_grad():
            model[layer].weight.mul_(a)
        return 0.0, 1.0

    refused(check, scaled_for_good, "left the network's weights changed")
    # hostile answers
    refused(check, None, "still None")
    refused(check, stub, "not written yet")
    refused(check, lambda *args: (float("nan"), 1.0), "NaN")
    refused(check, lambda model, *args: model, "must return numbers")
    refused(check, lambda *args: (0.0, 1.0), "Layer 9")
    refused(check, lambda *args: 1 / 0, "ZeroDivisionError")
    refused(check, lambda *args: (0.0, 1.0, 1.0), "two numbers")
    refused(check, lambda *args: None, "returned None")


# Exercise 2: the angle between two weight tensors

def angle_arccos(w0, w1):
    a, b = w0.double().flatten(), w1.double().flatten()
    return torch.arccos(torch.clamp(a @ b / (a.norm() * b.norm()), -1.0, 1.0)).item()


def angle_atan2(w0, w1):
    """Right: the part of w1 across w0 against the part along it (no clamp needed)."""
    a, b = w0.double().flatten(), w1.double().flatten()
    along = a @ b / a.norm()
    across = (b - along * a / a.norm()).norm()
    return math.atan2(across.item(), along.item())


def angle_numpy(w0, w1):
    a, b = np.asarray(w0, dtype=np.float64).ravel(), np.asarray(w1, dtype=np.float64).ravel()
    return float(np.arccos(np.clip(np.dot(a, b) / np.linalg.norm(a) / np.linalg.norm(b), -1, 1)))


def test_angular_update(capsys):
    check = exercises.check_angular_update
    for right in (angle_arccos, angle_atan2, angle_numpy,
                  lambda w0, w1: torch.arccos(torch.nn.functional.cosine_similarity(
                      w0.double().flatten(), w1.double().flatten(), dim=0).clamp(-1, 1))):
        check(right)
        assert capsys.readouterr().out.startswith("Correct.")
    refused(check, lambda w0, w1: math.degrees(angle_arccos(w0, w1)), "radians")
    refused(check, lambda w0, w1: math.cos(angle_arccos(w0, w1)), "That is the cosine")
    refused(check, lambda w0, w1: ((w1 - w0).norm() / w0.norm()).item(), "not an angle")
    refused(check, lambda w0, w1: torch.arccos(((w0 * w1).sum(1) / (w0.norm(dim=1) * w1.norm(dim=1))).clamp(-1, 1)).mean(),
            "not an angle per row")
    refused(check, lambda w0, w1: torch.arccos((w0.double().flatten() @ w1.double().flatten()).clamp(-1, 1)).item(),
            "Divide the dot product")
    refused(check, lambda w0, w1: torch.arccos(torch.clamp(
        w0.flatten() @ w1.flatten() / (w0.norm() * w1.norm()), -1, 1)).item(), "float64")
    refused(check, lambda w0, w1: torch.arccos(
        w0.double().flatten() @ w1.double().flatten() / (w0.double().norm() * w1.double().norm())).item(), "clamp")
    # hostile answers
    refused(check, None, "still None")
    refused(check, stub, "not written yet")
    refused(check, lambda w0, w1: float("nan"), "clamp")
    refused(check, lambda w0, w1: w1, "one number")
    refused(check, lambda w0, w1: 0.0, "rescaled")
    refused(check, lambda w0, w1: 1 / 0, "ZeroDivisionError")
    refused(check, lambda w0, w1: "small", "must return numbers")

    def in_place(w0, w1):
        w0 /= w0.norm()
        return angle_arccos(w0, w1)

    refused(check, in_place, "in place")


# Exercise 3: the equivalent run

def equivalent_run(model, c, lr, wd):
    twin = copy.deepcopy(model)
    with torch.no_grad():
        for i in (0, 3, 6):
            twin[i].weight.mul_(math.sqrt(c))
    groups = parameter_groups(twin, lr, wd)
    groups[0].update(lr=c * lr, weight_decay=wd / c)
    return twin, groups


def equivalent_by_state(model, c, lr, wd):
    """Right: built from the state dict, one group per parameter, handed over as an optimizer."""
    twin = copy.deepcopy(model)
    state = {key: value * math.sqrt(c) if key in ("0.weight", "3.weight", "6.weight") else value
             for key, value in model.state_dict().items()}
    twin.load_state_dict(state)
    groups = []
    for name, p in twin.named_parameters():
        hidden = name in ("0.weight", "3.weight", "6.weight")
        decay = wd / c if hidden else wd if name == "9.weight" else 0.0
        groups.append({"params": [p], "lr": c * lr if hidden else lr, "weight_decay": decay})
    return twin, torch.optim.SGD(groups, lr=lr)


def equivalent_two_groups(model, c, lr, wd):
    """Right: the hidden weights in one group; the last weight and the rest in two more, by hand."""
    twin = copy.deepcopy(model)
    hidden = [twin[i].weight for i in (0, 3, 6)]
    with torch.no_grad():
        for w in hidden:
            w *= c ** 0.5
    rest = [p for p in twin.parameters() if all(p is not w for w in hidden) and p is not twin[9].weight]
    return twin, [{"params": hidden, "lr": c * lr, "weight_decay": wd / c},
                  {"params": [twin[9].weight], "lr": lr, "weight_decay": wd}, {"params": rest, "lr": lr}]


def changed(setup, edit):
    def answer(model, c, lr, wd):
        twin, groups = setup(model, c, lr, wd)
        edit(twin, groups, c, lr, wd)
        return twin, groups
    return answer


def scale_again(twin, groups, c, lr, wd):
    with torch.no_grad():
        for i in (0, 3, 6):
            twin[i].weight.mul_(math.sqrt(c))  # c in all


def unscale(twin, groups, c, lr, wd):
    with torch.no_grad():
        for i in (0, 3, 6):
            twin[i].weight.div_(math.sqrt(c))


def test_equivalent_run(capsys):
    check = exercises.check_equivalent_run
    for right in (equivalent_run, equivalent_by_state, equivalent_two_groups):
        check(right)
        assert capsys.readouterr().out.startswith("Correct.")
    refused(check, changed(equivalent_run, scale_again), "not by c")
    refused(check, changed(equivalent_run, unscale), "multiply the hidden weights")
    refused(check, changed(equivalent_run, lambda t, g, c, lr, wd: [group.update(lr=c * lr) for group in g]),
            "keep their own learning rate")
    refused(check, changed(equivalent_run, lambda t, g, c, lr, wd: g[0].update(weight_decay=wd * c)), "Divide the weight decay")
    refused(check, changed(equivalent_run, lambda t, g, c, lr, wd: g[0].update(lr=lr / c, weight_decay=wd * c)),
            "Divide the weight decay")
    refused(check, changed(equivalent_run, lambda t, g, c, lr, wd: t[9].weight.data.mul_(math.sqrt(c))), "last Linear")
    refused(check, changed(equivalent_run, lambda t, g, c, lr, wd: g[0].update(lr=lr)), "should follow run A")

    def in_place(model, c, lr, wd):
        with torch.no_grad():
            for i in (0, 3, 6):
                model[i].weight.mul_(math.sqrt(c))
        groups = parameter_groups(model, lr, wd)
        groups[0].update(lr=c * lr, weight_decay=wd / c)
        return model, groups

    refused(check, in_place, "in place")
    refused(check, lambda model, c, lr, wd: (nn.Sequential(equivalent_run(model, c, lr, wd)[0]),
                                             equivalent_run(model, c, lr, wd)[1]), "same layers")
    refused(check, lambda model, c, lr, wd: (equivalent_run(model, c, lr, wd)[0], parameter_groups(model, lr, wd)),
            "exactly once")
    refused(check, lambda model, c, lr, wd: (equivalent_run(model, c, lr, wd)[0], {"lr": c * lr}), "list of dicts")
    # hostile answers
    refused(check, None, "still None")
    refused(check, stub, "not written yet")
    refused(check, lambda model, c, lr, wd: model, "a pair")
    refused(check, lambda model, c, lr, wd: (float("nan"), []), "new network")
    refused(check, lambda model, c, lr, wd: 1 / 0, "ZeroDivisionError")
    refused(check, lambda model, c, lr, wd: None, "returned None")


# Exercises 4 and 5: predictions, checked against the chapter's runs

def test_init_prediction(capsys):
    exercises.check_init_prediction("10")
    assert capsys.readouterr().out.startswith("Correct.")
    refused(exercises.check_init_prediction, "0.1", "initialization table")
    refused(exercises.check_init_prediction, "neither", "initialization table")
    refused(exercises.check_init_prediction, 10, "one of")
    refused(exercises.check_init_prediction, None, "still None")


def test_effective_lr_prediction(capsys):
    exercises.check_effective_lr_prediction("about the same")
    assert capsys.readouterr().out.startswith("Correct.")
    refused(exercises.check_effective_lr_prediction, "smaller", "explorer")
    refused(exercises.check_effective_lr_prediction, "larger", "explorer")
    refused(exercises.check_effective_lr_prediction, "same", "one of")
    refused(exercises.check_effective_lr_prediction, None, "still None")


def test_the_predictions_expected_answers_hold_with_margin():
    """The runs' answers are clear: 10 points apart at k = 0.1 and 10; effective rates within 1.2 of each other."""
    from bnlib.course.ch10.dynamics import norm_growth, run_grid, run_index
    from bnlib.course.ch10.initialization import FAMILIES, InitSweep, run_init_sweep

    accuracy = run_init_sweep(InitSweep())["accuracy"][FAMILIES.index("BN")]
    assert accuracy[0] > accuracy[-1] + 0.05
    grid = run_grid()
    ends = [norm_growth(grid, run_index(grid, lr, 0.0))["effective_lr"][-1, 0] for lr in (0.1, 0.4)]
    assert 1 / 1.25 < ends[1] / ends[0] < 1.25
