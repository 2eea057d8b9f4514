"""The exercise checks of notebooks 03 and 04 accept the solutions and reject wrong answers without raising."""

import numpy as np
import pytest

from bnlib.course.exercises import ch03, ch04
from bnlib.course.ch03.step_by_step import forward_steps
from bnlib.course.exercises.ch03 import exercise_batch
from bnlib.course.exercises.ch04 import identity_batch


def test_batch_variance(capsys):
    assert ch03.check_batch_variance(lambda x: ((x - x.mean(axis=0)) ** 2).mean(axis=0))
    assert not ch03.check_batch_variance(lambda x: x.var(axis=0, ddof=1))
    assert "m - 1" in capsys.readouterr().out
    assert not ch03.check_batch_variance(lambda x: x.std(axis=0))
    assert not ch03.check_batch_variance(lambda x: x.var())
    assert not ch03.check_batch_variance(lambda x: None)
    assert not ch03.check_batch_variance(lambda x: 1 / 0)
    assert not ch03.check_batch_variance(None)
    assert not ch03.check_batch_variance(lambda x: "variance")


def test_dgamma_dbeta(capsys):
    x, gamma, beta, dout = exercise_batch()
    xhat = forward_steps(x, gamma, beta)["xhat"]
    assert ch03.check_dgamma_dbeta(((dout * xhat).sum(axis=0), dout.sum(axis=0)))
    assert not ch03.check_dgamma_dbeta((dout.sum(axis=0), (dout * xhat).sum(axis=0)))
    assert "swapped" in capsys.readouterr().out
    assert not ch03.check_dgamma_dbeta(((dout * x).sum(axis=0), dout.sum(axis=0)))
    assert not ch03.check_dgamma_dbeta(None)
    assert not ch03.check_dgamma_dbeta((None, None))
    assert not ch03.check_dgamma_dbeta((np.ones(3), None))
    assert not ch03.check_dgamma_dbeta(5)
    assert not ch03.check_dgamma_dbeta(("a", "b"))


def compact_backward(dout, cache):
    dxhat = dout * cache.gamma
    return cache.inv_std * (dxhat - dxhat.mean(axis=0) - cache.x_hat * (dxhat * cache.x_hat).mean(axis=0))


def test_batch_norm_backward(capsys):
    assert ch03.check_batch_norm_backward(compact_backward)
    forgetful = lambda dout, cache: cache.inv_std * cache.gamma * (dout - dout.mean(axis=0))  # noqa: E731
    assert not ch03.check_batch_norm_backward(forgetful)
    assert "variance" in capsys.readouterr().out
    assert not ch03.check_batch_norm_backward(lambda dout, cache: cache.inv_std * cache.gamma * dout)
    assert not ch03.check_batch_norm_backward(lambda dout, cache: None)


def test_output_moments(capsys):
    assert ch04.check_output_moments((-2.0, 3.0))
    assert not ch04.check_output_moments((3.0, -2.0))
    assert "swapped" in capsys.readouterr().out
    assert not ch04.check_output_moments((0.0, 1.0))
    assert not ch04.check_output_moments((None, None))
    assert not ch04.check_output_moments(None)


def test_identity_parameters(capsys):
    x = identity_batch()
    assert ch04.check_identity_parameters((np.sqrt(x.var(axis=0) + 1e-5), x.mean(axis=0)))
    assert not ch04.check_identity_parameters((x.std(axis=0), x.mean(axis=0)))
    assert "eps" in capsys.readouterr().out
    assert not ch04.check_identity_parameters((np.ones(3), np.zeros(3)))
    assert not ch04.check_identity_parameters((np.ones(2), np.zeros(2)))
    assert not ch04.check_identity_parameters(None)


@pytest.mark.parametrize("wrong", [4.0, 1.0, -0.25, None, "a quarter"])
def test_gradient_ratio(wrong):
    assert ch04.check_gradient_ratio(0.25)
    assert not ch04.check_gradient_ratio(wrong)
