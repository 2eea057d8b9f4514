"""Gradient checks of notebook 03: finite differences, torch autograd, and why a sum loss hides bugs."""

import numpy as np
import pytest

from bnlib import batch_norm_backward, batch_norm_forward
from bnlib.course.ch03.gradient_checks import backward_forgetting_variance, sum_versus_random, torch_reference_gradients
from bnlib.course.ch03.step_by_step import TINY_BATCH
from bnlib.gradient_check import TOLERANCE, check_backward, max_abs_difference, numeric_gradient, upstream_gradient

GAMMA, BETA = np.array([1.0, 2.0, 0.5]), np.array([0.0, 1.0, -1.0])


def test_numeric_gradient_matches_a_known_derivative():
    x = np.random.default_rng(0).normal(size=(3, 4))
    dout = np.random.default_rng(1).normal(size=(3, 4))
    np.testing.assert_allclose(numeric_gradient(lambda z: z ** 3, x, dout), 3 * x ** 2 * dout, rtol=1e-8, atol=1e-9)


def test_core_backward_passes_both_checks_and_the_wrong_one_only_the_sum_check():
    rows = {(row["backward"], row["upstream"]): row for row in sum_versus_random(TINY_BATCH, GAMMA, BETA)}
    assert rows[("correct (core)", "sum")]["passes"] and rows[("correct (core)", "random")]["passes"]
    assert rows[("forgets the variance", "sum")]["passes"]
    assert not rows[("forgets the variance", "random")]["passes"]
    assert rows[("forgets the variance", "random")]["error"] > 0.1
    assert rows[("correct (core)", "random")]["error"] < 1e-8


def test_gradient_of_a_sum_of_outputs_is_zero():
    dout = upstream_gradient("sum", TINY_BATCH.shape)
    numeric = numeric_gradient(lambda z: batch_norm_forward(z, GAMMA, BETA)[0], TINY_BATCH, dout)
    assert np.abs(numeric).max() < 1e-8
    dx = batch_norm_backward(dout, batch_norm_forward(TINY_BATCH, GAMMA, BETA)[1])[0]
    assert np.abs(dx).max() < 1e-14
    assert np.abs(torch_reference_gradients(TINY_BATCH, GAMMA, BETA, dout)[0]).max() < 1e-12
    wrong = backward_forgetting_variance(dout, batch_norm_forward(TINY_BATCH, GAMMA, BETA)[1])[0]
    assert np.abs(wrong).max() < 1e-14


@pytest.mark.parametrize("shape", [(4, 3), (6, 2, 3, 3)])
def test_core_agrees_with_finite_differences_and_torch_autograd(shape):
    rng = np.random.default_rng(2)
    x = 5 + 3 * rng.normal(size=shape)
    gamma, beta, dout = rng.uniform(0.5, 2, shape[1]), rng.normal(size=shape[1]), rng.normal(size=shape)
    dx, dgamma, dbeta = batch_norm_backward(dout, batch_norm_forward(x, gamma, beta)[1])
    numeric = numeric_gradient(lambda z: batch_norm_forward(z, gamma, beta)[0], x, dout)
    assert max_abs_difference(dx, numeric) < TOLERANCE
    for ours, torch_grad in zip((dx, dgamma, dbeta), torch_reference_gradients(x, gamma, beta, dout)):
        assert max_abs_difference(ours, torch_grad) < 1e-12
    assert check_backward(batch_norm_backward, x, gamma, beta, "random")["passes"]


def test_unknown_upstream_kind_is_named():
    with pytest.raises(ValueError, match="'sum' or 'random'"):
        upstream_gradient("ones", (2, 2))
