"""Exercises of notebook 02 (internal covariate shift)."""

import torch

from bnlib.course import drift
from bnlib.course.ch02 import covariate_shift as shift
from bnlib.course.exercises.checks import check_number, report

BIAS_STEPS, BIAS_LR = 1000, 0.1  # b after 1000 steps of lr 0.1 with the mean outside the gradient


def check_median_shift(answer):
    """The drift (``bnlib.course.drift``) of the typical input u_j from step DRIFT_FROM to the end."""
    run = shift.drift_run(progress=False)
    unit = shift.drift_summary(run)["u"]["typical_unit"]
    expected = drift.unit_drifts(run["u_percentiles"], run["steps"], shift.DRIFT_FROM)[unit]
    return check_number(
        answer, expected,
        f"the median moved by {expected:.2f} of the band: layer 3 sees a different input late in training than "
        "it learned from early on.",
        [],
        "Compare the medians at step DRIFT_FROM and at the last step (find the row with run['steps']), and "
        "divide by the band width (85th minus 15th percentile) averaged over the rows from DRIFT_FROM on.",
        rel_tol=1e-3)


def check_bias_after_steps(answer):
    """b after BIAS_STEPS steps of lr BIAS_LR, starting at 0, with the mean outside the gradient."""
    expected = shift.train_bias(False, BIAS_STEPS, BIAS_LR)["bias"][-1]
    return check_number(
        answer, expected,
        f"b = steps * lr * mean(t) = {expected:.2f}, and nothing stops it.",
        [(-expected, "right size, wrong sign: gradient descent subtracts lr * gradient, and the gradient is "
                     "-mean(t).")],
        "with E[x] held constant, d loss / d b = mean(x_hat - t) = -mean(t) at every step, since x_hat has "
        "mean 0. Each step adds lr * mean(t).")


def check_center_inside_gradient(center):
    """``center(x)`` must return x - mean(x) with the mean inside the gradient: b's gradient is 0."""
    if not callable(center):
        return report(False, "", "the answer should be a function: def center(x): return ...")
    u, target = shift.bias_problem()
    bias = torch.tensor([2.0], dtype=torch.float64, requires_grad=True)
    x = u + bias
    try:
        x_hat = center(x)
        if not isinstance(x_hat, torch.Tensor):
            return report(False, "", f"center(x) returned {type(x_hat).__name__}; it should return a torch tensor.")
        loss = 0.5 * torch.mean((x_hat - target) ** 2)
        loss.backward()
    except Exception as err:  # the learner's code: report, do not raise
        return report(False, "", f"center(x) raised {type(err).__name__}: {err}. Use torch operations on x.")
    if not torch.allclose(x_hat.detach(), (x - x.mean()).detach(), atol=1e-12):
        return report(False, "", "center(x) should return x minus its mean over the batch: the result has mean 0.")
    gradient = 0.0 if bias.grad is None else bias.grad.item()
    if abs(gradient) > 1e-12:
        return report(False, "", f"the output is centered, but b's gradient is {gradient:.3f}, not 0: the mean is "
                                 "hidden from autograd (detach, .item(), numpy?). Compute it from x with torch.")
    return report(True, "b's gradient is 0 (up to rounding): autograd sees that b cancels out.", "")
