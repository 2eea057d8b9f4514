"""The exercises of notebook 09 accept the solutions and reject blanks and typical mistakes with their hint."""

import numpy as np
import pytest
import torch

from bnlib.course.ch09.buffers import DEMO, broadcast_run
from bnlib.course.ch09.devices import device_grid
from bnlib.course.ch09 import exercises
from bnlib.course.checks import NotYet

pytestmark = pytest.mark.slow  # the checks compare with runs on several processes and on MNIST (cached)


def rejected(check, answer, hint):
    with pytest.raises(NotYet, match=hint):
        check(answer)


def test_broadcast_running_mean(capsys):
    exercises.check_broadcast_running_mean(0.9 * (1 - 0.9 ** 3) + 1.0)
    assert capsys.readouterr().out.startswith("Correct.")
    run = broadcast_run(DEMO.replace(means=exercises.BROADCAST_MEANS, steps=exercises.BROADCAST_STEP))
    rejected(exercises.check_broadcast_running_mean, 10 * (1 - 0.9 ** 4), "what rank 2 would hold on its own")
    rejected(exercises.check_broadcast_running_mean, run["after"][0][-1], "That is rank 0's running mean")
    rejected(exercises.check_broadcast_running_mean, 10.0, "10% of the way")
    rejected(exercises.check_broadcast_running_mean, 1.0, "does not start step 4 from 0")
    rejected(exercises.check_broadcast_running_mean, 2.5, "DDP has just replaced it")
    rejected(exercises.check_broadcast_running_mean, None, "still None")
    rejected(exercises.check_broadcast_running_mean, "about one", "single finite number")


def chan(a, b):
    (n_a, mean_a, m2_a), (n_b, mean_b, m2_b) = a, b
    n, delta = n_a + n_b, mean_b - mean_a
    return n, mean_a + delta * (n_b / n), m2_a + m2_b + delta ** 2 * (n_a * n_b / n)


def sums_of_squares(a, b):
    """The merge that rebuilds sum x and sum x^2: right in float64, hopeless in float32 at mean 1e4."""
    (n_a, mean_a, m2_a), (n_b, mean_b, m2_b) = a, b
    n, total = n_a + n_b, n_a * mean_a + n_b * mean_b
    squares = m2_a + n_a * mean_a ** 2 + m2_b + n_b * mean_b ** 2
    return n, total / n, squares - total ** 2 / n


def test_chan_merge(capsys):
    exercises.check_chan_merge(chan)
    assert capsys.readouterr().out.startswith("Correct.")
    exercises.check_chan_merge(lambda a, b: chan(*[(n, np.float64(m), np.float64(q)) for n, m, q in (a, b)]))
    check = exercises.check_chan_merge
    rejected(check, sums_of_squares, "float32 at mean 1e4 your M2 is off")
    rejected(check, lambda a, b: (a[0] + b[0], (a[1] + b[1]) / 2, a[2] + b[2]), "weight each mean by its count")
    rejected(check, lambda a, b: (a[0] + b[0], chan(a, b)[1], a[2] + b[2]), "misses the spread between")
    rejected(check, lambda a, b: (a[0] + b[0], chan(a, b)[1], a[2] + b[2] + (b[1] - a[1]) ** 2 * a[0] * b[0]),
             "divide by the merged count")
    rejected(check, lambda a, b: (chan(a, b)[0], chan(a, b)[1], chan(a, b)[2] / chan(a, b)[0]), "That is a variance")
    rejected(check, lambda a, b: (a[0], chan(a, b)[1], chan(a, b)[2]), "merged count is n = n_a \\+ n_b")
    rejected(check, lambda a, b: chan(a, b)[1:], "Return three things")
    rejected(check, lambda a, b: (20, a[1][:1], a[2][:1]), "one value per channel")
    rejected(check, lambda a, b: None, "returned None")
    rejected(check, lambda a, b: 1 / 0, "raised ZeroDivisionError")
    rejected(check, None, "still None")


def ghost_by_reshaping(x, ghost_size):
    ghosts = x.reshape(-1, ghost_size, x.shape[1])
    mean, var = ghosts.mean(1, keepdim=True), ghosts.var(1, unbiased=False, keepdim=True)
    return ((ghosts - mean) / torch.sqrt(var + 1e-5)).reshape(x.shape)


def test_ghost_normalize(capsys):
    exercises.check_ghost_normalize(ghost_by_reshaping)
    assert capsys.readouterr().out.startswith("Correct.")
    check = exercises.check_ghost_normalize

    def interleaved(x, ghost_size):
        ghosts = x.reshape(ghost_size, -1, x.shape[1])
        return ((ghosts - ghosts.mean(0)) / torch.sqrt(ghosts.var(0, unbiased=False) + 1e-5)).reshape(x.shape)

    def unbiased(x, ghost_size):
        ghosts = x.reshape(-1, ghost_size, x.shape[1])
        return ((ghosts - ghosts.mean(1, keepdim=True)) / torch.sqrt(ghosts.var(1, keepdim=True) + 1e-5)).reshape(x.shape)

    rejected(check, lambda x, g: ghost_by_reshaping(x, len(x)), "normalizes the whole batch at once")
    rejected(check, interleaved, "take every third row")
    rejected(check, unbiased, "unbiased variance")
    rejected(check, lambda x, g: ghost_by_reshaping(x, g)[:4], "shape of x")
    rejected(check, lambda x, g: ghost_by_reshaping(x, g) + 0.1, "Per ghost batch and channel")
    rejected(check, None, "still None")


def test_population_fix(capsys):
    grid = device_grid()
    i, j = list(grid["devices"]).index(exercises.FIX_DEVICES), list(grid["skews"]).index(exercises.FIX_SKEW)
    assert grid["accuracy"][i, j] + 0.02 < grid["population_accuracy"][i, j] < grid["sync_accuracy"] - 0.1
    exercises.check_population_fix("part of the way")
    assert "the running statistics were wrong, and so was what the network learned" in capsys.readouterr().out
    rejected(exercises.check_population_fix, "all the way", "Move the explorer")
    rejected(exercises.check_population_fix, "not at all", "Move the explorer")
    rejected(exercises.check_population_fix, "partly", "Answer with one of")
    rejected(exercises.check_population_fix, None, "still None")
