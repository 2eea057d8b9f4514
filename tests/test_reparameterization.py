"""Notebook 04's claims: output moments, identity recovery, bias cancellation, scale invariance."""

import numpy as np
import pytest

from bnlib.course.ch04.reparameterization import (bias_cancellation, identity_parameters, identity_recovery_error,
                                                  output_moments, scale_invariance, scale_invariance_figure)


def skewed_batch(seed=0, shape=(64, 5)):
    rng = np.random.default_rng(seed)
    return rng.gamma(2.0, 1.0, size=shape) * [1, 10, 100, 0.1, 3] + [0, 5, -50, 1, 1e3]


def test_output_has_mean_beta_and_std_gamma():
    x, gamma, beta = skewed_batch(), np.array([1, 2, 3, 0.5, 1.0]), np.array([0, 1, 2, 3, 4.0])
    mean, std = output_moments(x, gamma, beta)
    np.testing.assert_allclose(mean, beta, atol=1e-12)
    var = x.var(axis=0)
    np.testing.assert_allclose(std, gamma * np.sqrt(var / (var + 1e-5)), rtol=1e-10)
    np.testing.assert_allclose(std, gamma, rtol=1e-3)


@pytest.mark.parametrize("seed", range(3))
def test_gamma_sqrt_var_eps_and_beta_mu_give_the_identity(seed):
    x = skewed_batch(seed)
    assert identity_recovery_error(x) < 1e-12
    gamma, beta = identity_parameters(x)
    np.testing.assert_allclose(beta, x.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(gamma, np.sqrt(x.var(axis=0) + 1e-5), rtol=1e-12)
    assert identity_recovery_error(x, eps=1e-1) < 1e-12


def test_forgetting_eps_in_gamma_is_not_the_identity():
    """The identity check is sharp: gamma = sqrt(var) alone misses by far more than rounding."""
    from bnlib import batch_norm_forward

    x = skewed_batch()
    gamma, beta = identity_parameters(x)
    assert np.abs(batch_norm_forward(x, np.sqrt(gamma ** 2 - 1e-5), beta)[0] - x).max() > 1e-9


def test_bias_before_bn_has_zero_gradient_and_no_effect():
    result = bias_cancellation()
    assert result["largest_weight_gradient"] > 0.1
    assert result["largest_bias_gradient"] < 1e-14
    assert result["output_change_without_bias"] < 1e-13


@pytest.mark.parametrize("a", [0.5, 2.0, 10.0, 100.0, 1000.0])
def test_gradient_at_aw_is_one_over_a_times_the_gradient_at_w(a):
    result = scale_invariance(a)
    assert result["output_change"] < 1e-5
    assert result["gradient_ratio"] == pytest.approx(1 / a, rel=1e-5)
    assert result["relative_deviation"] < 1e-5


def test_eps_breaks_scale_invariance_only_for_tiny_weights():
    assert scale_invariance(1e-3)["relative_deviation"] > 0.1
    assert scale_invariance(1e-2, eps=1e-12)["relative_deviation"] < 1e-8
    _, data = scale_invariance_figure(scales=np.array([0.1, 1.0, 10.0]))
    np.testing.assert_allclose(data["gradient_ratio"], 1 / data["scales"], rtol=1e-3)
