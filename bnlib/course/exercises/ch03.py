"""Checks for notebook 03, batch norm from scratch: the variance step, dgamma and dbeta, the compact backward."""

import numpy as np

from bnlib.course.ch03.gradient_checks import backward_forgetting_variance
from bnlib.course.exercises.checks import report
from bnlib.normalization import batch_norm_backward, batch_norm_forward


def exercise_batch(seed=3):
    """The batch the exercises use: x (6 examples, 3 features), gamma, beta and a random upstream dout."""
    rng = np.random.default_rng(seed)
    x = rng.normal([0.0, 5.0, -2.0], [1.0, 3.0, 0.5], size=(6, 3))
    return x, np.array([1.5, 0.5, 2.0]), np.array([0.0, 1.0, -1.0]), rng.standard_normal((6, 3))


def _call(fn, *args):
    """``fn(*args)`` as a float array, or the reason it could not be used."""
    if not callable(fn):
        return None, f"pass your function itself (got {type(fn).__name__})"
    try:
        value = fn(*args)
    except Exception as err:  # the learner's code: report, never raise
        return None, f"your function raised {type(err).__name__}: {err}"
    if value is None:
        return None, "your function returned None; finish it and return the array"
    try:
        return np.asarray(value, dtype=np.float64), None
    except (TypeError, ValueError):
        return None, f"your function must return an array of numbers, got {type(value).__name__}"


def check_batch_variance(batch_variance):
    """``batch_variance(x)`` must return the biased variance of each feature of an (N, C) batch."""
    x = exercise_batch()[0]
    answer, problem = _call(batch_variance, x)
    if problem:
        return report(False, "", problem)
    expected = batch_norm_forward(x, np.ones(3), np.zeros(3))[1].var
    if answer.shape != expected.shape:
        return report(False, "", f"expected one variance per feature, shape {expected.shape}, got shape "
                                 f"{answer.shape}: average over the examples, axis 0")
    if np.allclose(answer, expected * len(x) / (len(x) - 1)):
        return report(False, "", "that is the unbiased variance (divide by m - 1); batch norm divides by m")
    if np.allclose(answer ** 2, expected):
        return report(False, "", "that is the standard deviation; the variance is its square")
    return report(np.allclose(answer, expected, rtol=1e-10, atol=1e-12),
                  "The mean squared deviation from the batch mean, divided by m.",
                  "subtract each feature's batch mean, square, and average over the m examples")


def check_dgamma_dbeta(answer):
    """``answer = (dgamma, dbeta)`` for ``exercise_batch()`` with its upstream gradient dout."""
    try:
        parts = list(answer)
    except TypeError:
        return report(False, "", "answer must be a pair (dgamma, dbeta) of arrays of shape (3,)")
    if any(part is None for part in parts):
        return report(False, "", "fill in both dgamma and dbeta")
    try:
        mine = [np.asarray(part, dtype=np.float64) for part in parts]
    except (TypeError, ValueError):
        return report(False, "", "answer must be a pair (dgamma, dbeta) of arrays of shape (3,)")
    x, gamma, beta, dout = exercise_batch()
    _, dgamma, dbeta = batch_norm_backward(dout, batch_norm_forward(x, gamma, beta)[1])
    if len(mine) != 2 or any(part.shape != (3,) for part in mine):
        return report(False, "", "answer must be a pair (dgamma, dbeta), each with one value per feature")
    if np.allclose(mine[0], dbeta) and np.allclose(mine[1], dgamma):
        return report(False, "", "you swapped them: the pair is (dgamma, dbeta)")
    if not np.allclose(mine[1], dbeta, atol=1e-10):
        return report(False, "", "y = gamma xhat + beta, so dy/dbeta = 1: dbeta sums dout over the batch")
    return report(np.allclose(mine[0], dgamma, atol=1e-10),
                  "dbeta = sum_i dout_i and dgamma = sum_i dout_i xhat_i.",
                  "dy/dgamma = xhat: dgamma sums dout * xhat over the batch (xhat, not x)")


def check_batch_norm_backward(backward):
    """``backward(dout, cache) -> dx`` with the core's cache (x_hat, gamma, inv_std, ...)."""
    x, gamma, beta, dout = exercise_batch()
    cache = batch_norm_forward(x, gamma, beta)[1]
    answer, problem = _call(backward, dout, cache)
    if problem:
        return report(False, "", problem)
    if answer.shape != x.shape:
        return report(False, "", f"dx has the shape of x, {x.shape}; got {answer.shape}")
    if np.allclose(answer, backward_forgetting_variance(dout, cache)[0]):
        return report(False, "", "you dropped the path through the variance: subtract x_hat * mean(dxhat * x_hat)")
    return report(np.allclose(answer, batch_norm_backward(dout, cache)[0], rtol=1e-9, atol=1e-12),
                  "That is the compact formula, three terms: direct, through the mean, through the variance.",
                  "start from dxhat = gamma * dout, then dx = inv_std * (dxhat - mean(dxhat) "
                  "- x_hat * mean(dxhat * x_hat)), means over the batch axis")
