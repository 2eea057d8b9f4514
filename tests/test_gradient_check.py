"""Gradient checks of notebook 03: finite differences, and why a sum loss hides a wrong backward."""

import numpy as np
import pytest

from bnlib import batch_norm_backward, batch_norm_forward
from bnlib.course.ch03.backward import backward_forgetting_variance, torch_reference
from bnlib.course.ch03.step_by_step import TINY_BATCH
from bnlib.gradient_check import TOLERANCE, check_backward, max_abs_difference, numeric_gradient, upstream_gradient

GAMMA, BETA = np.array([2.0, 0.5, 1.0]), np.array([1.0, 0.0, -3.0])  # notebook 03's


def forward(z):
    return batch_norm_forward(z, GAMMA, BETA)[0]


def test_numeric_gradient_matches_a_known_derivative():
    x = np.random.default_rng(0).normal(size=(3, 4))
    dout = np.random.default_rng(1).normal(size=(3, 4))
    np.testing.assert_allclose(numeric_gradient(lambda z: z ** 3, x, dout), 3 * x ** 2 * dout, rtol=1e-8, atol=1e-9)


def test_the_sum_check_passes_the_wrong_backward_and_the_random_check_fails_it():
    cache = batch_norm_forward(TINY_BATCH, GAMMA, BETA)[1]
    errors = {}
    for name, backward in (("compact", batch_norm_backward), ("wrong", backward_forgetting_variance)):
        for kind in ("sum", "random"):
            upstream = upstream_gradient(kind, TINY_BATCH.shape)
            errors[name, kind] = max_abs_difference(backward(upstream, cache)[0],
                                                    numeric_gradient(forward, TINY_BATCH, upstream))
    assert max(errors["compact", "sum"], errors["compact", "random"], errors["wrong", "sum"]) < 1e-8
    gradient = np.abs(numeric_gradient(forward, TINY_BATCH, upstream_gradient("random", TINY_BATCH.shape))).max()
    assert errors["wrong", "random"] > 0.3 * gradient  # "as large as the gradient itself"


def test_gradient_of_a_sum_of_outputs_is_zero():
    dout = upstream_gradient("sum", TINY_BATCH.shape)
    assert np.abs(numeric_gradient(forward, TINY_BATCH, dout)).max() < 1e-8
    cache = batch_norm_forward(TINY_BATCH, GAMMA, BETA)[1]
    assert np.abs(batch_norm_backward(dout, cache)[0]).max() < 1e-14
    assert np.abs(torch_reference(TINY_BATCH, GAMMA, BETA, dout)[1]).max() < 1e-12
    assert np.abs(backward_forgetting_variance(dout, cache)[0]).max() < 1e-14


def test_wrong_backward_keeps_the_right_dgamma_and_dbeta():
    dout = upstream_gradient("random", TINY_BATCH.shape)
    cache = batch_norm_forward(TINY_BATCH, GAMMA, BETA)[1]
    for wrong, right in zip(backward_forgetting_variance(dout, cache)[1:], batch_norm_backward(dout, cache)[1:]):
        np.testing.assert_allclose(wrong, right, rtol=1e-12)


@pytest.mark.parametrize("shape", [(4, 3), (6, 2, 3, 3)])
def test_core_agrees_with_finite_differences_and_torch_autograd(shape):
    rng = np.random.default_rng(2)
    x = 5 + 3 * rng.normal(size=shape)
    gamma, beta, dout = rng.uniform(0.5, 2, shape[1]), rng.normal(size=shape[1]), rng.normal(size=shape)
    dx, dgamma, dbeta = batch_norm_backward(dout, batch_norm_forward(x, gamma, beta)[1])
    numeric = numeric_gradient(lambda z: batch_norm_forward(z, gamma, beta)[0], x, dout)
    assert max_abs_difference(dx, numeric) < TOLERANCE
    for ours, torch_grad in zip((dx, dgamma, dbeta), torch_reference(x, gamma, beta, dout)[1:]):
        assert max_abs_difference(ours, torch_grad) < 1e-12
    assert check_backward(batch_norm_backward, x, gamma, beta, "random")["passes"]


def test_unknown_upstream_kind_is_named():
    with pytest.raises(ValueError, match="'sum' or 'random'"):
        upstream_gradient("ones", (2, 2))
