"""Notebook 02's claims, checked against bnlib.course.ch02: the recording step, the drift of the hidden layers'
inputs during a short MNIST run, the drift explorer, and the bias that runs away when the mean is taken outside
the gradient."""


import numpy as np
import pytest
import torch
from explorer_checks import assert_control_changes_readout_and_plot

from bnlib.course import drift
from bnlib.course.ch02 import covariate_shift as shift
from bnlib.course.ch02 import recording
from bnlib.course.data import load_mnist
from bnlib.course.models import paper_mlp
from bnlib.course.ch02.explorers import drift_explorer
from bnlib.course.ch02.explorers import quantile_density, unit_readout

pytestmark = pytest.mark.slow  # computes experiments on real MNIST (cached afterwards)


@pytest.fixture(scope="module")
def run():
    return recording.drift_run(progress=False)


@pytest.fixture(scope="module")
def summary(run):
    return shift.drift_summary(run)


@pytest.fixture(scope="module")
def detached():
    return shift.train_bias(mean_in_gradient=False)


@pytest.fixture(scope="module")
def attached():
    return shift.train_bias(mean_in_gradient=True)


def test_detached_mean_bias_grows_linearly_by_lr_times_mean_target(detached):
    _, target = shift.bias_problem()
    steps = np.diff(detached["bias"])
    np.testing.assert_allclose(steps, 0.1 * target.mean().item(), rtol=1e-12)
    np.testing.assert_allclose(detached["gradient"], -target.mean().item(), rtol=1e-12)  # dl/db = mean(x_hat - t)
    assert detached["bias"][-1] > 10


def test_detached_mean_bias_changes_neither_output_nor_loss(detached):
    x_hat = detached["x_hat"]
    assert x_hat.shape == (101, 64)
    assert np.abs(x_hat - x_hat[0]).max() < 1e-13 * np.abs(x_hat).max() * len(x_hat)
    assert np.ptp(detached["loss"]) < 1e-13 * detached["loss"][0]


def test_attached_mean_gives_the_bias_zero_gradient(attached, detached):
    assert np.abs(attached["gradient"]).max() < 1e-15  # zero up to float64 rounding
    assert np.abs(attached["bias"]).max() < 1e-14
    np.testing.assert_allclose(attached["loss"], detached["loss"], rtol=1e-13)


def test_bias_gradient_is_the_plain_sum_of_the_x_hat_gradients():
    """The prose's formula: dl/db = sum_i dl/dx_hat_i = 1/N sum_i (x_hat_i - t_i), for the batch-mean loss."""
    u, target = shift.bias_problem()
    b = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    x_hat = shift.centered(u + b, mean_in_gradient=False)
    x_hat.retain_grad()
    (0.5 * ((x_hat - target) ** 2).mean()).backward()
    assert b.grad.item() == pytest.approx(x_hat.grad.sum().item(), rel=1e-12)
    assert b.grad.item() == pytest.approx(((x_hat - target) / len(u)).sum().item(), rel=1e-12)


def test_attached_gradient_matches_finite_differences():
    u, target = shift.bias_problem()
    loss = lambda b, attached: (0.5 * ((shift.centered(u + b, attached) - target) ** 2).mean()).item()  # noqa: E731
    h = 1e-3
    assert abs((loss(h, True) - loss(-h, True)) / (2 * h)) < 1e-12  # the true derivative: b cancels out of x_hat
    assert abs((loss(h, False) - loss(-h, False)) / (2 * h)) < 1e-12  # and the loss truly does not move


def test_bias_blowup_figure_plots_its_data():
    figure, data = shift.bias_blowup()
    bias_ax, loss_ax = figure.axes
    for line, (name, run) in zip(bias_ax.get_lines(), data.items()):
        assert line.get_label() == name
        np.testing.assert_array_equal(line.get_ydata(), run["bias"])
    for line, run in zip(loss_ax.get_lines(), data.values()):
        np.testing.assert_array_equal(line.get_ydata(), run["loss"])


def test_hidden_inputs_are_the_sigmoid_inputs_of_each_hidden_layer():
    images = load_mnist(train=False)[0][:50]
    torch.manual_seed(0)
    model = paper_mlp()
    with torch.no_grad():
        xs, us = recording.hidden_inputs(model, images)
        for k, (x, u) in enumerate(zip(xs, us)):
            np.testing.assert_allclose(torch.sigmoid(x).numpy(), model[:2 * k + 2](images).numpy(), rtol=1e-6)
            np.testing.assert_allclose(u.numpy(), model[:2 * k](images).numpy() if k else images.numpy(), rtol=1e-6)
    assert len(xs) == 3 and xs[2].shape == (50, 100)


def test_measure_keeps_the_quantiles_of_every_hidden_layer():
    images = load_mnist(train=False)[0][:40]
    model = paper_mlp()
    x_quantiles, u_quantiles = recording.measure(model, images)
    assert x_quantiles.shape == (3, len(recording.LEVELS), 100) and u_quantiles.shape == (len(recording.LEVELS), 100)
    with torch.no_grad():
        xs, us = recording.hidden_inputs(model, images)
    np.testing.assert_allclose(x_quantiles[1, 0], xs[1].numpy().min(axis=0))
    np.testing.assert_allclose(recording.drift_percentiles(u_quantiles), drift.percentiles(us[2].numpy()), rtol=1e-6)


def test_recorded_quantiles_match_the_snapshots(run):
    for snapshot, step in zip(run["u_snapshots"], run["snapshot_steps"]):
        row = int(np.searchsorted(run["steps"], step))
        np.testing.assert_allclose(run["u_quantiles"][row], np.percentile(snapshot, recording.LEVELS, axis=0),
                                   rtol=1e-5, atol=1e-6)


def test_the_network_learns_while_its_hidden_inputs_drift(summary):
    assert 0.25 < summary["accuracy_from"] < 0.45 and 0.85 < summary["accuracy_to"] < 0.95  # "a third", "about 90%"
    assert summary["u"]["median_drift"] > 0.6  # "drift by well over half their spread"
    assert summary["u"]["share_over_half_a_band"] > 0.5  # "for most units the median moved by over half a band"
    assert summary["x"]["median_drift"] < 0.25  # "their medians hardly move"
    assert summary["x"]["median_band_growth"] > 4 / 3  # "but their spread widens by more than a third"


def test_the_typical_unit_has_the_median_drift(run, summary):
    drifts = drift.unit_drifts(shift.layer3_percentiles(run)["u"], run["steps"], shift.DRIFT_FROM)
    assert drifts[summary["u"]["typical_unit"]] == pytest.approx(np.median(drifts), abs=0.05)


def test_drift_is_the_median_move_over_the_mean_band_width(run):
    percentiles = shift.layer3_percentiles(run)["u"]
    start = list(run["steps"]).index(shift.DRIFT_FROM)
    band = np.mean(percentiles[start:, 2, 0] - percentiles[start:, 0, 0])
    moved = abs(percentiles[-1, 1, 0] - percentiles[start, 1, 0])
    assert drift.unit_drifts(percentiles, run["steps"], shift.DRIFT_FROM)[0] == pytest.approx(moved / band)


def test_hidden_input_drift_figure_plots_its_data(run):
    figure, data = shift.hidden_input_drift()
    for ax, key in zip(figure.axes[:2], ("u", "x")):
        median = [line for line in ax.get_lines() if line.get_label().startswith("median")][0]
        np.testing.assert_array_equal(median.get_ydata(), data[key]["percentiles"][50])
        np.testing.assert_array_equal(data[key]["percentiles"][50],
                                      shift.layer3_percentiles(run)[key][:, 1, data[key]["unit"]])
    assert np.all(data["histogram"]["counts"].sum(axis=1) == run["u_snapshots"].shape[1])


def test_drift_run_rejects_unknown_and_inconsistent_settings():
    with pytest.raises(TypeError, match="step"):
        recording.DriftRun().replace(step=10)
    with pytest.raises(ValueError, match="multiple of record_every"):
        recording.DriftRun(steps=10, record_every=3)
    with pytest.raises(TypeError, match="DriftRun"):
        recording.drift_run({"steps": 10})


def test_quantile_density_puts_five_percent_in_each_bin():
    quantiles = np.percentile(np.random.default_rng(0).normal(size=200_000), recording.LEVELS)
    density, edges = quantile_density(quantiles, recording.LEVELS)
    np.testing.assert_allclose(density * np.diff(edges), 0.05)
    assert density[10] == pytest.approx(1 / np.sqrt(2 * np.pi), rel=0.1)  # the normal density near its middle


def test_explorer_readout_is_the_recorded_numbers(run):
    explorer = drift_explorer(run)
    for name, value in (("layer", 1), ("unit", 7), ("step", 2000)):
        explorer.controls[name].value = value
    numbers = unit_readout(run, 1, 7, 2000)
    row = list(run["steps"]).index(2000)
    assert numbers["median"] == pytest.approx(run["x_quantiles"][row, 0, 10, 7])
    expected = drift.unit_drifts(recording.drift_percentiles(run["x_quantiles"][:row + 1, 0]), run["steps"][:row + 1],
                                 shift.DRIFT_FROM)[7]
    assert numbers["drift"] == pytest.approx(expected)
    assert explorer.text.startswith(f"median {numbers['median']:+.2f}, band {numbers['band']:.2f} wide")
    assert f"drift since step 500: {expected:.2f} band widths" in explorer.text
    explorer.controls["step"].value = 250
    assert "drift is counted from step 500" in explorer.text and explorer.error is None


def test_explorer_starts_at_layer_3s_typical_unit(run, summary):
    explorer = drift_explorer(run)
    assert explorer.controls["unit"].value == summary["x"]["typical_unit"] and explorer.controls["layer"].value == 3


@pytest.mark.parametrize("name, value", [("step", 1000), ("layer", 1), ("unit", 3)])
def test_every_control_changes_the_readout_and_the_plot(run, name, value):
    assert_control_changes_readout_and_plot(drift_explorer(run), name, value)


@pytest.mark.parametrize("step", [0, 3000])
@pytest.mark.parametrize("layer", [1, 3])
def test_explorer_extremes_read_out_the_unit_they_show(run, step, layer):
    explorer = drift_explorer(run)
    explorer.controls["layer"].value = layer
    explorer.controls["step"].value = step
    explorer.controls["unit"].value = 99
    numbers = unit_readout(run, layer, 99, step)
    assert explorer.error is None, explorer.text
    assert explorer.text.startswith(f"median {numbers['median']:+.2f}, band {numbers['band']:.2f} wide")
    assert f"(layer {layer}, unit 99)" in explorer.text
