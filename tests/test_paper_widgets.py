"""The MNIST chapter's momentum and batch-size explorers: extremes do not break them; they show what they claim."""

import io

import numpy as np
import pytest
from explorer_checks import assert_control_changes_readout_and_plot
from PIL import Image

from bnlib.course import widgets
from bnlib.course.ch06 import paper
from bnlib.course.widgets.batch_size import SHORT_RUN
from bnlib.course.widgets.momentum import LAYER
from bnlib.running_stats import unbiased_variance

pytestmark = pytest.mark.slow  # computes experiments on real MNIST (cached afterwards)


@pytest.fixture(scope="module")
def momentum():
    return widgets.momentum_explorer()


@pytest.mark.parametrize("exponent", ["min", "max"])
def test_momentum_explorer_at_the_ends_of_the_slider(momentum, exponent):
    before = momentum.image.value
    slider = momentum.controls["momentum"]
    slider.value = 10 ** getattr(slider, exponent)
    assert momentum.error is None
    assert momentum.image.value != before
    momentum.controls["unit"].value = 99
    assert momentum.error is None


@pytest.mark.parametrize("value", [0.0, 1.0])
def test_momentum_zero_and_one_draw(momentum, value):
    figure, text = momentum.draw(momentum=value, unit=0)
    assert f"momentum {value:.3g}" in text


@pytest.mark.parametrize("name, value", [("momentum", 0.02), ("unit", 5)])
def test_every_momentum_control_changes_the_readout_and_the_plot(momentum, name, value):
    momentum.controls["momentum"].value = 0.1
    momentum.controls["unit"].value = 0
    assert_control_changes_readout_and_plot(momentum, name, value)


def test_moving_the_momentum_keeps_the_axes_and_draws_the_whole_figure(momentum):
    """Only the curves are redrawn when the momentum moves (over a cached background): the axes must stay
    put, and the picture must be the figure's full drawing, but for the pixels where a curve starts on a
    left spine (drawn over it instead of under it)."""
    momentum.controls["unit"].value = 5
    limits = None
    for value in (0.01, 0.1, 1.0):
        momentum.controls["momentum"].value = value
        figure = momentum.draw(**momentum.values())[0]
        assert limits in (None, [ax.get_ylim() for ax in figure.axes])
        limits = [ax.get_ylim() for ax in figure.axes]
        shown = np.array(figure.canvas.buffer_rgba())  # a copy: savefig draws on the same canvas
        full = io.BytesIO()
        figure.savefig(full, format="rgba", dpi=figure.dpi)
        full = np.frombuffer(full.getvalue(), np.uint8).reshape(shown.shape)
        _, columns = np.nonzero((shown != full).any(axis=2))
        left_spines = np.array([ax.bbox.x0 for ax in figure.axes])
        assert np.all(np.abs(columns[:, np.newaxis] - left_spines).min(axis=1) <= 1)
        assert Image.open(io.BytesIO(momentum.image.value)).size == (shown.shape[1], shown.shape[0])


def test_momentum_readout_names_the_unit_and_its_final_statistics(momentum):
    momentum.controls["momentum"].value = 1.0  # the running values are then the last batch's
    momentum.controls["unit"].value = 7
    replay, text = momentum.replay, momentum.readout.value
    assert "unit 7 of the last hidden layer" in text
    last_var = unbiased_variance(replay.batch_var[-1, LAYER, 7], replay.batch_size)
    assert f"running mean {replay.batch_mean[-1, LAYER, 7]:.3g}, variance {last_var:.3g}" in text
    assert (f"population mean {replay.population_mean[-1, LAYER, 7]:.3g}, "
            f"variance {replay.population_var[-1, LAYER, 7]:.3g}") in text


def test_momentum_changes_inference_only(momentum):
    """Momentum 0 never updates the running statistics (0 and 1): eval mode is then far worse than with
    population statistics, while the replay with torch's 0.1 stays within a point of them."""
    replay = momentum.replay
    _, _, frozen = replay.replay(0.0, 0)
    _, _, default = replay.replay(0.1, 0)
    assert frozen[-1] < replay.population_accuracy[-1] - 0.1
    assert abs(default[-1] - replay.population_accuracy[-1]) < 0.01


def test_a_tiny_momentum_lags_early_in_training(momentum):
    replay = momentum.replay
    _, _, lagging = replay.replay(0.001, 0)
    assert replay.steps[replay.picked[1]] == 2_500
    assert lagging[1] < replay.population_accuracy[0] - 0.02


def test_momentum_one_follows_the_last_batch(momentum):
    replay = momentum.replay
    trace_mean, _, _ = replay.replay(1.0, 7)
    np.testing.assert_allclose(trace_mean[1:], replay.batch_mean[49::50, 2, 7], rtol=1e-6)


@pytest.fixture(scope="module")
def batch_size():
    return widgets.batch_size_explorer()


@pytest.mark.parametrize("size", [2, 128, 256])
def test_batch_size_explorer_at_the_extremes(batch_size, size):
    assert_control_changes_readout_and_plot(batch_size, "batch_size", size)
    assert f"batch size {size}" in batch_size.readout.value


@pytest.mark.parametrize("size", [2, 60, 128, 256])
def test_batch_size_explorer_shows_every_accuracy_point(batch_size, size):
    figure, _ = batch_size.draw(batch_size=size)
    low, high = figure.axes[0].get_ylim()
    for line in figure.axes[0].get_lines():
        assert low <= line.get_ydata().min() and line.get_ydata().max() <= high


def test_small_batches_hurt_batch_norm():
    """At batch size 2 the batch statistics are mostly noise: BN's lead shrinks to under half, its bands drift more."""
    tiny = paper.findings(paper.run_paper_experiment(batch_size=2, progress=False, **SHORT_RUN))
    usual = paper.findings(paper.run_paper_experiment(batch_size=60, progress=False, **SHORT_RUN))
    print("batch 2:", tiny["final_accuracy"], "batch 60:", usual["final_accuracy"])
    lead = {name: facts["final_accuracy"]["batch norm"] - facts["final_accuracy"]["baseline"]
            for name, facts in (("tiny", tiny), ("usual", usual))}
    assert lead["tiny"] < 0.5 * lead["usual"]
    assert tiny["drift"]["batch norm"] > usual["drift"]["batch norm"]
