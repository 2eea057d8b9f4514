"""The staged forward/backward of notebook 03 equal the core, and the core's per-channel claims hold."""

import numpy as np
import pytest

from bnlib import batch_norm_backward, batch_norm_forward
from bnlib.course.ch03.gradient_checks import torch_reference_gradients
from bnlib.course.ch03.step_by_step import (TINY_BATCH, backward_steps, batch_dependence, batch_dependence_figure,
                                            forward_stages_figure, forward_steps, per_channel_moments, print_steps)

SHAPES = [(4, 3), (16, 5), (2, 3, 4, 4), (5, 2, 3, 1, 2)]


def random_case(shape, seed=0):
    rng = np.random.default_rng(seed)
    channels = shape[1]
    x = rng.normal(size=shape) * per_axis(rng.uniform(0.1, 10, channels), len(shape)) \
        + per_axis(rng.uniform(-50, 50, channels), len(shape))
    return x, rng.uniform(0.5, 2, channels), rng.normal(size=channels), rng.normal(size=shape)


def per_axis(values, ndim):
    return values.reshape((1, -1) + (1,) * (ndim - 2))


@pytest.mark.parametrize("shape", SHAPES)
def test_staged_forward_equals_the_core(shape):
    x, gamma, beta, _ = random_case(shape)
    steps = forward_steps(x, gamma, beta)
    out, cache = batch_norm_forward(x, gamma, beta)
    np.testing.assert_allclose(steps["y"], out, rtol=0, atol=1e-12)
    np.testing.assert_allclose(steps["xhat"], cache.x_hat, rtol=0, atol=1e-12)
    np.testing.assert_allclose(steps["mu"].ravel(), cache.mean, rtol=1e-14)
    np.testing.assert_allclose(steps["var"].ravel(), cache.var, rtol=1e-12)


@pytest.mark.parametrize("shape", SHAPES)
def test_staged_backward_equals_the_core_and_torch(shape):
    x, gamma, beta, dout = random_case(shape, seed=1)
    staged = backward_steps(dout, forward_steps(x, gamma, beta))
    dx, dgamma, dbeta = batch_norm_backward(dout, batch_norm_forward(x, gamma, beta)[1])
    torch_dx, torch_dgamma, torch_dbeta = torch_reference_gradients(x, gamma, beta, dout)
    for mine, core, reference in [(staged["dx"], dx, torch_dx), (staged["dgamma"], dgamma, torch_dgamma),
                                  (staged["dbeta"], dbeta, torch_dbeta)]:
        np.testing.assert_allclose(mine, core, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(mine, reference, rtol=1e-9, atol=1e-12)


def test_tiny_batch_is_normalized_per_feature_with_the_biased_variance():
    steps = forward_steps(TINY_BATCH, np.ones(3), np.zeros(3))
    np.testing.assert_allclose(steps["var"].ravel(), TINY_BATCH.var(axis=0, ddof=0))
    np.testing.assert_allclose(steps["xhat"].mean(axis=0), 0, atol=1e-15)
    np.testing.assert_allclose(steps["xhat"].var(axis=0), steps["var"].ravel() / (steps["var"].ravel() + 1e-5))
    assert np.abs(steps["xhat"].var(axis=0) - 1).max() < 1e-4


def test_convolution_statistics_are_per_channel_over_n_h_w():
    x, gamma, beta, _ = random_case((8, 3, 5, 5))
    out, cache = batch_norm_forward(x, np.ones(3), np.zeros(3))
    assert cache.mean.shape == cache.var.shape == (3,)
    np.testing.assert_allclose(cache.mean, x.mean(axis=(0, 2, 3)))
    mean, var = per_channel_moments(out)
    np.testing.assert_allclose(mean, 0, atol=1e-12)
    np.testing.assert_allclose(var, 1, atol=1e-4)
    assert np.abs(per_channel_moments(x)[1] - 1).max() > 0.5  # the input was far from unit variance


def test_changing_one_example_moves_another():
    result = batch_dependence(TINY_BATCH, np.ones(3), np.zeros(3))
    assert result["largest_change"] > 0.1
    unmoved = result["outputs"][np.argmin(np.abs(result["shifts"]))]
    np.testing.assert_allclose(unmoved, batch_norm_forward(TINY_BATCH, np.ones(3), np.zeros(3))[0][0])
    with pytest.raises(ValueError, match="must differ"):
        batch_dependence(TINY_BATCH, np.ones(3), np.zeros(3), example=1, other=1)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        forward_steps(np.ones((1, 3)), np.ones(3), np.zeros(3))


def test_print_steps_shows_each_node(capsys):
    print_steps(forward_steps(TINY_BATCH, np.ones(3), np.zeros(3)), names=("mu", "xhat"))
    printed = capsys.readouterr().out
    assert "mu  shape (1, 3)" in printed and "xhat  shape (4, 3)" in printed


def test_figures_plot_what_they_claim():
    _, stages = forward_stages_figure(gamma=2.0, beta=1.0)
    assert abs(stages["xhat"]["mean"]) < 1e-12 and abs(stages["xhat"]["std"] - 1) < 1e-4
    assert abs(stages["y"]["mean"] - 1) < 1e-12 and abs(stages["y"]["std"] - 2) < 1e-3
    _, dependence = batch_dependence_figure()
    assert dependence["largest_change"] > 0.1
