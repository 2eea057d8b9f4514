"""Notebook 03: the staged backward equals the core and torch, the forward's claims hold, the batch coupling
(its explorer and figure) shows what the prose says."""

import numpy as np
import pytest
from explorer_checks import assert_control_changes_readout_and_plot

from bnlib import batch_norm_backward, batch_norm_forward
from bnlib.course.ch03 import batch_coupling
from bnlib.course.ch03.backward import batch_norm_backward_staged, torch_reference
from bnlib.course.ch03.step_by_step import TINY_BATCH, forward_stages_figure
from bnlib.course.ch03.explorers import batch_coupling_explorer


def random_case(shape, seed=0):
    rng = np.random.default_rng(seed)
    channels = shape[1]
    scale = rng.uniform(0.1, 10, channels).reshape((1, -1) + (1,) * (len(shape) - 2))
    offset = rng.uniform(-50, 50, channels).reshape((1, -1) + (1,) * (len(shape) - 2))
    return rng.normal(size=shape) * scale + offset, rng.uniform(0.5, 2, channels), rng.normal(size=channels), \
        rng.normal(size=shape)


@pytest.mark.parametrize("shape", [(4, 3), (16, 5), (2, 1)])
def test_staged_backward_equals_the_compact_one_and_torch(shape):
    x, gamma, beta, dout = random_case(shape, seed=1)
    cache = batch_norm_forward(x, gamma, beta)[1]
    staged, compact = batch_norm_backward_staged(dout, cache), batch_norm_backward(dout, cache)
    reference = torch_reference(x, gamma, beta, dout)[1:]
    for mine, core, theirs in zip(staged, compact, reference):
        np.testing.assert_allclose(mine, core, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(mine, theirs, rtol=1e-9, atol=1e-12)


def test_a_staged_backward_that_drops_a_path_is_caught():
    x, gamma, beta, dout = random_case((8, 3), seed=2)
    cache = batch_norm_forward(x, gamma, beta)[1]
    without_centered = cache._replace(centered=np.zeros_like(cache.centered))  # no path through the variance
    assert np.abs(batch_norm_backward_staged(dout, without_centered)[0] - batch_norm_backward(dout, cache)[0]).max() > 0.1


@pytest.mark.parametrize("shape", [(4, 3), (2, 3, 4, 4)])
def test_forward_matches_torch_and_the_cache_holds_the_nodes(shape):
    x, gamma, beta, _ = random_case(shape)
    out, cache = batch_norm_forward(x, gamma, beta)
    np.testing.assert_allclose(out, torch_reference(x, gamma, beta, np.zeros_like(x))[0], rtol=0, atol=1e-12)
    axes = (0, *range(2, len(shape)))
    np.testing.assert_allclose(cache.centered, x - x.mean(axis=axes, keepdims=True), atol=1e-12)
    np.testing.assert_allclose(cache.var, x.var(axis=axes), rtol=1e-12)


def test_tiny_batch_is_normalized_per_feature_with_the_biased_variance():
    _, cache = batch_norm_forward(TINY_BATCH, np.ones(3), np.zeros(3))
    np.testing.assert_allclose(cache.var, TINY_BATCH.var(axis=0, ddof=0))
    np.testing.assert_allclose(cache.x_hat.mean(axis=0), 0, atol=1e-15)
    np.testing.assert_allclose(cache.x_hat.var(axis=0), cache.var / (cache.var + 1e-5))
    assert np.abs(cache.x_hat.var(axis=0) - 1).max() < 1e-4
    assert 150 < TINY_BATCH[:, 1].mean() < 250  # "the second one started out around 200"


def test_a_constant_feature_stays_zero():
    out, _ = batch_norm_forward(np.full((4, 1), 5.0), np.ones(1), np.zeros(1))
    assert np.all(out == 0)


def test_convolution_statistics_are_per_channel_over_n_h_w():
    x, _, _, _ = random_case((8, 3, 5, 5))
    out, cache = batch_norm_forward(x, np.ones(3), np.zeros(3))
    assert cache.mean.shape == cache.var.shape == (3,)
    np.testing.assert_allclose(cache.mean, x.mean(axis=(0, 2, 3)))
    np.testing.assert_allclose(out.mean(axis=(0, 2, 3)), 0, atol=1e-12)
    np.testing.assert_allclose(out.var(axis=(0, 2, 3)), 1, atol=1e-4)
    assert np.abs(out[:, :, 0, 0].mean(axis=0)).max() > 1e-3  # a single position is not normalized on its own


def test_forward_stages_keep_the_shape_and_set_the_moments():
    _, stages = forward_stages_figure(gamma=2.0, beta=1.0)
    assert abs(stages["centered"]["mean"]) < 1e-12 and stages["centered"]["std"] == pytest.approx(stages["x"]["std"])
    assert abs(stages["x_hat"]["mean"]) < 1e-12 and abs(stages["x_hat"]["std"] - 1) < 1e-4
    assert abs(stages["out"]["mean"] - 1) < 1e-12 and abs(stages["out"]["std"] - 2) < 1e-3


def test_changing_one_example_moves_the_others_in_training_mode_only():
    for batch_size in batch_coupling.BATCH_SIZES:
        result = batch_coupling.coupling(batch_size, 6.0)
        assert result["train_shift"] > 0.1 and result["eval_shift"] == 0
        np.testing.assert_array_equal(result["moved"][1:], result["x"][1:])
        np.testing.assert_allclose(result["train"], batch_norm_forward(result["moved"][:, None], np.ones(1),
                                                                        np.zeros(1))[0][:, 0])
    unmoved = batch_coupling.coupling(8, batch_coupling.feature_batch(8)[0])
    assert unmoved["train_shift"] < 1e-12


def test_the_coupling_fades_as_the_batch_grows():
    small, large = (batch_coupling.coupling(n, 8.0)["train_shift"] for n in (8, 128))
    assert large < 0.5 * small


def test_train_curves_are_the_outputs_at_each_value():
    curves = batch_coupling.train_curves(4)
    for index in (0, 80, 160):
        value = batch_coupling.VALUES[index]
        np.testing.assert_allclose(curves[index], batch_coupling.coupling(4, value)["train"][1:], atol=1e-12)
    with pytest.raises(ValueError, match="at least 2"):
        batch_coupling.feature_batch(1)


def test_figure_plots_its_data():
    figure, data = batch_coupling.coupling_figure()
    number_line = figure.axes[0]
    train_dots = [line for line in number_line.get_lines() if line.get_color() == "C0"][1]
    np.testing.assert_allclose(train_dots.get_xdata(), data["train"][1:])
    assert data["train_shift"] > 0.5 and data["eval_shift"] == 0


def test_explorer_readout_reports_the_shifts():
    explorer = batch_coupling_explorer()
    explorer.controls["moved_to"].value, explorer.controls["batch_size"].value = -6.0, 32
    result = batch_coupling.coupling(32, -6.0)
    assert explorer.error is None, explorer.text
    assert explorer.text.startswith(f"the other 31 examples' outputs moved by up to "
                                             f"{result['train_shift']:.2f} in training mode, 0.00 in eval mode")


@pytest.mark.parametrize("name, value", [("moved_to", -7.5), ("batch_size", 128)])
def test_every_control_changes_the_readout_and_the_plot(name, value):
    assert_control_changes_readout_and_plot(batch_coupling_explorer(), name, value)


@pytest.mark.parametrize("moved_to", ["min", "max"])
@pytest.mark.parametrize("batch_size", [4, 128])
def test_the_slider_ends_draw_the_coupling_they_compute(moved_to, batch_size):
    """At both ends of the slider and the batch sizes, the readout reports ``coupling``'s numbers (its speed
    is the browser test's and the benchmarks' business, not a timed assertion)."""
    explorer = batch_coupling_explorer()
    explorer.controls["batch_size"].value = batch_size
    slider = explorer.controls["moved_to"]
    slider.value = getattr(slider, moved_to)
    result = batch_coupling.coupling(batch_size, slider.value)
    assert explorer.error is None, explorer.text
    assert f"up to {result['train_shift']:.2f} in training mode, {result['eval_shift']:.2f} in eval mode" \
        in explorer.text
