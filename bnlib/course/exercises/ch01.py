"""Exercises of notebook 01 (input normalization). The data are ``input_normalization.two_scale_data()``."""

import numpy as np

from bnlib.course.ch01 import input_normalization as inorm
from bnlib.course.exercises.checks import check_number, report


def _as_array(answer, shape):
    """``answer`` as a float array of ``shape``, or None when it is not one."""
    try:
        value = np.asarray(answer, dtype=float)
    except (TypeError, ValueError):
        return None
    return value if value.shape == shape and np.all(np.isfinite(value)) else None


def check_standardized(answer):
    """Z = (X - mean) / std, per column (axis 0), with the population std (ddof=0)."""
    X, _ = inorm.two_scale_data()
    expected = inorm.standardize(X)[0]
    value = _as_array(answer, X.shape)
    if value is not None and np.allclose(value, expected, rtol=1e-9, atol=1e-9):
        return report(True, "Each column now has mean 0 and standard deviation 1.", "")
    if value is None:
        hint = f"the answer should be an array of shape {X.shape}, like X, with finite numbers."
    elif np.allclose(value, (X - X.mean()) / X.std()):
        hint = "you used one mean and one std for the whole array; take them per column (axis=0)."
    elif np.allclose(value, (X - X.mean(axis=1, keepdims=True)) / X.std(axis=1, keepdims=True)):
        hint = "you took the statistics per row (per example); standardization is per column (per feature)."
    elif np.allclose(value, (X - X.mean(axis=0)) / X.std(axis=0, ddof=1)):
        hint = "close: you divided by the sample std (ddof=1); use the population std, X.std(axis=0)."
    else:
        hint = "check the column means of your answer (should be 0) and its column stds (should be 1)."
    return report(False, "", hint)


def check_max_stable_lr(answer):
    """The largest stable learning rate on the RAW features: 2 / lambda_max of H = X^T X / N."""
    X, _ = inorm.two_scale_data()
    expected, lambda_max = inorm.max_stable_lr(X), inorm.eigenvalues(X)[-1]
    return check_number(
        answer, expected,
        f"2 / lambda_max = {expected:.4g}: a rate that works on standardized data (around 1) is about a billion "
        "times too large here.",
        [(1 / lambda_max, "that is 1 / lambda_max, the rate that kills the steepest direction in one step; the "
                          "limit is twice it."),
         (2 / lambda_max * len(X), "did you forget the 1/N in H = X^T X / N?")],
        "build H = X.T @ X / len(X), take its largest eigenvalue (np.linalg.eigvalsh), then 2 / it.")


def check_scaled_only_condition_number(answer):
    """kappa of H when each column is divided by its std but NOT centered."""
    X, _ = inorm.two_scale_data()
    expected = inorm.condition_number(X / X.std(axis=0))
    return check_number(
        answer, expected,
        f"kappa = {expected:.3g}: far better than ~1e9, but not the ~1 of full standardization. The column means "
        "make H's off-diagonal large: centering matters too.",
        [(inorm.condition_number(inorm.standardize(X)[0]),
          "that is kappa after centering as well; divide X by X.std(axis=0) without subtracting the mean.")],
        "compute S = X / X.std(axis=0), H = S.T @ S / len(S), and lambda_max / lambda_min of H.",
        rel_tol=1e-4)
