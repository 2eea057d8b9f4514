"""Notebook 01's claims, checked against bnlib.course.ch01.input_normalization: standardization, the Hessian, the
stability limit 2 / lambda_max, the condition numbers and the steps to converge; and its learning-rate explorer."""

import numpy as np
import pytest
from explorer_checks import assert_control_changes_readout_and_plot

from bnlib.course.ch01 import input_normalization as inorm
from bnlib.course.ch01.explorers import learning_rate_explorer


@pytest.fixture(scope="module", params=[False, True], ids=["raw", "standardized"])
def problem(request):
    return inorm.problem(request.param)


def test_standardize_gives_zero_mean_unit_std_per_column():
    X, _ = inorm.two_scale_data()
    Z, mean, std = inorm.standardize(X)
    np.testing.assert_allclose(Z.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(Z.std(axis=0), 1, rtol=1e-12)
    np.testing.assert_allclose(Z * std + mean, X, rtol=1e-12)
    for j, (low, high) in enumerate(inorm.FEATURE_RANGES):
        assert low <= X[:, j].min() and X[:, j].max() <= high


def test_standardize_rejects_bad_input():
    with pytest.raises(ValueError, match="2-D"):
        inorm.standardize(np.arange(5.0))
    with pytest.raises(ValueError, match="constant"):
        inorm.standardize(np.column_stack([np.arange(5.0), np.ones(5)]))


def test_gradient_and_hessian_match_finite_differences(problem):
    X, y = problem
    w, h = inorm.start(X, y), 1e-6 * np.abs(inorm.start(X, y)).max()
    step = np.eye(2) * h
    numeric_gradient = [(inorm.loss(w + e, X, y) - inorm.loss(w - e, X, y)) / (2 * h) for e in step]
    np.testing.assert_allclose(inorm.gradient(w, X, y), numeric_gradient, rtol=1e-5)
    numeric_hessian = [(inorm.gradient(w + e, X, y) - inorm.gradient(w - e, X, y)) / (2 * h) for e in step]
    np.testing.assert_allclose(inorm.hessian(X), numeric_hessian, rtol=1e-5)


def test_max_stable_lr_is_two_over_the_largest_eigenvalue(problem):
    X, y = problem
    assert inorm.max_stable_lr(X) == pytest.approx(2 / np.linalg.eigvalsh(X.T @ X / len(X)).max(), rel=1e-12)


def test_gradient_descent_converges_just_below_the_limit_and_diverges_just_above(problem):
    X, y = problem
    lr_max, best = inorm.max_stable_lr(X), inorm.loss(inorm.optimum(X, y), X, y)
    _, below, diverged_below = inorm.gradient_descent(X, y, 0.99 * lr_max, 2000)
    _, above, diverged_above = inorm.gradient_descent(X, y, 1.01 * lr_max, 2000)
    assert not diverged_below and below[-1] - best < 1e-3 * (below[0] - best)
    assert diverged_above and above[-1] - best > 1e6 * (above[0] - best)


def test_condition_numbers_ravine_bowl_and_scaling_without_centering():
    X, _ = inorm.two_scale_data()
    raw, standardized = inorm.condition_number(X), inorm.condition_number(inorm.standardize(X)[0])
    assert 1e8 < raw < 1e10  # "about a billion"
    assert standardized < 1.2  # "about 1.1"
    raw_limit, standardized_limit = inorm.max_stable_lr(X), inorm.max_stable_lr(inorm.standardize(X)[0])
    assert 4e-10 < raw_limit < 8e-10 and 1.8 < standardized_limit < 2.0  # "about 6e-10" and "about 1.9"
    assert 2e9 < standardized_limit / raw_limit < 5e9  # "a factor of three billion"


def test_raw_hessian_holds_the_mean_squares_of_the_columns():
    H = inorm.hessian(inorm.problem(False)[0])
    assert 5 < H[0, 0] < 20 and 1e9 < H[1, 1] < 1e10  # "about 10" and "about 3e9"


def test_standardized_converges_in_a_few_steps_and_raw_needs_billions():
    raw, standardized = inorm.summary(False), inorm.summary(True)
    assert standardized["measured_steps"] is not None and standardized["measured_steps"] <= 5
    assert standardized["measured_steps"] == standardized["predicted_steps"]
    assert raw["measured_steps"] is None  # not within 10,000 steps
    assert raw["predicted_steps"] > 1e9
    assert raw["predicted_steps"] / standardized["measured_steps"] > 1e8


@pytest.mark.parametrize("scale_only", [False, True], ids=["standardized", "scaled-only"])
@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.9])
def test_closed_form_step_count_equals_simulated_count(scale_only, fraction):
    X, y = inorm.problem(True)
    if scale_only:
        raw, y = inorm.two_scale_data()
        X = raw / raw.std(axis=0)
    lr = fraction * inorm.max_stable_lr(X)
    assert inorm.predicted_steps_to_converge(X, y, lr) == inorm.steps_to_converge(X, y, lr)


def test_closed_form_gap_follows_simulation_on_raw_features():
    X, y = inorm.problem(False)
    lr = 0.9 * inorm.max_stable_lr(X)
    _, losses, _ = inorm.gradient_descent(X, y, lr, 50)
    gaps = losses - inorm.loss(inorm.optimum(X, y), X, y)
    np.testing.assert_allclose(inorm.gap_after(X, y, lr, np.arange(51)), gaps, rtol=1e-5, atol=1e-9 * gaps[0])


def test_ravine_vs_bowl_data_is_what_is_plotted():
    figure, data = inorm.ravine_vs_bowl()
    axes = figure.axes
    for ax, key in zip(axes[:2], ("raw", "standardized")):
        line = [line for line in ax.get_lines() if line.get_label() == "gradient descent"][0]
        np.testing.assert_array_equal(np.column_stack(line.get_data()), data[key]["weights"])
        X, y = inorm.problem(key == "standardized")
        np.testing.assert_allclose(data[key]["loss_gap"],
                                   inorm.loss(data[key]["weights"], X, y) - inorm.loss(inorm.optimum(X, y), X, y),
                                   rtol=1e-9, atol=1e-12 * data[key]["loss_gap"][0])
        assert data[key]["lr"] == pytest.approx(inorm.max_stable_lr(X) / 2)
    assert data["standardized"]["loss_gap"][5] < 1e-6 * data["standardized"]["loss_gap"][0]
    assert data["raw"]["loss_gap"][-1] > 0.5 * data["raw"]["loss_gap"][1]  # stuck on the ravine floor


def test_raw_descent_drops_to_the_ravine_floor_then_crawls():
    X, y = inorm.problem(False)
    weights, losses, _ = inorm.gradient_descent(X, y, 1 / inorm.eigenvalues(X)[-1], 50)
    gaps = losses - inorm.loss(inorm.optimum(X, y), X, y)
    assert gaps[1] < 1e-8 * gaps[0]  # the first step lands on the floor
    assert abs(weights[-1, 0] - weights[0, 0]) < 1e-3  # and w1 hardly moves along it


def test_explorer_suggestions_slow_fast_zigzag_divergence():
    X, y = inorm.problem(True)
    slow, fast = inorm.steps_to_converge(X, y, 0.1), inorm.steps_to_converge(X, y, 1.0)
    assert fast < slow
    weights, _, diverged = inorm.gradient_descent(X, y, 1.8, 200)
    top = np.linalg.eigh(inorm.hessian(X))[1][:, -1]
    along_top = (weights - inorm.optimum(X, y)) @ top
    assert not diverged and np.all(np.sign(along_top[:10]) != np.sign(along_top[1:11]))  # zig-zag
    assert inorm.gradient_descent(X, y, 2.0, 200)[2]  # 2.0 is above 2/lambda_max


def test_raw_features_zigzag_across_the_ravine_without_progress_along_it():
    X, y = inorm.problem(False)
    weights, _, diverged = inorm.gradient_descent(X, y, 5e-10, 200)
    error = weights - inorm.optimum(X, y)
    assert not diverged and np.all(np.sign(error[:10, 1]) != np.sign(error[1:11, 1]))
    assert abs(weights[-1, 0] - weights[0, 0]) < 1e-3


def test_stable_learning_rate_figure_shows_the_cliff_at_one():
    _, data = inorm.stable_learning_rate()
    ratios = data["lr_over_max"]
    for key in ("raw", "standardized"):
        gaps = data[key]["gap_ratio"]
        assert np.all(gaps[ratios < 0.99] < 1) and np.all(gaps[ratios > 1.01] > 1)


@pytest.mark.parametrize("normalize", [False, True])
def test_explorer_updates_at_its_extremes(normalize):
    explorer = learning_rate_explorer()
    slider = explorer.controls["lr"]
    explorer.controls["normalize"].value = normalize
    slider.value = 10.0 ** slider.max
    assert explorer.error is None, explorer.text
    assert "diverged" in explorer.text
    slider.value = 10.0 ** slider.min
    assert explorer.error is None, explorer.text
    assert "not converged" in explorer.text


def test_explorer_readout_reports_the_measured_steps():
    explorer = learning_rate_explorer()
    X, y = inorm.problem(True)
    lr = 1 / inorm.eigenvalues(X)[-1]
    explorer.controls["lr"].value = lr
    lr = explorer.controls["lr"].value  # the slider rounds to its step
    assert f"converged in {inorm.steps_to_converge(X, y, lr)} steps" in explorer.text


@pytest.mark.parametrize("name, value", [("lr", 0.01), ("normalize", False)])
def test_every_control_changes_the_readout_and_the_plot(name, value):
    explorer = learning_rate_explorer()
    assert_control_changes_readout_and_plot(explorer, name, value)
    assert inorm.NAMES[explorer.controls["normalize"].value] in explorer.text
