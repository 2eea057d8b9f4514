"""The exercise checks of notebook 01 accept the solutions and reject blanks and typical mistakes with a hint."""

import numpy as np
import pytest
import torch
from exercise_checks import refused, stub

from bnlib.course.ch01 import input_normalization as inorm
from bnlib.course.ch01 import exercises as ch01
from bnlib.course.checks import NotYet


def split_solution(X_train, X_test):
    Z_train, mean, std = inorm.standardize(X_train)
    return Z_train, (X_test - mean) / std


def split_by_columns(X_train, X_test):
    Z_train, Z_test = np.empty_like(X_train), np.empty_like(X_test)
    for j in range(X_train.shape[1]):
        mean, std = X_train[:, j].mean(), np.sqrt(((X_train[:, j] - X_train[:, j].mean()) ** 2).mean())
        Z_train[:, j], Z_test[:, j] = (X_train[:, j] - mean) / std, (X_test[:, j] - mean) / std
    return [Z_train, Z_test]


def split_in_torch(X_train, X_test):
    a, b = torch.from_numpy(X_train), torch.from_numpy(X_test)
    mean, std = a.mean(0), a.std(0, unbiased=False)
    return (a - mean) / std, (b - mean) / std


def split_in_place_on_copies(X_train, X_test):
    mean, std = X_train.mean(axis=0, keepdims=True), X_train.std(axis=0, keepdims=True)
    Z_train, Z_test = X_train.copy(), X_test.copy()
    Z_train -= mean
    Z_train /= std
    Z_test -= mean
    Z_test /= std
    return Z_train, Z_test


@pytest.mark.parametrize("answer", [split_solution, split_by_columns, split_in_torch, split_in_place_on_copies,
                                    lambda a, b: tuple((z - a.mean(0)) * (1 / a.std(0)) for z in (a, b))])
def test_standardize_split_accepts_every_correct_form(answer, capsys):
    assert ch01.check_standardize_split(answer) is None
    assert capsys.readouterr().out.startswith("Correct.")


def both(a, b, mean, std):
    return (a - mean) / std, (b - mean) / std


def pooled(a, b):
    X = np.concatenate([a, b])
    return both(a, b, X.mean(0), X.std(0))


def edits_its_input(a, b):
    mean, std = a.mean(0), a.std(0)
    a -= mean
    a /= std
    return a, (b - mean) / std


@pytest.mark.parametrize("wrong, hint", [
    (lambda a, b: (inorm.standardize(a)[0], inorm.standardize(b)[0]), "its own statistics"),
    (lambda a, b: both(a, b, a.mean(0), a.std(0, ddof=1)), "ddof=1"),
    (lambda a, b: both(a, b, a.mean(), a.std()), "per column"),
    (lambda a, b: tuple((z - z.mean(1, keepdims=True)) / z.std(1, keepdims=True) for z in (a, b)), "per row"),
    (pooled, "both splits together"),
    (lambda a, b: (inorm.standardize(a)[0], b / a.std(0)), "not centered"),
    (lambda a, b: both(a, b, a.mean(0), 1.0), "not scaled"),
    (lambda a, b: (inorm.standardize(a)[0], (b - a.mean(0)) / b.std(0)), "std is the test split's own"),
    (lambda a, b: (inorm.standardize(a)[0], (b - b.mean(0)) / a.std(0)), "mean is the test split's own"),
    (lambda a, b: tuple(z.astype(np.float32) for z in split_solution(a, b)), "float32"),
    (lambda a, b: tuple(torch.from_numpy(z).float() for z in split_solution(a, b)), "float32"),
])
def test_standardize_split_names_the_mistake(wrong, hint):
    refused(ch01.check_standardize_split, wrong, hint)


@pytest.mark.parametrize("hostile, hint", [
    (None, "Fill in"),
    (stub, "not written yet"),
    (np.zeros(3), "Pass your function itself"),
    (lambda a, b: None, "returned None"),
    (lambda a, b: (a, b), "not the split standardized"),
    (lambda a, b: (np.zeros_like(a), np.zeros_like(b)), "not the split standardized"),
    (lambda a, b: (a * np.nan, b), "NaN"),
    (lambda a, b: 1 / 0, "ZeroDivisionError"),
    (lambda a, b: inorm.standardize(a)[0], "pair"),
    (lambda a, b: (a.T, b), "shape"),
    (lambda a, b: (inorm.standardize(a)[0], "Z_test"), "return numbers"),
    (edits_its_input, "changed its argument 1 (ndarray) in place"),
    (lambda a, b: (a.__imul__(0), b.__imul__(0)), "in place"),
])
def test_standardize_split_refuses_hostile_answers(hostile, hint):
    refused(ch01.check_standardize_split, hostile, hint)


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


def bisection_in_log_space(X, y, steps=200):
    stable = lambda lr: np.diff(inorm.gradient_descent(X, y, lr, steps)[1][[0, -1]])[0] < 0  # noqa: E731
    low, high = 1e-15, 1.0
    while stable(high):
        high *= 2
    while high / low > 1.005:
        middle = np.sqrt(low * high)
        low, high = (middle, high) if stable(middle) else (low, middle)
    return np.array([high])


def halving_search(X, y):
    """Halve from 1 until stable, then grow by 0.5% steps while stable: a scan instead of a bisection."""
    def stable(lr):
        losses = inorm.gradient_descent(X, y, lr, 200)[1]
        return losses[-1] < losses[0]

    lr = 1.0
    while not stable(lr):
        lr /= 2
    while stable(lr * 1.005):
        lr *= 1.005
    return torch.tensor(lr)


@pytest.mark.parametrize("answer", [bisection, bisection_in_log_space, halving_search])
def test_measured_limit_accepts_every_correct_form(answer, capsys):
    assert ch01.check_measured_limit(answer) is None
    assert capsys.readouterr().out.startswith("Correct.")


def coarse(stable, precision):
    low, high = 0.0, 1.0
    while stable(high):
        high *= 2
    while high - low > precision * high:
        middle = (low + high) / 2
        low, high = (middle, high) if stable(middle) else (low, middle)
    return low


@pytest.mark.parametrize("wrong, hint", [
    (lambda X, y: inorm.max_stable_lr(X), "the formula"),
    (lambda X, y: 1 / inorm.eigenvalues(X)[-1], "half the limit"),
    (lambda X, y: coarse(lambda lr: not inorm.gradient_descent(X, y, lr, 200)[2], 0.001), "diverged"),
    (lambda X, y: coarse(lambda lr: np.diff(inorm.gradient_descent(X, y, lr, 200)[1][[0, -1]])[0] < 0, 0.2),
     "under 1%"),
    (lambda X, y: 0.9 * inorm.max_stable_lr(X), "Bisect"),
    (lambda X, y: 0.97 * inorm.max_stable_lr(X), "Bisect"),
])
def test_measured_limit_names_the_mistake(wrong, hint):
    refused(ch01.check_measured_limit, wrong, hint)


@pytest.mark.parametrize("hostile, hint", [
    (None, "Fill in"),
    (stub, "not written yet"),
    (lambda X, y: None, "returned None"),
    (lambda X, y: float("nan"), "NaN"),
    (lambda X, y: X, "one learning rate"),
    (lambda X, y: np.ones(2), "one learning rate"),
    (lambda X, y: 1.0, "Bisect"),
    (lambda X, y: -inorm.max_stable_lr(X), "Bisect"),
    (lambda X, y: inorm.gradient_descent(X, y, 0.0, 200), "ValueError"),
    (lambda X, y: X.fill(1.0) or 1.0, "in place"),
    (lambda X, y: "2 / lambda_max", "return numbers"),
])
def test_measured_limit_refuses_hostile_answers(hostile, hint):
    refused(ch01.check_measured_limit, hostile, hint)


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
