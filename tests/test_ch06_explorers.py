"""The MNIST chapter's momentum and batch-size explorers: extremes do not break them; they show what they claim."""

import io

import numpy as np
import pytest
import torch
from explorer_checks import assert_control_changes_readout_and_plot
from PIL import Image

from bnlib.course.ch06 import explorers, fast_trainer, paper, population
from bnlib.course.ch06.explorers import LAYER
from bnlib.course.explorer import CSS_DPI, MAX_HEIGHT, MAX_WIDTH, PIXEL_RATIO
from bnlib.running_stats import unbiased_variance

pytestmark = pytest.mark.slow  # computes experiments on real MNIST (cached afterwards)


@pytest.fixture(scope="module")
def momentum():
    return explorers.momentum_explorer()


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
    assert figure.axes[2].get_title() == f"momentum {value:.3g}" and text.startswith("step 2,500: running means off by")


@pytest.mark.parametrize("name, value", [("momentum", 0.02), ("unit", 5)])
def test_every_momentum_control_changes_the_readout_and_the_plot(momentum, name, value):
    momentum.controls["momentum"].value = 0.1
    momentum.controls["unit"].value = 0
    assert_control_changes_readout_and_plot(momentum, name, value)


@pytest.mark.parametrize("name, value", [("momentum", 0.02), ("unit", 5)])
def test_the_readouts_headline_changes_with_every_control(momentum, name, value):
    """The headline (the bold part, up to the first "; ") leads with what the control changed."""
    momentum.controls["momentum"].value = 0.1
    momentum.controls["unit"].value = 0
    headline = momentum.text.partition("; ")[0]
    momentum.controls[name].value = value
    assert momentum.text.partition("; ")[0] != headline, momentum.text


def test_moving_the_momentum_keeps_the_axes_and_draws_the_whole_figure(momentum):
    """Only the curves are redrawn when the momentum moves (over a cached background): the axes must stay
    put, and the picture must be the figure's full drawing, but for the pixels where a curve starts or
    ends on a spine (drawn over it instead of under it)."""
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
        rows, columns = np.nonzero((shown != full).any(axis=2))
        vertical = np.array([x for ax in figure.axes for x in (ax.bbox.x0, ax.bbox.x1)])
        horizontal = np.array([len(shown) - y for ax in figure.axes for y in (ax.bbox.y0, ax.bbox.y1)])
        near = np.minimum(np.abs(columns[:, np.newaxis] - vertical).min(axis=1),
                          np.abs(rows[:, np.newaxis] - horizontal).min(axis=1))
        assert np.all(near <= 3), f"{np.sum(near > 3)} pixels differ away from the spines"  # 0.8 pt = 2.2 px
        assert Image.open(io.BytesIO(momentum.image.value)).size == (shown.shape[1], shown.shape[0])


def test_momentum_explorer_fits_the_screen(momentum):
    width, height = Image.open(io.BytesIO(momentum.image.value)).size
    assert width <= PIXEL_RATIO * MAX_WIDTH * CSS_DPI and height <= PIXEL_RATIO * MAX_HEIGHT * CSS_DPI


def test_momentum_readout_names_the_unit_and_its_final_statistics(momentum):
    momentum.controls["momentum"].value = 1.0  # the running values are then the last batch's
    momentum.controls["unit"].value = 7
    replay, text = momentum.replay, momentum.text
    last_var = unbiased_variance(replay.batch_var[-1, LAYER, 7], replay.batch_size)
    assert f"unit 7 at the end: running mean {replay.batch_mean[-1, LAYER, 7]:.3g}, variance {last_var:.3g}" in text
    assert (f"Algorithm 2 {replay.population_mean[-1, LAYER, 7]:.3g}, "
            f"{replay.population_var[-1, LAYER, 7]:.3g}") in text


def test_population_statistics_are_algorithm_2_on_the_frozen_network(momentum):
    """At a checkpoint, the explorer's population statistics are those of the paper's Algorithm 2: the
    network with that checkpoint's weights, run over the training set in batches of 60 with every BN layer
    normalizing with its batch's statistics, and the batch means and m/(m-1) batch variances of each BN
    input averaged. Computed here independently, from the BN inputs seen through forward hooks."""
    replay, result = momentum.replay, paper.run_paper_experiment()
    at = 1  # step 2,500
    model = fast_trainer.to_torch_model(torch.as_tensor(result["bn_parameters"][replay.picked[at]]), batch_norm=True)
    linears = [module for module in model if isinstance(module, torch.nn.Linear)][:3]
    seen = [[] for _ in linears]
    for layer, linear in enumerate(linears):
        linear.register_forward_hook(lambda module, inputs, output, layer=layer: seen[layer].append(output.double()))
    model.train()
    with torch.no_grad():
        for batch in population.training_batches(60):
            model(batch)
    for layer in range(3):
        inputs = torch.stack(seen[layer])  # (batches, 60, 100): the BN inputs u W
        mean, var = inputs.mean(1).mean(0), inputs.var(1, unbiased=True).mean(0)
        np.testing.assert_allclose(replay.population_mean[at, layer], mean.numpy(), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(replay.population_var[at, layer], var.numpy(), rtol=1e-4, atol=1e-6)


def test_momentum_changes_inference_only(momentum):
    """Momentum 0 never updates the running statistics (0 and 1): eval mode is then far worse than with
    population statistics, while the replay with torch's 0.1 stays within a point of them."""
    replay = momentum.replay
    frozen = replay.replay(0.0, 0)[-1]
    default = replay.replay(0.1, 0)[-1]
    assert frozen[-1] < replay.population_accuracy[-1] - 0.1
    assert abs(default[-1] - replay.population_accuracy[-1]) < 0.01


def test_a_tiny_momentum_lags_early_in_training(momentum):
    """At step 2,500 the running means of momentum 0.001 still carry the start and the first batches:
    they are much further from Algorithm 2's than torch's 0.1 are, and the accuracy with them is lower."""
    replay = momentum.replay
    assert replay.steps[replay.picked[1]] == 2_500
    lagging, default = replay.replay(0.001, 0), replay.replay(0.1, 0)
    assert lagging[-1][1] < replay.population_accuracy[1] - 0.02
    assert replay.mean_error(lagging[2])[1].mean() > 3 * replay.mean_error(default[2])[1].mean()
    momentum.controls["momentum"].value = 0.001
    assert momentum.text.startswith(f"step 2,500: running means off by {replay.mean_error(lagging[2])[1].mean():.2g}")


def test_momentum_trades_lag_for_noise(momentum):
    """Over training, torch's 0.1 keeps the running means closer to Algorithm 2's than 1 (the last batch
    alone: noise) and than 0.001 (lag)."""
    replay = momentum.replay
    error = {m: replay.mean_error(replay.running(m)[0])[1:].mean() for m in (1.0, 0.1, 0.001)}
    assert error[0.1] < error[1.0] / 2 and error[0.1] < error[0.001] / 2


def test_momentum_one_follows_the_last_batch(momentum):
    replay = momentum.replay
    trace_mean = replay.replay(1.0, 7)[0]
    np.testing.assert_allclose(trace_mean[1:], replay.batch_mean[49::50, 2, 7], rtol=1e-6)


@pytest.fixture(scope="module")
def batch_size():
    return explorers.batch_size_explorer()


@pytest.mark.parametrize("size", [2, 256])
def test_batch_size_explorer_at_the_extremes(batch_size, size):
    assert_control_changes_readout_and_plot(batch_size, "batch_size", size)
    assert f"batch size {size}" in batch_size.text


def test_batch_size_readout_leads_with_bn_lead(batch_size):
    batch_size.controls["batch_size"].value = 60
    final = paper.findings(paper.run_paper_experiment(paper.SHORT_RUN.replace(batch_size=60), progress=False))["final_accuracy"]
    assert batch_size.text.startswith(f"BN leads by {100 * (final['batch norm'] - final['baseline']):.1f} points")


def test_batch_size_not_cached_is_announced_before_training(batch_size, monkeypatch):
    """A run not in the cache: the readout says what is training while it trains; then the result shows.
    (Whether a run is cached is faked here, so that no other run has to train.)"""
    run = paper.run_paper_experiment
    assert run.is_cached(paper.SHORT_RUN.replace(batch_size=60))
    assert not run.is_cached(paper.SHORT_RUN.replace(batch_size=60, seed=123_456))
    said = []
    batch_size.readout.observe(lambda change: said.append(change["new"]), names="value")
    monkeypatch.setattr(run, "is_cached", lambda config: False)
    batch_size.controls["batch_size"].value = 2 if batch_size.controls["batch_size"].value != 2 else 60
    size = batch_size.controls["batch_size"].value
    assert f"training both networks at batch size {size} for 3,000 steps" in said[0]
    assert batch_size.text.startswith("BN leads by") and f"batch size {size}" in batch_size.text


@pytest.mark.parametrize("size", [2, 60, 256])
def test_batch_size_explorer_shows_every_accuracy_point(batch_size, size):
    figure, _ = batch_size.draw(batch_size=size)
    low, high = figure.axes[0].get_ylim()
    for line in figure.axes[0].get_lines():
        assert low <= line.get_ydata().min() and line.get_ydata().max() <= high


def test_small_batches_hurt_batch_norm():
    """At batch size 2 the batch statistics are mostly noise: BN's lead shrinks to under half, its bands drift more."""
    tiny = paper.findings(paper.run_paper_experiment(paper.SHORT_RUN.replace(batch_size=2), progress=False))
    usual = paper.findings(paper.run_paper_experiment(paper.SHORT_RUN.replace(batch_size=60), progress=False))
    print("batch 2:", tiny["final_accuracy"], "batch 60:", usual["final_accuracy"])
    lead = {name: facts["final_accuracy"]["batch norm"] - facts["final_accuracy"]["baseline"]
            for name, facts in (("tiny", tiny), ("usual", usual))}
    assert lead["tiny"] < 0.5 * lead["usual"]
    assert tiny["drift"]["batch norm"] > usual["drift"]["batch norm"]
