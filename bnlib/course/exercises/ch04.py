"""Checks for notebook 04, gamma and beta: the output's moments, undoing BN, the gradient under scaling."""

import numpy as np

from bnlib.course.ch04.reparameterization import output_moments, scale_invariance
from bnlib.course.exercises.checks import check_number, report
from bnlib.normalization import batch_norm_forward

MOMENTS_GAMMA, MOMENTS_BETA = 3.0, -2.0
SCALE = 4.0


def identity_batch(seed=4):
    """The batch of the identity exercise: 8 examples, 3 features with different means and spreads."""
    return np.random.default_rng(seed).normal([10.0, -1.0, 0.5], [2.0, 0.1, 5.0], size=(8, 3))


def _pair(answer, what):
    try:
        first, second = answer
    except (TypeError, ValueError):
        return None, f"answer must be a pair ({what})"
    return (first, second), None


def check_output_moments(answer):
    """``answer = (mean, std)`` of a BN unit's output over a batch, for gamma = 3 and beta = -2."""
    pair, problem = _pair(answer, "mean, std")
    if problem:
        return report(False, "", problem)
    try:
        pair = [float(value) for value in pair]
    except (TypeError, ValueError):
        return report(False, "", "fill in both numbers")
    x = identity_batch()[:, :1]
    mean, std = (value.item() for value in output_moments(x, np.array([MOMENTS_GAMMA]), np.array([MOMENTS_BETA])))
    if np.isclose(pair[0], std, atol=0.01) and np.isclose(pair[1], mean, atol=0.01):
        return report(False, "", "you swapped them: beta sets the mean, gamma the spread")
    return report(np.isclose(pair[0], mean, atol=0.01) and np.isclose(pair[1], std, atol=0.01),
                  "xhat has mean 0 and std 1, so gamma * xhat + beta has mean beta and std gamma.",
                  "xhat has mean 0 and standard deviation 1: what do scaling by gamma and adding beta do?")


def check_identity_parameters(answer):
    """``answer = (gamma, beta)``, arrays of shape (3,), with BN(identity_batch(); gamma, beta) = x."""
    pair, problem = _pair(answer, "gamma, beta")
    if problem:
        return report(False, "", problem)
    if any(part is None for part in pair):
        return report(False, "", "fill in both gamma and beta")
    x = identity_batch()
    try:
        gamma, beta = (np.asarray(part, dtype=np.float64) for part in pair)
        error = np.abs(batch_norm_forward(x, gamma, beta)[0] - x).max()
    except (TypeError, ValueError) as err:
        return report(False, "", f"gamma and beta must be arrays of shape (3,), one value per feature ({err})")
    if error < 1e-9:
        return report(True, "gamma = sqrt(var + eps) and beta = mu undo the normalization exactly.", "")
    if error < 1e-3:
        return report(False, "", f"close (max error {error:.1e}), but not exact: BN divides by sqrt(var + eps)")
    return report(False, "", f"BN(x) differs from x by up to {error:.2f}: which statistics did BN "
                             "remove from x? Put them back with gamma and beta")


def check_gradient_ratio(answer):
    """``answer``: the ratio dL/d(aW) / dL/dW for a = 4 when the layer is followed by BN."""
    measured = scale_invariance(SCALE)["gradient_ratio"]
    return check_number(
        answer, measured,
        f"1/a = {1 / SCALE:g}; measured through bnlib.BatchNorm1d: {measured:.6f}.",
        [(SCALE, "the other way round: BN(aWu) = BN(Wu), so a larger W gets a smaller gradient")],
        "the output does not change with a, but the chain rule through aW brings a factor; which?",
        rel_tol=1e-3)
