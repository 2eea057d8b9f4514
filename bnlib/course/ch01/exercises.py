"""Checks for notebook 01, input normalization: standardizing new data with the training statistics, the
stability limit found by experiment, and two predictions (scaling without centering; one rate for both problems)."""

import numpy as np

from bnlib.course.ch01 import input_normalization as inorm
from bnlib.course.checks import as_array, call, check_choice, check_close, not_yet, passed, run

TRAIN = 150  # the first 150 examples of the data set are the training split, the other 50 the test split
SHARED_LR = 0.5  # the explorer's starting rate, which converges on standardized features
DIVERGED_RATIO = 1.035  # where gradient_descent's `diverged` flag turns, in units of 2 / lambda_max (both problems)


def split():
    """``(X_train, X_test)``: the two-scale data set cut in two."""
    X, _ = inorm.two_scale_data()
    return X[:TRAIN], X[TRAIN:]


def standardized_with(X, mean, std):
    """``X`` standardized with the statistics ``mean`` and ``std``."""
    return (X - mean) / std


def split_mistakes(X_train, X_test, part):
    """(what a common mistake returns for ``part`` 0, Z_train, or 1, Z_test; its hint)."""
    X = np.concatenate([X_train, X_test])
    chosen = (X_train, X_test)[part]
    mean, std = X_train.mean(axis=0), X_train.std(axis=0)
    mistakes = [
        (standardized_with(chosen, mean, X_train.std(axis=0, ddof=1)),
         "Close: you divided by the sample std (ddof=1); standardization uses X.std(axis=0)."),
        (standardized_with(chosen, X.mean(axis=0), X.std(axis=0)),
         "You used the statistics of both splits together: only the training split's may be used, as a model "
         "in use never sees its test data in advance."),
        (standardized_with(chosen, X_train.mean(), X_train.std()),
         "One mean and std for the whole array mixes the two features: take them per column (axis=0)."),
        (standardized_with(chosen, X_train.mean(axis=1, keepdims=True), X_train.std(axis=1, keepdims=True))
         if part == 0 else None,
         "Those are statistics per row (axis=1): standardize each column, over the examples (axis=0)."),
        (chosen - mean, "Centered but not scaled: divide by each column's std too."),
        (chosen / std, "Scaled but not centered: subtract each column's mean too."),
    ]
    if part == 1:
        mistakes += [
            (inorm.standardize(X_test)[0], "You standardized the test split with its own statistics: a new example "
                                           "must be standardized with the training split's mean and std."),
            (standardized_with(X_test, mean, X_test.std(axis=0)),
             "The mean is the training split's, but the std is the test split's own: use both from X_train."),
            (standardized_with(X_test, X_test.mean(axis=0), std),
             "The std is the training split's, but the mean is the test split's own: use both from X_train."),
        ]
    return [(value, hint) for value, hint in mistakes if value is not None]


def check_standardize_split(standardize_split):
    """``standardize_split(X_train, X_test) -> (Z_train, Z_test)``, both with the training split's statistics."""
    __tracebackhide__ = True  # noqa: F841
    X_train, X_test = split()
    pair = run(standardize_split, X_train, X_test, returns="the pair (Z_train, Z_test)")
    if not isinstance(pair, (tuple, list)) or len(pair) != 2:
        not_yet(f"Return a pair (Z_train, Z_test) of arrays (got {type(pair).__name__}).")
    Z_train, mean, std = inorm.standardize(X_train)
    for part, (name, mine, expected) in enumerate([("Z_train", pair[0], Z_train),
                                                   ("Z_test", pair[1], standardized_with(X_test, mean, std))]):
        check_close(as_array(mine), expected, None if part == 0 else
                    "Both splits standardized with the training statistics, as a model in use must do.",
                    f"{name} is not the split standardized per column with the mean and std of X_train.",
                    split_mistakes(X_train, X_test, part))


def check_measured_limit(measured_stability_limit):
    """``measured_stability_limit(X, y)``, found by running gradient descent, within 1.5% of 2 / lambda_max (the
    bisection's limit lies within 0.1% of it, and the exercise asks for 1%)."""
    __tracebackhide__ = True  # noqa: F841
    for normalize in (False, True):
        X, y = inorm.problem(normalize)
        answer = call(measured_stability_limit, X, y)
        if answer.size != 1:
            not_yet(f"Return one learning rate (got an array of shape {answer.shape}).")
        ratio = float(answer.item()) / inorm.max_stable_lr(X)
        if abs(ratio - 1) < 1e-9:
            not_yet("That is the formula 2 / lambda_max exactly: find the limit by running gradient_descent instead.")
        if abs(ratio - 0.5) < 0.015:
            not_yet(f"On the {inorm.NAMES[normalize]} you found half the limit (1 / lambda_max?): rates up to twice "
                    "that still shrink the loss.")
        if abs(ratio - DIVERGED_RATIO) < 0.005:
            not_yet(f"On the {inorm.NAMES[normalize]} you found where gradient_descent reports `diverged` (the loss "
                    "grew a trillion-fold): a stable rate is one whose final loss is below its starting loss.")
        if abs(ratio - 1) > 0.015:
            not_yet(f"On the {inorm.NAMES[normalize]} your limit is {ratio:.3g} x 2/lambda_max. Bisect: keep `low` a "
                    "rate whose final loss (after 200 steps) is below its start, `high` one whose final loss is "
                    "above, and halve the gap until it is under 1% of `high`.")
    passed("Measured and predicted agree: the experiment finds the cliff where the eigenvalues say it is.")


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
