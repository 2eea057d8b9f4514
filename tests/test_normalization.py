"""The numpy batch norm against torch (float64 and float32), finite differences and a float64 reference.

Upstream gradients are random throughout. A sum (all-ones) upstream gradient would hide bugs: per
channel the normalized outputs sum to 0 whatever x is, so with dL/dy = 1 the true dx is exactly 0 and
any backward that subtracts the mean of its upstream gradient (even one that forgets the variance path
entirely) returns 0 too. ``test_ones_upstream_gradient_cannot_catch_a_missing_variance_path`` shows it.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from bnlib import batch_norm_backward, batch_norm_forward

SETTINGS = settings(max_examples=30, deadline=None)

shapes = st.tuples(
    st.integers(2, 6),                                   # N
    st.integers(1, 4),                                   # C
    st.lists(st.integers(1, 4), min_size=0, max_size=2),  # spatial
).map(lambda t: (t[0], t[1], *t[2]))


def random_problem(shape, seed, dtype=np.float64):
    rng = np.random.default_rng(seed)
    x = (rng.normal(size=shape) * rng.uniform(0.1, 5) + rng.uniform(-3, 3)).astype(dtype)
    gamma = rng.normal(size=shape[1]).astype(dtype)
    beta = rng.normal(size=shape[1]).astype(dtype)
    dout = rng.normal(size=shape).astype(dtype)
    return x, gamma, beta, dout


def torch_reference(x, gamma, beta, dout, eps=1e-5):
    """Output and gradients of torch.nn.functional.batch_norm in training mode."""
    x_t, gamma_t, beta_t = (torch.tensor(a, requires_grad=True) for a in (x, gamma, beta))
    out = F.batch_norm(x_t, None, None, gamma_t, beta_t, training=True, eps=eps)
    out.backward(torch.tensor(dout))
    return out.detach().numpy(), x_t.grad.numpy(), gamma_t.grad.numpy(), beta_t.grad.numpy()


@SETTINGS
@given(shape=shapes, seed=st.integers(0, 2**32 - 1))
def test_forward_and_backward_match_torch_in_float64(shape, seed):
    x, gamma, beta, dout = random_problem(shape, seed)
    out, cache = batch_norm_forward(x, gamma, beta)
    ours = (out, *batch_norm_backward(dout, cache))
    for mine, theirs in zip(ours, torch_reference(x, gamma, beta, dout)):
        np.testing.assert_allclose(mine, theirs, rtol=0, atol=1e-10)


@SETTINGS
@given(shape=shapes, seed=st.integers(0, 2**32 - 1))
def test_float32_is_about_as_accurate_as_torch(shape, seed):
    """Against the float64 result: our float32 error is at most twice torch's float32 error, plus a
    rounding allowance of 1e-5 of the result's size (a fixed tolerance would fail on ill-conditioned
    batches, where both float32 results stray from the exact one)."""
    x, gamma, beta, dout = random_problem(shape, seed, np.float32)
    out, cache = batch_norm_forward(x, gamma, beta)
    ours = (out, *batch_norm_backward(dout, cache))
    assert all(a.dtype == np.float32 for a in ours)
    exact = torch_reference(*(a.astype(np.float64) for a in (x, gamma, beta, dout)))
    for mine, theirs, truth in zip(ours, torch_reference(x, gamma, beta, dout), exact):
        our_error, torch_error = np.abs(mine - truth).max(), np.abs(theirs - truth).max()
        assert our_error <= 2 * torch_error + 1e-5 * max(np.abs(truth).max(), 1.0), (our_error, torch_error)


def test_cache_holds_the_batch_statistics():
    x, gamma, beta, _ = random_problem((8, 3, 4, 5), seed=0)
    out, cache = batch_norm_forward(x, gamma, beta, eps=1e-3)
    np.testing.assert_allclose(cache.mean, x.mean(axis=(0, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(cache.var, x.var(axis=(0, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(cache.inv_std, 1 / np.sqrt(x.var(axis=(0, 2, 3)) + 1e-3), rtol=1e-12)
    # Each channel of x_hat has mean 0 and variance var / (var + eps).
    np.testing.assert_allclose(cache.x_hat.mean(axis=(0, 2, 3)), 0, atol=1e-12)
    np.testing.assert_allclose(cache.x_hat.var(axis=(0, 2, 3)), cache.var / (cache.var + 1e-3), rtol=1e-10)


def numerical_gradient(f, array, dout, h=1e-6):
    """Central differences of L = sum(f() * dout) with respect to every entry of ``array`` (in place)."""
    grad = np.zeros_like(array)
    for index in np.ndindex(array.shape):
        saved = array[index]
        array[index] = saved + h
        plus = np.sum(f() * dout)
        array[index] = saved - h
        minus = np.sum(f() * dout)
        array[index] = saved
        grad[index] = (plus - minus) / (2 * h)
    return grad


@pytest.mark.parametrize("shape", [(5, 3), (3, 2, 4), (2, 3, 2, 3)])
def test_backward_matches_finite_differences(shape):
    x, gamma, beta, dout = random_problem(shape, seed=1)
    forward = lambda: batch_norm_forward(x, gamma, beta)[0]  # noqa: E731 (reads the arrays as they change)
    dx, dgamma, dbeta = batch_norm_backward(dout, batch_norm_forward(x, gamma, beta)[1])
    for analytic, array in ((dx, x), (dgamma, gamma), (dbeta, beta)):
        np.testing.assert_allclose(analytic, numerical_gradient(forward, array, dout), rtol=1e-5, atol=1e-7)


def test_input_gradient_is_orthogonal_to_shifts_and_scalings():
    """BN's output ignores a per-channel shift of x, and a scaling too when eps -> 0: so dx sums to 0
    per channel, and dx . x_hat = 0 up to the eps term."""
    x, gamma, beta, dout = random_problem((16, 4, 3), seed=2)
    out, cache = batch_norm_forward(x, gamma, beta, eps=1e-14)
    dx, _, _ = batch_norm_backward(dout, cache)
    np.testing.assert_allclose(dx.sum(axis=(0, 2)), 0, atol=1e-12)
    np.testing.assert_allclose((dx * cache.x_hat).sum(axis=(0, 2)), 0, atol=1e-10)


def test_ones_upstream_gradient_cannot_catch_a_missing_variance_path():
    x, gamma, beta, dout = random_problem((10, 3), seed=3)
    _, cache = batch_norm_forward(x, gamma, beta)

    def without_variance_path(dout):
        return gamma * cache.inv_std * (dout - dout.mean(axis=0))

    ones = np.ones_like(x)
    np.testing.assert_allclose(batch_norm_backward(ones, cache)[0], without_variance_path(ones), atol=1e-12)
    assert not np.allclose(batch_norm_backward(dout, cache)[0], without_variance_path(dout), atol=1e-3)


def test_large_offset_normalizes_about_as_accurately_as_torch():
    """Mean 1e4, spread 1e-2, float32: E[x^2] - E[x]^2 would cancel every digit; two passes do not."""
    rng = np.random.default_rng(4)
    x = (1e4 + 1e-2 * rng.normal(size=(256, 8))).astype(np.float32)
    gamma, beta = np.ones(8, np.float32), np.zeros(8, np.float32)
    exact = batch_norm_forward(x.astype(np.float64), gamma.astype(np.float64), beta.astype(np.float64))[0]
    ours = batch_norm_forward(x, gamma, beta)[0]
    theirs = F.batch_norm(torch.from_numpy(x), None, None, training=True).numpy()
    our_error, torch_error = np.abs(ours - exact).max(), np.abs(theirs - exact).max()
    # float32 holds 1e4 only to ~1e-3, a tenth of the spread: rounding the mean alone costs ~0.05.
    assert our_error <= 2 * torch_error + 1e-3, (our_error, torch_error)
    assert our_error < 0.1
    one_pass_var = (x ** 2).mean(axis=0) - x.mean(axis=0) ** 2   # what the two passes avoid
    exact_var = x.astype(np.float64).var(axis=0)
    assert np.abs(one_pass_var - exact_var).max() > 1e3 * exact_var.max()


def test_integer_input_is_normalized_as_floats():
    x = np.arange(12).reshape(6, 2)
    out, _ = batch_norm_forward(x, np.ones(2), np.zeros(2))
    expected, _ = batch_norm_forward(x.astype(np.float64), np.ones(2), np.zeros(2))
    np.testing.assert_array_equal(out, expected)
