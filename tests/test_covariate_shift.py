"""Notebook 02's claims, checked against bnlib.course.ch02.covariate_shift: the drift of a hidden layer's inputs during
a short MNIST run, and the bias that runs away when the mean is taken outside the gradient."""

import numpy as np
import pytest
import torch

from bnlib.course import drift
from bnlib.course.exercises import ch02 as exercises
from bnlib.course.ch02 import covariate_shift as shift
from bnlib.course.data import load_mnist
from bnlib.course.models import paper_mlp

pytestmark = pytest.mark.slow  # computes experiments on real MNIST (cached afterwards)


@pytest.fixture(scope="module")
def run():
    return shift.drift_run(progress=False)


@pytest.fixture(scope="module")
def detached():
    return shift.train_bias(mean_in_gradient=False)


@pytest.fixture(scope="module")
def attached():
    return shift.train_bias(mean_in_gradient=True)


def test_detached_mean_bias_grows_linearly_by_lr_times_mean_target(detached):
    _, target = shift.bias_problem()
    steps = np.diff(detached["bias"])
    assert np.all(steps > 0)
    np.testing.assert_allclose(steps, 0.1 * target.mean().item(), rtol=1e-12)
    np.testing.assert_allclose(detached["gradient"], -target.mean().item(), rtol=1e-12)
    assert detached["bias"][-1] > 10


def test_detached_mean_bias_changes_neither_output_nor_loss(detached):
    x_hat = detached["x_hat"]
    assert np.abs(x_hat - x_hat[0]).max() < 1e-13 * np.abs(x_hat).max() * len(x_hat)
    assert np.ptp(detached["loss"]) < 1e-13 * detached["loss"][0]


def test_attached_mean_gives_the_bias_zero_gradient(attached, detached):
    assert np.abs(attached["gradient"]).max() < 1e-15  # zero up to float64 rounding
    assert np.abs(attached["bias"]).max() < 1e-14
    np.testing.assert_allclose(attached["loss"], detached["loss"], rtol=1e-13)


def test_attached_gradient_matches_finite_differences():
    u, target = shift.bias_problem()
    loss = lambda b, attached: (0.5 * ((shift.centered(u + b, attached) - target) ** 2).mean()).item()  # noqa: E731
    h = 1e-3
    numeric = (loss(h, True) - loss(-h, True)) / (2 * h)
    assert abs(numeric) < 1e-12  # the true derivative: b cancels out of x_hat
    assert shift.train_bias(False, steps=0)["gradient"][0] == pytest.approx(-target.mean().item(), rel=1e-12)


def test_bias_blowup_figure_plots_its_data():
    figure, data = shift.bias_blowup()
    bias_ax, loss_ax = figure.axes
    for line, (name, run) in zip(bias_ax.get_lines(), data.items()):
        assert line.get_label() == name
        np.testing.assert_array_equal(line.get_ydata(), run["bias"])
    for line, run in zip(loss_ax.get_lines(), data.values()):
        np.testing.assert_array_equal(line.get_ydata(), run["loss"])


def test_sigmoid_inputs_are_the_last_hidden_layer():
    images = load_mnist(train=False)[0][:50]
    torch.manual_seed(0)
    model = paper_mlp()
    with torch.no_grad():
        x, u = shift.sigmoid_inputs(model, images)
        np.testing.assert_allclose(torch.sigmoid(x).numpy(), model[:shift.LAST_HIDDEN + 2](images).numpy(), rtol=1e-6)
        np.testing.assert_allclose(u.numpy(), model[:shift.LAST_HIDDEN](images).numpy(), rtol=1e-6)
    assert x.shape == u.shape == (50, 100)


def test_recorded_percentiles_match_the_snapshots(run):
    for snapshot_index, step in enumerate(run["snapshot_steps"]):
        row = int(np.searchsorted(run["steps"], step))
        for key in ("u", "x"):
            expected = np.percentile(run[f"{key}_snapshots"][snapshot_index], drift.PERCENTILES, axis=0)
            np.testing.assert_allclose(run[f"{key}_percentiles"][row], expected, rtol=1e-6)


def test_the_network_learns_while_its_hidden_inputs_drift(run):
    summary = shift.drift_summary(run)
    assert 0.25 < summary["accuracy_from"] < 0.45 and 0.85 < summary["accuracy_to"] < 0.95  # "a third", "about 90%"
    assert summary["u"]["median_drift"] > 0.5  # "drift by well over half their spread"
    assert summary["u"]["share_over_half_a_band"] > 0.5  # "for most units the median moved by over half a band"
    assert summary["x"]["median_drift"] < 0.25  # "their medians hardly move"
    assert summary["x"]["median_band_growth"] > 4 / 3  # "but their spread widens by more than a third"
    unit = summary["u"]["typical_unit"]
    drifts = drift.unit_drifts(run["u_percentiles"], run["steps"], shift.DRIFT_FROM)
    assert drifts[unit] == pytest.approx(np.median(drifts), abs=0.05)


def test_drift_is_the_median_move_over_the_mean_band_width(run):
    percentiles = run["u_percentiles"]
    start = list(run["steps"]).index(shift.DRIFT_FROM)
    unit = 0
    band = np.mean(percentiles[start:, 2, unit] - percentiles[start:, 0, unit])
    moved = abs(percentiles[-1, 1, unit] - percentiles[start, 1, unit])
    assert drift.unit_drifts(percentiles, run["steps"], shift.DRIFT_FROM)[unit] == pytest.approx(moved / band)


def test_hidden_input_drift_figure_plots_its_data(run):
    figure, data = shift.hidden_input_drift()
    for ax, key in zip(figure.axes[:2], ("u", "x")):
        median = [line for line in ax.get_lines() if line.get_label().startswith("median")][0]
        np.testing.assert_array_equal(median.get_ydata(), data[key]["percentiles"][50])
        np.testing.assert_array_equal(data[key]["percentiles"][50], run[f"{key}_percentiles"][:, 1, data[key]["unit"]])
    counts = data["histogram"]["counts"]
    assert np.all(counts.sum(axis=1) == run["u_snapshots"].shape[1])


def test_drift_run_rejects_unknown_settings():
    with pytest.raises(TypeError, match="unknown setting"):
        shift.drift_run(step=10)
    with pytest.raises(ValueError, match="multiple of record_every"):
        shift.drift_run(steps=10, record_every=3)


def test_exercise_checks_accept_the_solution_and_reject_mistakes(run):
    _, target = shift.bias_problem()
    steps, lr = exercises.BIAS_STEPS, exercises.BIAS_LR
    assert exercises.check_bias_after_steps(steps * lr * target.mean().item())
    assert not exercises.check_bias_after_steps(-steps * lr * target.mean().item())
    assert not exercises.check_bias_after_steps(None)
    assert exercises.check_center_inside_gradient(lambda x: x - x.mean())
    assert not exercises.check_center_inside_gradient(lambda x: x - x.mean().detach())
    assert not exercises.check_center_inside_gradient(lambda x: x - x.mean().item())
    assert not exercises.check_center_inside_gradient(lambda x: x)
    assert not exercises.check_center_inside_gradient(lambda x: None)
    assert not exercises.check_center_inside_gradient(lambda x: x.numpy() - x.detach().numpy().mean())
    assert not exercises.check_center_inside_gradient(None)
    unit = shift.drift_summary(run)["u"]["typical_unit"]
    percentiles = run["u_percentiles"][:, :, unit]
    start = list(run["steps"]).index(shift.DRIFT_FROM)
    band = np.mean(percentiles[start:, 2] - percentiles[start:, 0])
    assert exercises.check_median_shift(abs(percentiles[-1, 1] - percentiles[start, 1]) / band)
    assert not exercises.check_median_shift(abs(percentiles[-1, 1] - percentiles[0, 1]) / band)
    assert not exercises.check_median_shift(None)
