"""The exercise checks of notebook 01 accept the solutions and reject blanks and typical mistakes with a hint."""

import numpy as np
import pytest

from bnlib.course.ch01 import input_normalization as inorm
from bnlib.course.ch01 import exercises as ch01
from bnlib.course.checks import NotYet


def split_solution(X_train, X_test):
    Z_train, mean, std = inorm.standardize(X_train)
    return Z_train, (X_test - mean) / std


def test_standardize_split_accepts_the_solution(capsys):
    assert ch01.check_standardize_split(split_solution) is None
    assert capsys.readouterr().out.startswith("Correct.")


@pytest.mark.parametrize("wrong, hint", [
    (lambda a, b: (inorm.standardize(a)[0], inorm.standardize(b)[0]), "its own statistics"),
    (lambda a, b: ((a - a.mean(0)) / a.std(0, ddof=1), (b - a.mean(0)) / a.std(0, ddof=1)), "ddof=1"),
    (lambda a, b: ((a - a.mean()) / a.std(), (b - a.mean()) / a.std()), "per column"),
    (lambda a, b: (inorm.standardize(a)[0], b / a.std(0)), "mean and std of X_train"),
    (lambda a, b: inorm.standardize(a)[0], "pair"),
    (lambda a, b: (a.T, b), "shape"),
    (lambda a, b: None, "returned None"),
    (None, "Fill in"),
    (np.zeros(3), "Pass your function itself"),
])
def test_standardize_split_names_the_mistake(wrong, hint):
    with pytest.raises(NotYet, match=hint):
        ch01.check_standardize_split(wrong)


def bisection(X, y, steps=200):
    def stable(lr):
        losses = inorm.gradient_descent(X, y, lr, steps)[1]
        return losses[-1] < losses[0]

    low, high = 0.0, 1.0
    while stable(high):
        high *= 2
    while high - low > 0.001 * high:
        middle = (low + high) / 2
        low, high = (middle, high) if stable(middle) else (low, middle)
    return low


def test_measured_limit_accepts_a_bisection(capsys):
    assert ch01.check_measured_limit(bisection) is None
    assert capsys.readouterr().out.startswith("Correct.")


@pytest.mark.parametrize("wrong, hint", [
    (lambda X, y: inorm.max_stable_lr(X), "the formula"),
    (lambda X, y: 1 / inorm.eigenvalues(X)[-1], "half the limit"),
    (lambda X, y: 0.9 * inorm.max_stable_lr(X), "Bisect"),
    (lambda X, y: np.ones(2), "one learning rate"),
    (lambda X, y: None, "returned None"),
])
def test_measured_limit_names_the_mistake(wrong, hint):
    with pytest.raises(NotYet, match=hint):
        ch01.check_measured_limit(wrong)


def test_scaling_without_centering_is_about_ten_times_worse():
    X, _ = inorm.two_scale_data()
    ratio = inorm.condition_number(X / X.std(axis=0)) / inorm.condition_number(inorm.standardize(X)[0])
    assert 4 < ratio < 30  # "about ten times larger", far from both other choices
    assert ch01.scaled_only_prediction() == "about ten times larger"
    ch01.check_scaled_only_prediction("about ten times larger")
    for wrong in ("about the same", "about as bad as the raw features", None, "ten"):
        with pytest.raises(NotYet):
            ch01.check_scaled_only_prediction(wrong)


def test_the_standardized_rate_diverges_on_raw_features():
    X, y = inorm.problem(True)
    assert inorm.steps_to_converge(X, y, ch01.SHARED_LR, max_steps=200) is not None  # "0.5 converges" there
    assert ch01.shared_rate_prediction() == "diverges"
    ch01.check_shared_rate_prediction("diverges")
    for wrong in ("converges", "stalls", None):
        with pytest.raises(NotYet):
            ch01.check_shared_rate_prediction(wrong)
