"""The exercises of notebook 07 accept the solution and reject wrong answers with a hint."""

import numpy as np
import pytest

import bnlib
from bnlib.course.exercises import ch07 as exercises
from bnlib.course.exercises.ch07 import PAIR, group_exercise_batch

pytestmark = pytest.mark.slow  # computes experiments on real MNIST (cached afterwards)


def test_batch_size_for_noise(capsys):
    assert exercises.check_batch_size_for_noise(128)
    assert not exercises.check_batch_size_for_noise(32)
    assert "1/sqrt(m)" in capsys.readouterr().out
    assert not exercises.check_batch_size_for_noise(None)
    assert "still None" in capsys.readouterr().out
    assert not exercises.check_batch_size_for_noise("many")


def test_batch_of_two_accepts_what_batch_norm_computes(capsys):
    out = bnlib.batch_norm_forward(np.array(PAIR)[:, None], np.ones(1), np.zeros(1))[0].ravel()
    assert exercises.check_batch_of_two(out)
    assert not exercises.check_batch_of_two([1.0, -1.0])
    assert "signs" in capsys.readouterr().out
    assert not exercises.check_batch_of_two([-0.5, 0.5])
    assert not exercises.check_batch_of_two(None)
    assert not exercises.check_batch_of_two([1.0, 2.0, 3.0])


def test_group_means(capsys):
    h = group_exercise_batch()
    assert exercises.check_group_means(np.stack([h[:, :3].mean(1), h[:, 3:].mean(1)], axis=1))
    assert not exercises.check_group_means(h.mean(0))
    assert "BatchNorm" in capsys.readouterr().out
    assert not exercises.check_group_means(h.mean(1))
    assert "LayerNorm" in capsys.readouterr().out
    assert not exercises.check_group_means(h[:, ::3])
    assert not exercises.check_group_means("nope")
    assert not exercises.check_group_means(None)
    assert "still None" in capsys.readouterr().out
