"""Notebook 04's claims: the output's moments, the identity for fixed statistics, the cancelled bias, and
scale invariance (Ioffe & Szegedy 2015, sections 3, 3.2 and 3.3), measured in float64."""

import numpy as np
import pytest
import torch

import bnlib
from bnlib import batch_norm_forward
from bnlib.course.ch04.reparameterization import gradient_ratio, scale_invariance_figure, scale_problem, weight_gradient


def skewed_batch(seed=0, shape=(64, 5)):
    rng = np.random.default_rng(seed)
    return rng.gamma(2.0, 1.0, size=shape) * [1, 10, 100, 0.1, 3] + [0, 5, -50, 1, 1e3]


def test_output_has_mean_beta_and_std_gamma_times_the_eps_factor():
    x, gamma, beta = skewed_batch(), np.array([1, 2, 3, 0.5, 1.0]), np.array([0, 1, 2, 3, 4.0])
    y = batch_norm_forward(x, gamma, beta)[0]
    np.testing.assert_allclose(y.mean(axis=0), beta, atol=1e-12)
    var = x.var(axis=0)
    np.testing.assert_allclose(y.std(axis=0), gamma * np.sqrt(var / (var + 1e-5)), rtol=1e-10)
    assert abs(y.std(axis=0)[3] / gamma[3] - 1) > 1e-4           # the small-variance unit: eps shows
    np.testing.assert_allclose(np.delete(y.std(axis=0) / gamma, 3), 1, rtol=1e-5)


@pytest.mark.parametrize("seed", range(3))
def test_the_batchs_own_statistics_give_back_that_batch_and_no_other(seed):
    x, other = skewed_batch(seed), skewed_batch(seed + 10)
    gamma, beta = np.sqrt(x.var(axis=0) + 1e-5), x.mean(axis=0)
    assert np.abs(batch_norm_forward(x, gamma, beta)[0] - x).max() < 1e-10          # values up to ~1000
    error = np.abs(batch_norm_forward(other, gamma, beta)[0] - other) / other.std(axis=0)
    assert error.max() > 0.1                                                         # in the unit's std
    assert np.abs(batch_norm_forward(x, np.sqrt(x.var(axis=0)), beta)[0] - x).max() > 1e-6  # eps matters


def test_eval_mode_with_the_fixed_statistics_is_the_identity_on_any_batch():
    x, other = (torch.from_numpy(skewed_batch(seed)) for seed in (0, 10))
    layer = bnlib.BatchNorm1d(5, dtype=torch.float64).eval()
    with torch.no_grad():
        layer.running_mean.copy_(x.mean(0))
        layer.running_var.copy_(x.var(0))
        layer.weight.copy_(torch.sqrt(layer.running_var + layer.eps))
        layer.bias.copy_(layer.running_mean)
        assert (layer(other) - other).abs().max() < 1e-10


def test_the_bias_before_bn_gets_zero_gradient_and_changes_nothing():
    torch.manual_seed(0)
    linear, bn = torch.nn.Linear(20, 8, dtype=torch.float64), bnlib.BatchNorm1d(8, dtype=torch.float64)
    with torch.no_grad():
        linear.bias.mul_(100)
    u, dout = torch.randn(32, 20, dtype=torch.float64), torch.randn(32, 8, dtype=torch.float64)
    out = bn(linear(u))
    out.backward(dout)
    assert linear.weight.grad.abs().max() > 0.1
    assert linear.bias.grad.abs().max() < 1e-13
    assert (bn(u @ linear.weight.T) - out).abs().max() < 1e-12


@pytest.mark.parametrize("a", [0.5, 2.0, 10.0, 100.0, 1000.0])
def test_gradient_at_aw_is_one_over_a_times_the_gradient_at_w(a):
    problem = scale_problem()
    ratio, output_change = gradient_ratio(a, *problem)
    assert output_change < 1e-5
    assert ratio == pytest.approx(1 / a, rel=1e-5)
    _, grad = weight_gradient(1.0, *problem)
    _, grad_a = weight_gradient(a, *problem)
    assert (a * grad_a - grad).abs().max() < 1e-5 * grad.abs().max()


def test_eps_breaks_scale_invariance_only_for_tiny_weights():
    problem = scale_problem()
    assert abs(gradient_ratio(1e-3, *problem)[0] * 1e-3 - 1) > 0.1
    assert gradient_ratio(1e-2, *problem, eps=1e-12)[0] == pytest.approx(100, rel=1e-8)
    _, data = scale_invariance_figure(scales=np.array([0.1, 1.0, 10.0]))
    np.testing.assert_allclose(data["gradient_ratio"], 1 / data["scales"], rtol=1e-3)
