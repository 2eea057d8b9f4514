"""Checks for notebook 02, internal covariate shift: the bias gradient the detached step sees, the mean inside
the gradient, and two predictions (which layer's sigmoid inputs drift more; the loss at a larger learning rate)."""

import torch

from bnlib.course.ch02 import covariate_shift as shift
from bnlib.course.ch02.recording import drift_run
from bnlib.course.checks import (NotYet, as_array, call, check, check_choice, check_close, close, not_yet,
                                 passed, run, verdict)

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


def bias_mistakes(u, target, b, expected):
    """(what a common mistake returns for d loss / d b with E[x] held constant; its hint)."""
    n = len(u)
    x_hat = u + b - (u + b).mean()
    return [
        (n * expected, "N times too large: the loss averages over the N examples, so d loss / d x_hat_i = "
                       "(x_hat_i - t_i) / N, and d loss / d b is their plain sum."),
        (2 * expected, "Twice too large: the loss has a factor 1/2 that cancels the 2 of the square's derivative."),
        (-expected, "Right size, wrong sign: differentiate (x_hat_i - t_i)^2 / (2N) with respect to x_hat_i."),
        (0.0, "Zero is the gradient with the mean inside the gradient. Held constant, E[x] does not move "
              "with b: d x_hat_i / d b = 1."),
        ((1 - 1 / n) * expected, "You differentiated E[x] in part (d x_hat_i / d b = 1 - 1/N): held constant, it "
                                 "contributes nothing, so d x_hat_i / d b = 1."),
        (((u + b - target) / n).sum(), "You left E[x] out of x_hat: it is held constant in the derivative, but it "
                                       "is still subtracted in the value of x_hat_i - t_i."),
        (((x_hat - target) / (n - 1)).sum(), "Divide by N, the number of examples the loss averages over, not N - 1."),
    ]


@check
def check_bias_gradient(bias_gradient_detached):
    """``bias_gradient_detached(u, target, b)``: d loss / d b with E[x] held constant, by hand (it runs with
    autograd off, so that a ``backward`` fails)."""
    __tracebackhide__ = True  # noqa: F841
    for u, target, b in bias_cases():
        try:
            with torch.no_grad():
                answer = call(bias_gradient_detached, u, target, b)
        except NotYet as refusal:
            if isinstance(refusal.__cause__, RuntimeError) and "grad" in str(refusal.__cause__):
                raise NotYet("Not yet. Compute the derivative by hand, from the formula: the check runs your "
                             "function with autograd off, so backward() and .grad have nothing to work on.") \
                    from refusal.__cause__
            raise
        if answer.size != 1:
            not_yet(f"Return one number, the derivative with respect to the single bias b (got shape {answer.shape}).")
        expected = autograd_bias_gradient(u, target, b, False)
        check_close(answer.reshape(()), expected, None,
                    "Not autograd's value. Chain rule: d loss / d b = sum_i d loss / d x_hat_i * d x_hat_i / d b.",
                    bias_mistakes(u, target, b, expected))
    passed("The same as autograd gives with x.mean().detach(), and not zero: b keeps moving.")


def graph_case():
    """``(u, target, bias, shift, x)``: x = u + bias + shift, with the leaves ``bias`` (one number) and ``shift``
    (zeros, one per example) whose gradients show b's and each x_i's, the whole Jacobian's action."""
    u, target = shift.bias_problem()
    bias = torch.tensor([2.0], dtype=torch.float64, requires_grad=True)
    nudge = torch.zeros_like(u, requires_grad=True)
    return u, target, bias, nudge, u + bias + nudge


@check
def check_center_inside_gradient(center_in_graph):
    """``center_in_graph(x)`` must return x - mean(x) with the mean inside the gradient: b's gradient is 0, and
    every x_i's is that of x - mean(x) (not only their sum, which is b's)."""
    __tracebackhide__ = True  # noqa: F841
    u, target, bias, nudge, x = graph_case()
    x_hat = run(center_in_graph, x, returns="x minus its mean, a tensor")
    if not isinstance(x_hat, torch.Tensor):
        not_yet(f"center_in_graph(x) returned {type(x_hat).__name__}; return a torch tensor computed from x.")
    values, reference = as_array(x_hat), (x - x.mean()).detach()
    check_close(values, reference, None, "Return x minus its mean over the batch: the result has the shape of x "
                                         "and mean 0.",
                [(x.detach(), "That is x itself: subtract its mean over the batch."),
                 (reference / x.detach().std(), "Only center x: dividing by its std is the next step, not this one."),
                 (reference / x.detach().std(unbiased=False), "Only center x: dividing by its std is the next step, "
                                                              "not this one.")])
    if not x_hat.requires_grad:
        not_yet("Your result is cut from the graph (detach, numpy, .item() or torch.tensor(...) of x?): autograd "
                "cannot reach b through it. Compute it from x with torch operations.")
    (0.5 * ((x_hat - target) ** 2).mean()).backward()
    gradient = (x_hat.detach() - target) / len(u)  # d loss / d x_hat
    if bias.grad is not None and abs(bias.grad.item()) > 1e-12:
        not_yet("The output is centered, but b still gets a gradient: the mean is hidden from autograd (detach, "
                ".item(), numpy?). Compute it from x with torch.")
    verdict(close(nudge.grad, gradient - gradient.mean(), atol=1e-12),
            "b's gradient is 0 (up to rounding): autograd sees that b cancels out.",
            "b gets no gradient, but the gradients of the single x_i are not those of x - E[x]: part of your "
            "computation is hidden from autograd. Compute x - E[x] from x with torch operations alone.")


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
