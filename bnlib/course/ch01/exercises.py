"""Checks for notebook 01, input normalization: standardizing new data with the training statistics, the
stability limit found by experiment, and two predictions (scaling without centering; one rate for both problems)."""

import numpy as np

from bnlib.course.ch01 import input_normalization as inorm
from bnlib.course.checks import call, check_choice, not_yet, verdict

TRAIN = 150  # the first 150 examples of the data set are the training split, the other 50 the test split
SHARED_LR = 0.5  # the explorer's starting rate, which converges on standardized features


def split():
    """``(X_train, X_test)``: the two-scale data set cut in two."""
    X, _ = inorm.two_scale_data()
    return X[:TRAIN], X[TRAIN:]


def call_for_pair(function, *args):
    """``function(*args)`` as a pair of float arrays; anything else is a ``NotYet`` that says what is wrong."""
    __tracebackhide__ = True  # noqa: F841
    if function is None or not callable(function):
        call(function)  # the hints for a missing answer or a value passed instead of the function
    kept = []

    def run(*inner):
        kept.append(function(*inner))
        return None if kept[-1] is None else 0.0

    call(run, *args)  # a stub, an exception or None become a NotYet with call's hint
    try:
        first, second = kept[-1]
        return np.asarray(first, dtype=np.float64), np.asarray(second, dtype=np.float64)
    except (TypeError, ValueError):
        not_yet("Return a pair (Z_train, Z_test) of arrays.")


def check_standardize_split(standardize_split):
    """``standardize_split(X_train, X_test) -> (Z_train, Z_test)``, both with the training split's statistics."""
    __tracebackhide__ = True  # noqa: F841
    X_train, X_test = split()
    mine_train, mine_test = call_for_pair(standardize_split, X_train, X_test)
    Z_train, mean, std = inorm.standardize(X_train)
    expected_test = (X_test - mean) / std
    if mine_train.shape != X_train.shape or mine_test.shape != X_test.shape:
        not_yet(f"Z_train must have the shape of X_train {X_train.shape} and Z_test that of X_test {X_test.shape}.")
    if not np.allclose(mine_train, Z_train, rtol=1e-9, atol=1e-9):
        if np.allclose(mine_train, (X_train - X_train.mean(axis=0)) / X_train.std(axis=0, ddof=1)):
            not_yet("Close: you divided by the sample std (ddof=1); standardization uses X.std(axis=0).")
        not_yet("Z_train is not standardized per column: subtract each column's mean and divide by its std (axis=0).")
    if np.allclose(mine_test, inorm.standardize(X_test)[0], rtol=1e-9, atol=1e-9):
        not_yet("You standardized the test split with its own statistics: a new example must be standardized with "
                "the training split's mean and std.")
    verdict(np.allclose(mine_test, expected_test, rtol=1e-9, atol=1e-9),
            "Both splits standardized with the training statistics, as a model in use must do.",
            "Z_test must use the mean and std of X_train, per column.")


def check_measured_limit(measured_stability_limit):
    """``measured_stability_limit(X, y)``, found by running gradient descent, within 3% of 2 / lambda_max."""
    __tracebackhide__ = True  # noqa: F841
    for normalize in (False, True):
        X, y = inorm.problem(normalize)
        answer = call(measured_stability_limit, X, y)
        if answer.size != 1:
            not_yet(f"Return one learning rate (got an array of shape {answer.shape}).")
        ratio = float(answer.item()) / inorm.max_stable_lr(X)
        if abs(ratio - 1) < 1e-9:
            not_yet("That is the formula 2 / lambda_max exactly: find the limit by running gradient_descent instead.")
        if abs(ratio - 0.5) < 0.03:
            not_yet(f"On the {inorm.NAMES[normalize]} you found half the limit (1 / lambda_max?): rates up to twice "
                    "that still shrink the loss.")
        if abs(ratio - 1) > 0.03:
            not_yet(f"On the {inorm.NAMES[normalize]} your limit is {ratio:.3g} x 2/lambda_max. Bisect: keep `low` a "
                    "rate whose final loss is below its start, `high` one whose final loss is above, and halve the gap.")
    verdict(True, "Measured and predicted agree: the experiment finds the cliff where the eigenvalues say it is.", "")


SCALED_CHOICES = ("about the same", "about ten times larger", "about as bad as the raw features")


def scaled_only_prediction():
    """How kappa of the scaled-but-not-centered features compares with kappa of the standardized ones."""
    X, _ = inorm.two_scale_data()
    ratio = inorm.condition_number(X / X.std(axis=0)) / inorm.condition_number(inorm.standardize(X)[0])
    return SCALED_CHOICES[0] if ratio < 2 else SCALED_CHOICES[1] if ratio < 1e3 else SCALED_CHOICES[2]


def check_scaled_only_prediction(answer):
    """Dividing by the std without subtracting the mean: how does kappa compare with full standardization?"""
    __tracebackhide__ = True  # noqa: F841
    check_choice(answer, scaled_only_prediction(), SCALED_CHOICES,
                 "Uncentered columns give H large off-diagonal entries mu1 mu2 / (sigma1 sigma2): centering matters "
                 "as much as scaling.",
                 "Compute it: condition_number(X / X.std(axis=0)) against condition_number(standardize(X)[0]).")


def shared_rate_prediction():
    """What gradient descent does on the raw features at the rate that works on standardized ones."""
    X, y = inorm.problem(False)
    weights, losses, diverged = inorm.gradient_descent(X, y, SHARED_LR, 200)
    best = inorm.loss(inorm.optimum(X, y), X, y)
    return "diverges" if diverged else "converges" if losses[-1] - best <= inorm.converged_gap(y) else "stalls"


def check_shared_rate_prediction(answer):
    """lr = 0.5 converges on standardized features: what does it do on the raw ones?"""
    __tracebackhide__ = True  # noqa: F841
    check_choice(answer, shared_rate_prediction(), ("converges", "stalls", "diverges"),
                 "0.5 is about a billion times the raw problem's limit 2 / lambda_max: no single rate "
                 "suits both problems.",
                 "Compare 0.5 with the raw problem's largest stable rate (the explorer's readout prints it).")
