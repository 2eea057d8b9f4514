"""The exercise checks of notebook 04 accept the solutions and reject wrong answers with a hint."""

import numpy as np
import pytest

from bnlib.course.exercises import ch04
from bnlib.course.exercises.ch04 import identity_batch


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
