"""Checks for notebook 02, internal covariate shift: the bias gradient the detached step sees, the mean inside
the gradient, and two predictions (which layer's sigmoid inputs drift more; the loss at a larger learning rate)."""

import numpy as np
import torch

from bnlib.course.ch02 import covariate_shift as shift
from bnlib.course.ch02.recording import drift_run
from bnlib.course.checks import NotYet, call, check_choice, not_yet, verdict

DOUBLED_LR = 0.2


def bias_cases():
    """``(u, target, b)`` triples: the notebook's problem at b = 0, and another problem at b = 1.5."""
    u, target = shift.bias_problem()
    other_u, other_target = shift.bias_problem(n=10, seed=3)
    return [(u, target, 0.0), (other_u, 3 * other_target, 1.5)]


def autograd_bias_gradient(u, target, b, mean_in_gradient):
    """d loss / d b from autograd, loss = 1/(2N) sum (x_hat - t)^2, x_hat = ``shift.centered(u + b)``."""
    bias = torch.tensor(b, dtype=torch.float64, requires_grad=True)
    loss = 0.5 * ((shift.centered(u + bias, mean_in_gradient) - target) ** 2).mean()
    loss.backward()
    return bias.grad.item()


def check_bias_gradient(bias_gradient_detached):
    """``bias_gradient_detached(u, target, b)``: d loss / d b with E[x] held constant, by hand."""
    __tracebackhide__ = True  # noqa: F841
    for u, target, b in bias_cases():
        answer = call(bias_gradient_detached, u, target, b)
        if answer.size != 1:
            not_yet(f"Return one number, the derivative with respect to the single bias b (got shape {answer.shape}).")
        answer, expected = float(answer.item()), autograd_bias_gradient(u, target, b, False)
        if np.isclose(answer, len(u) * expected, rtol=1e-9):
            not_yet("N times too large: the loss averages over the N examples, so d loss / d x_hat_i = "
                    "(x_hat_i - t_i) / N, and d loss / d b is their plain sum.")
        if np.isclose(answer, -expected, rtol=1e-9):
            not_yet("Right size, wrong sign: differentiate (x_hat_i - t_i)^2 / (2N) with respect to x_hat_i.")
        if abs(answer) < 1e-12:
            not_yet("Zero is the gradient with the mean inside the gradient. Held constant, E[x] does not move "
                    "with b: d x_hat_i / d b = 1.")
        if not np.isclose(answer, expected, rtol=1e-9, atol=1e-12):
            not_yet("Not autograd's value. Chain rule: d loss / d b = sum_i d loss / d x_hat_i * d x_hat_i / d b.")
    verdict(True, "The same as autograd gives with x.mean().detach(), and not zero: b keeps moving.", "")


def check_center_inside_gradient(center_in_graph):
    """``center_in_graph(x)`` must return x - mean(x) with the mean inside the gradient: b's gradient is 0."""
    __tracebackhide__ = True  # noqa: F841
    if center_in_graph is None:
        not_yet("Fill in your function first.")
    u, target = shift.bias_problem()
    bias = torch.tensor([2.0], dtype=torch.float64, requires_grad=True)
    x = u + bias
    try:
        x_hat = center_in_graph(x)
        if not isinstance(x_hat, torch.Tensor):
            not_yet(f"center_in_graph(x) returned {type(x_hat).__name__}; return a torch tensor computed from x.")
        (0.5 * ((x_hat - target) ** 2).mean()).backward()
    except NotYet:
        raise
    except NotImplementedError:
        not_yet("Your function is not written yet: replace `raise NotImplementedError()` by its body.")
    except Exception as err:  # the learner's code: a hint, with their traceback chained
        raise NotYet(f"Not yet. center_in_graph(x) raised {type(err).__name__}: {err}. Use torch operations on x.") \
            from err
    if x_hat.shape != x.shape or not torch.allclose(x_hat.detach(), (x - x.mean()).detach(), atol=1e-12):
        not_yet("Return x minus its mean over the batch: the result has the shape of x and mean 0.")
    gradient = 0.0 if bias.grad is None else bias.grad.item()
    verdict(abs(gradient) < 1e-12, "b's gradient is 0 (up to rounding): autograd sees that b cancels out.",
            "The output is centered, but b still gets a gradient: the mean is hidden from autograd (detach, "
            ".item(), numpy?). Compute it from x with torch.")


def layer_prediction():
    """"more", "less" or "about the same": the median drift of layer 1's sigmoid inputs against layer 3's."""
    first, _, third = shift.drift_summary(drift_run(progress=False))["x_by_layer"]
    return "more" if first > 2 * third else "less" if third > 2 * first else "about the same"


def check_layer_prediction(answer):
    """Do layer 1's sigmoid inputs drift more, less or about the same as layer 3's, from step 500 on?"""
    __tracebackhide__ = True  # noqa: F841
    check_choice(answer, layer_prediction(), ("more", "less", "about the same"),
                 "Measured on the run: the medians of the first layer's sigmoid inputs move much further than "
                 "the last one's, whose distributions widen instead.",
                 "Compare the readout's drift for a few units of layer 1 and of layer 3 at step 3,000.")


def doubled_lr_prediction():
    """"lower", "higher" or "the same": the loss after 100 detached steps at learning rate 0.2."""
    loss = shift.train_bias(False, 100, DOUBLED_LR)["loss"]
    return "the same" if abs(loss[-1] - loss[0]) < 1e-9 * loss[0] else "lower" if loss[-1] < loss[0] else "higher"


def check_doubled_lr_prediction(answer):
    """With the mean detached and the learning rate doubled, is the loss after 100 steps lower, higher or the same?"""
    __tracebackhide__ = True  # noqa: F841
    check_choice(answer, doubled_lr_prediction(), ("lower", "higher", "the same"),
                 "b runs away twice as fast, and the loss still does not move: the mean absorbs every step.",
                 "Whatever b is, what is x_hat = u + b - E[u + b]? And so the loss?")
