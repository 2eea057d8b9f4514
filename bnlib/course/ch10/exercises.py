"""Checks for notebook 10: scale invariance measured, the angular update, the equivalent run, and two
predictions checked against the chapter's runs."""

import copy
import functools
import math

import numpy as np
import torch
from torch import nn

from bnlib.course.ch10.dynamics import norm_growth, run_grid, run_index
from bnlib.course.ch10.equivalence import TINY_EPS, parameter_groups
from bnlib.course.ch10.geometry import chapter_network, first_batch, linear_layers, loss_and_gradients, scaled
from bnlib.course.ch10.initialization import FAMILIES, InitSweep, run_init_sweep
from bnlib.course.checks import as_array, check, check_choice, close, not_yet, passed, run
from bnlib.course.training import mnist, random_batches, small_model_settings

def one_thread(check_function):
    """Run a check on one thread with subnormals flushed (``small_model_settings``): this network is small, and
    a second thread mostly waits for the first."""

    @functools.wraps(check_function)
    def checked(answer):
        __tracebackhide__ = True  # noqa: F841
        with small_model_settings():
            return check_function(answer)

    return checked


SCALE_CASES = ((0, 2.0), (3, 0.5), (6, 4.0), (9, 2.0), (9, 0.5))  # (layer, a): the three hidden ones, the last


def cosine_and_ratio_reference(model, layer, a, images, labels, eval_mode=False, every_layer=False,
                               accumulate=False):
    """(cos(W, g), a ||g(aW)|| / ||g(W)||) for W = model[layer].weight; the keywords make known mistakes."""
    model = copy.deepcopy(model).train(not eval_mode)
    _, gradients = loss_and_gradients(model, images, labels) if not eval_mode else _eval_gradients(model, images, labels)
    g, w = gradients[layer], model[layer].weight.detach()
    twin = scaled(model, layer, a)
    if every_layer:
        for i in linear_layers(model):
            twin = scaled(twin, i, a) if i != layer else twin
    gradients_a = (loss_and_gradients if not eval_mode else _eval_gradients)(twin, images, labels)[1]
    g_a = gradients_a[layer] + (g if accumulate else 0)
    return ((w * g).sum() / (w.norm() * g.norm())).item(), (a * g_a.norm() / g.norm()).item()


def _eval_gradients(model, images, labels):
    model = copy.deepcopy(model).eval()
    loss = nn.functional.cross_entropy(model(images), labels)
    loss.backward()
    return loss.item(), {i: model[i].weight.grad for i in linear_layers(model)}


@check
@one_thread
def check_cosine_and_ratio(cosine_and_ratio):
    """``cosine_and_ratio(model, layer, a, images, labels) -> (cos(W, g), a ||g(aW)|| / ||g(W)||)``."""
    __tracebackhide__ = True  # noqa: F841
    images, labels = first_batch()
    for layer, a in SCALE_CASES:
        model = chapter_network(TINY_EPS)
        weights = {i: model[i].weight.detach().clone() for i in linear_layers(model)}
        answer = as_array(run(cosine_and_ratio, model, layer, a, images, labels, returns="(cosine, ratio)",
                              may_change=(0,)))  # a forward pass in train mode moves the running statistics
        if any(not torch.equal(model[i].weight, w) for i, w in weights.items()):
            not_yet("Your function left the network's weights changed: scale a copy (copy.deepcopy(model)), or "
                    "put the weight back as it was.")
        if answer.shape != (2,):
            not_yet(f"Return two numbers, (cosine, ratio); got {answer.size} value(s).")
        expected = np.array(cosine_and_ratio_reference(model, layer, a, images, labels))
        if close(answer, expected, rtol=1e-6, atol=1e-9):
            continue
        w, g = model[layer].weight.detach(), loss_and_gradients(model, images, labels)[1][layer]
        mistakes = [
            ((w * g).sum().item(), expected[1], "The cosine is W . g divided by ||W|| ||g||."),
            (expected[0], expected[1] / a, "Multiply the ratio ||g(aW)|| / ||g(W)|| by a: scale invariance "
                                           "predicts a g(aW) = g(W)."),
            (expected[0], 1 / expected[1], "The ratio is a ||g(aW)|| / ||g(W)||, the other way up."),
            (expected[0], 1.0, "Measure g at aW with a backward pass: the 1/a is what you are checking, and the "
                               "last layer (no BN after it) does not follow it."),
            (*cosine_and_ratio_reference(model, layer, a, images, labels, eval_mode=True),
             "Use train mode (model.train()): batch norm must normalize with the batch's statistics, which is "
             "what makes it scale-invariant."),
            (*cosine_and_ratio_reference(model, layer, a, images, labels, every_layer=True),
             "Scale only model[layer].weight by a, not every layer."),
            (*cosine_and_ratio_reference(model, layer, a, images, labels, accumulate=True),
             "Reset the gradients between the two backward passes (model.zero_grad(), or a fresh copy): "
             "backward adds to .grad."),
        ]
        hint = next((text for cosine, ratio, text in mistakes if close(answer, [cosine, ratio], 1e-6, 1e-9)), None)
        not_yet((hint or "Compare with the recipe: g = dL/dW in train mode on a copy; then the same on a copy with "
                         "model[layer].weight multiplied by a; return (W.g / (|W| |g|), a |g(aW)| / |g(W)|).")
                + f" (Layer {layer}, a = {a}.)")
    passed("W . g = 0 and a g(aW) = g(W) for the weights feeding BN; the last layer, which feeds no BN, "
           "obeys neither.")


def _rotated(w, angle, generator):
    """A tensor at ``angle`` radians from ``w``: rotated in the plane of w and a random direction orthogonal to it."""
    u = torch.randn(w.shape, generator=generator, dtype=w.dtype)
    u -= (u * w).sum() / (w * w).sum() * w
    return math.cos(angle) * w / w.norm() + math.sin(angle) * u / u.norm()


def _angle_cases():
    """(w0, w1, the angle between them, what the case is)."""
    generator = torch.Generator().manual_seed(0)
    w = torch.randn(100, 784, generator=generator)
    cases = [(w, 3.0 * w, "rescaling only"), (w, 5.0 * _rotated(w, 0.7, generator), "0.7 rad, and rescaled"),
             (w, 0.5 * _rotated(w, 0.02, generator), "0.02 rad, and rescaled"), (torch.full_like(w, 0.7), torch.full_like(w, 0.7), "two equal tensors")]
    # (all 0.7: in float64 their cosine rounds to just above 1)
    return [(w0, w1, reference_angle(w0, w1), what) for w0, w1, what in cases]


def reference_angle(w0, w1):
    """The angle between two tensors, flattened, in float64."""
    a, b = w0.double().flatten(), w1.double().flatten()
    return torch.arccos((a @ b / (a.norm() * b.norm())).clamp(-1, 1)).item()


@check
@one_thread
def check_angular_update(angular_update):
    """``angular_update(w0, w1)``: the angle in radians between two weight tensors, flattened."""
    __tracebackhide__ = True  # noqa: F841
    for w0, w1, angle, what in _angle_cases():
        value = run(angular_update, w0, w1, returns="the angle, a number")
        try:
            undefined = math.isnan(float(value))
        except (TypeError, ValueError, RuntimeError):  # not one number: as_array says so
            undefined = False
        if undefined:
            not_yet("Your angle is NaN for two equal tensors: rounding can put the cosine just above 1; clamp it to "
                    "[-1, 1] before arccos.")
        answer = as_array(value)
        if answer.size != 1:
            not_yet(f"Return one number, the angle between the two whole tensors (got {answer.size} values).")
        answer = answer.item()
        if abs(answer - angle) <= 1e-6:
            continue
        a, b = w0.double().flatten(), w1.double().flatten()
        cosine = (a @ b / (a.norm() * b.norm())).item()
        rows = torch.arccos(((w0 * w1).sum(1) / (w0.norm(dim=1) * w1.norm(dim=1))).clamp(-1, 1)).mean().item()
        mistakes = [
            (math.degrees(angle), "Return radians, not degrees."),
            (cosine, "That is the cosine; the angle is its arccos."),
            (((w1 - w0).norm() / w0.norm()).item(), "||w1 - w0|| / ||w0|| is not an angle: it changes when w1 is only "
                                                     "rescaled. Use the cosine of the two tensors."),
            (rows, "Flatten both tensors and take one angle between them, not an angle per row."),
        ]
        hint = next((text for value, text in mistakes if math.isclose(answer, value, rel_tol=1e-4)), None)
        if hint is None and abs(answer - angle) < 1e-3:
            hint = "Compute in float64 (.double()): in float32 the cosine of a small angle loses its digits."
        if hint is None and not -1 <= (a @ b).item() <= 1:
            hint = "Divide the dot product by ||w0|| ||w1||: arccos needs the cosine, a number in [-1, 1]."
        not_yet((hint or "angle = arccos(w0 . w1 / (||w0|| ||w1||)), the tensors flattened, the cosine clamped to "
                         "[-1, 1].") + f" (Case: {what}, expected {angle:g} rad, got {answer:.6g}.)")
    passed("arccos of the cosine of the two flattened tensors: blind to rescaling, as batch norm is.")


EQUIVALENT = {"c": 3.0, "lr": 0.1, "wd": 3e-3, "steps": 20}


def _hidden_positions(model):
    return [i for i in linear_layers(model)[:-1]]


def _groups(answer_groups):
    """The learner's groups as a list of dicts (from an optimizer, its param_groups)."""
    if isinstance(answer_groups, torch.optim.Optimizer):
        return answer_groups.param_groups
    if not isinstance(answer_groups, (list, tuple)) or not all(isinstance(g, dict) and "params" in g
                                                                for g in answer_groups):
        not_yet("Return the parameter groups as torch.optim.SGD takes them: a list of dicts, each with 'params', "
                "'lr' and 'weight_decay' (parameter_groups(model, lr, wd) makes the chapter's).")
    return [dict(group, params=list(group["params"])) for group in answer_groups]


def train_with_groups(model, groups, steps, dtype=torch.float64):
    """``steps`` steps of torch.optim.SGD on ``groups`` (the model's parameters) on the chapter's first batches."""
    images, labels = mnist(train=True)
    optimizer = torch.optim.SGD(groups, lr=groups[0]["lr"])
    model.train()
    for (batch,) in random_batches(len(images), 60, steps, seed=0):
        loss = nn.functional.cross_entropy(model(images[batch].to(dtype)), labels[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model


def _setting_hint(model, twin, groups, c, lr, wd):
    """A hint naming the mistake in the learner's set-up, found before training, or None."""
    hidden = _hidden_positions(model)
    factor = np.mean([(twin[i].weight.norm() / model[i].weight.norm()).item() for i in hidden])
    last = linear_layers(model)[-1]
    if math.isclose(factor, c, rel_tol=1e-6):
        return f"Scale the hidden weights by sqrt(c) = {math.sqrt(c):.4g}, not by c: the norm's square is what lr x wd sets."
    if math.isclose(factor, 1.0, rel_tol=1e-6):
        return "Run B starts from sqrt(c) W: multiply the hidden weights (the Linear layers before BN) by sqrt(c)."
    if not torch.equal(twin[last].weight, model[last].weight):
        return "Leave the last Linear as it is: it feeds no BN, so it is not scale-invariant."
    setting = {id(p): (group["lr"], group.get("weight_decay", 0.0)) for group in groups for p in group["params"]}
    hidden_settings = {setting.get(id(twin[i].weight)) for i in hidden}
    others = {id(p): setting.get(id(p)) for p in twin.parameters() if all(p is not twin[i].weight for i in hidden)}
    if any(value is not None and not math.isclose(value[0], lr) for value in others.values()):
        return "Only the hidden weights take c lr: gamma, beta and the last Linear keep their own learning rate lr."
    for value in hidden_settings - {None}:
        if math.isclose(value[1], wd * c):
            return "Divide the weight decay by c (wd / c), do not multiply it: the product lr x wd must stay the same."
        if math.isclose(value[0], lr / c):
            return "The hidden weights take c lr and wd / c, not lr / c and wd c."
    return None


@check
@one_thread
def check_equivalent_run(equivalent_run):
    """``equivalent_run(model, c, lr, wd) -> (twin, groups)``: run B, which follows run A's function."""
    __tracebackhide__ = True  # noqa: F841
    c, lr, wd, steps = (EQUIVALENT[key] for key in ("c", "lr", "wd", "steps"))
    model = chapter_network(TINY_EPS)
    answer = run(equivalent_run, model, c, lr, wd, returns="(twin, groups)")
    if not isinstance(answer, (tuple, list)) or len(answer) != 2:
        not_yet("Return a pair: (the new network, its parameter groups).")
    twin, groups = answer
    if twin is model or not isinstance(twin, nn.Sequential) or [type(m) for m in twin] != [type(m) for m in model]:
        not_yet("Return a new network with the same layers as the one given (copy.deepcopy(model), then scale its "
                "hidden weights), not the given one, a wrapper around it or another kind of model.")
    groups = _groups(groups)
    listed = [id(p) for group in groups for p in group["params"]]
    mine = {id(p) for p in twin.parameters()}
    if sorted(listed) != sorted(mine):
        not_yet("The groups must hold each parameter of the new network exactly once (and no parameter of the "
                "given network).")
    hint = _setting_hint(model, twin, groups, c, lr, wd)
    if hint:
        not_yet(hint)
    reference = copy.deepcopy(model)
    train_with_groups(reference, parameter_groups(reference, lr, wd), steps)
    train_with_groups(twin, groups, steps)
    test_images = mnist(train=False)[0][:500].double()
    with torch.no_grad():  # train mode: both normalize with the batch's statistics (see the exercise)
        a, b = reference.train()(test_images), twin.train()(test_images)
    difference = ((a - b).abs().max() / a.abs().max()).item()
    if not difference < 1e-9:
        not_yet(f"After {steps} steps the two networks' outputs differ by {difference:.2g} (relative): run B should "
                "follow run A to rounding. Check each group's lr and weight_decay against (c lr, wd / c) for the hidden "
                "weights and (lr, wd) for the rest, as parameter_groups sets them.")
    passed(f"After {steps} steps the two networks compute the same function (relative difference {difference:.1g}): "
           "only lr x wd, and the norm it leads to, matter for a scale-invariant weight.")


INIT_MARGIN = 0.02  # accuracy: "about the same" within 2 points


def init_comparison():
    """"0.1", "10" or "neither": which of k = 0.1 and k = 10 ends with the lower test accuracy in the BN family."""
    config = InitSweep()
    result = run_init_sweep(config, progress=False)
    accuracy = result["accuracy"][FAMILIES.index("BN")]
    small, large = accuracy[config.scales.index(0.1)], accuracy[config.scales.index(10.0)]
    return "neither" if abs(small - large) < INIT_MARGIN else ("0.1" if small < large else "10")


def check_init_prediction(prediction):
    """``prediction``: with BN, does k = 0.1 or k = 10 hurt more after 500 steps ("0.1", "10", "neither")?"""
    __tracebackhide__ = True  # noqa: F841
    check_choice(prediction, init_comparison, ("0.1", "10", "neither"),
                 "At k = 10 the hidden weights are huge, so their effective learning rate lr / ||W||^2 is tiny and "
                 "they barely turn in 500 steps; at k = 0.1 the first steps inflate ||W|| and then it trains normally.",
                 "Compare the BN rows of the initialization table at k = 0.1 and k = 10: which one trains slowly, "
                 "and why does lr / ||W||^2 say so?")


def effective_lr_comparison(low=0.1, high=0.4, ratio=1.5):
    """"larger", "smaller" or "about the same": layer 1's effective lr at the end, at lr ``high`` against ``low``
    (no weight decay)."""
    result = run_grid(progress=False)
    ends = [norm_growth(result, run_index(result, lr, 0.0))["effective_lr"][-1, 0] for lr in (low, high)]
    return "larger" if ends[1] > ratio * ends[0] else "smaller" if ends[0] > ratio * ends[1] else "about the same"


def check_effective_lr_prediction(prediction):
    """``prediction``: without weight decay, after 1,500 steps, is layer 1's lr / ||W||^2 at lr 0.4 "larger",
    "smaller" or "about the same" (within a factor 1.5) as at lr 0.1?"""
    __tracebackhide__ = True  # noqa: F841
    check_choice(prediction, effective_lr_comparison, ("larger", "smaller", "about the same"),
                 "Four times the learning rate grows ||W||^2 about four times as much, which cancels it: the "
                 "network anneals its step to about the same effective learning rate.",
                 "Set the explorer's weight decay to 0 and compare the effective learning rate at the end for "
                 "learning rates 0.1 and 0.4.")
