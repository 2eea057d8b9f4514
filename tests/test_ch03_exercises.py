"""The exercise checks of notebook 03 accept the solutions and reject wrong answers with a hint."""

import numpy as np

from bnlib.course.ch03.step_by_step import forward_steps
from bnlib.course.exercises import ch03
from bnlib.course.exercises.ch03 import exercise_batch


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
