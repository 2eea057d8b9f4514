"""The exercises of notebook 09 accept the solutions and reject blanks and typical mistakes with their hint."""

import numpy as np
import pytest
import torch
from exercise_checks import once, refused, stub

from bnlib.course.ch09.buffers import DEMO, broadcast_run
from bnlib.course.ch09.devices import device_grid
from bnlib.course.ch09 import exercises

RIGHT = 0.9 * (1 - 0.9 ** 3) + 1.0  # rank 2 after step 4: 0.9 x rank 0's after step 3 + 0.1 x 10


@pytest.fixture(scope="module")
def demo_run():
    return broadcast_run(DEMO.replace(means=exercises.BROADCAST_MEANS, steps=exercises.BROADCAST_STEP))


@pytest.fixture(scope="module")
def runs_read_once():
    """The DDP run (three processes) and the device grid are read once for the whole bank."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(exercises, "broadcast_run", once(exercises.broadcast_run))
        patch.setattr(exercises, "device_grid", once(exercises.device_grid))
        yield


@pytest.mark.slow  # the check compares with a run on three processes (cached)
@pytest.mark.parametrize("answer", [RIGHT, np.float64(RIGHT), np.float32(RIGHT), torch.tensor(RIGHT),
                                    round(RIGHT, 9), np.array(RIGHT)])
def test_broadcast_running_mean_accepts_every_form_of_the_value(answer, capsys, runs_read_once):
    exercises.check_broadcast_running_mean(answer)
    assert capsys.readouterr().out.startswith("Correct.")


@pytest.mark.slow
@pytest.mark.parametrize("answer, hint", [
    (10 * (1 - 0.9 ** 4), "what rank 2 would hold on its own"),
    ("rank 0", "That is rank 0's running mean"),
    (10.0, "10% of the way"),
    (1.0, "does not start step 4 from 0"),
    (2.5, "DDP has just replaced it"),
    (RIGHT * 1.01, "DDP has just replaced it"),
    (RIGHT * 0.99, "DDP has just replaced it"),
    (round(RIGHT, 2), "DDP has just replaced it"),
    (0, "DDP has just replaced it"),
    (None, "still None"),
    (float("nan"), "single finite number"),
    (float("inf"), "single finite number"),
    ("about one", "single finite number"),
    ([RIGHT], "single finite number"),
    (True, "single finite number"),
])
def test_broadcast_running_mean_refuses(answer, hint, demo_run, runs_read_once):
    refused(exercises.check_broadcast_running_mean, demo_run["after"][0][-1] if answer == "rank 0" else answer, hint)


def chan(a, b):
    (n_a, mean_a, m2_a), (n_b, mean_b, m2_b) = a, b
    n, delta = n_a + n_b, mean_b - mean_a
    return n, mean_a + delta * (n_b / n), m2_a + m2_b + delta ** 2 * (n_a * n_b / n)


def chan_weighted(a, b):
    """Weights of both counts, the between term as n_a (mean_a - mean)^2 + n_b (mean_b - mean)^2."""
    (n_a, mean_a, m2_a), (n_b, mean_b, m2_b) = a, b
    n = n_a + n_b
    mean = mean_a + (mean_b - mean_a) * n_b / n
    return n, mean, m2_a + m2_b + n_a * (mean_a - mean) ** 2 + n_b * (mean_b - mean) ** 2


def chan_in_torch(a, b):
    (n_a, mean_a, m2_a), (n_b, mean_b, m2_b) = ((n, torch.from_numpy(np.asarray(m)), torch.from_numpy(np.asarray(q)))
                                               for n, m, q in (a, b))
    n = n_a + n_b
    delta = mean_b - mean_a
    return torch.tensor(n), torch.lerp(mean_a, mean_b, n_b / n), m2_a + m2_b + delta.square() * n_a * n_b / n


def sums_of_squares(a, b):
    """The merge that rebuilds sum x and sum x^2: right in float64, hopeless in float32 at mean 1e4."""
    (n_a, mean_a, m2_a), (n_b, mean_b, m2_b) = a, b
    n, total = n_a + n_b, n_a * mean_a + n_b * mean_b
    squares = m2_a + n_a * mean_a ** 2 + m2_b + n_b * mean_b ** 2
    return n, total / n, squares - total ** 2 / n


@pytest.mark.parametrize("answer", [chan, chan_weighted, chan_in_torch,
                                    lambda a, b: chan(*[(n, np.float64(m), np.float64(q)) for n, m, q in (a, b)]),
                                    lambda a, b: list(chan(a, b))])
def test_chan_merge_accepts_every_correct_form(answer, capsys):
    exercises.check_chan_merge(answer)
    assert capsys.readouterr().out.startswith("Correct.")


def delta(a, b):
    return b[1] - a[1]


def merged(a, b, mean=None, m2=None, n=None):
    right = chan(a, b)
    return (right[0] if n is None else n, right[1] if mean is None else mean, right[2] if m2 is None else m2)


def merge_in_place(a, b):
    a[1][:] = chan(a, b)[1]
    return chan(a, b)


@pytest.mark.parametrize("wrong, hint", [
    (sums_of_squares, "float32 at mean 1e4 your M2 is off"),
    (lambda a, b: merged(a, b, mean=(a[1] + b[1]) / 2, m2=a[2] + b[2]), "weight each mean by its count"),
    (lambda a, b: merged(a, b, mean=a[1] + delta(a, b) * a[0] / (a[0] + b[0])), "the OTHER shard's count"),
    (lambda a, b: merged(a, b, mean=a[1] - delta(a, b) * b[0] / (a[0] + b[0])), "delta = mean_b - mean_a"),
    (lambda a, b: merged(a, b, m2=a[2] + b[2]), "misses the spread between"),
    (lambda a, b: merged(a, b, m2=a[2] + b[2] + delta(a, b) ** 2 * a[0] * b[0]), "divide by the merged count"),
    (lambda a, b: merged(a, b, m2=chan(a, b)[2] / chan(a, b)[0]), "That is a variance"),
    (lambda a, b: merged(a, b, m2=chan(a, b)[2] / (chan(a, b)[0] - 1)), "That is a variance"),
    (lambda a, b: merged(a, b, m2=a[2] + b[2] + delta(a, b) * a[0] * b[0] / (a[0] + b[0])), "squares delta"),
    (lambda a, b: merged(a, b, n=a[0]), "merged count is n = n_a + n_b"),
    (lambda a, b: merged(a, b, n=max(a[0], b[0])), "merged count is n = n_a + n_b"),
    (lambda a, b: tuple(np.float32(v) for v in chan(a, b)), "float32"),
])
def test_chan_merge_names_the_mistake(wrong, hint):
    refused(exercises.check_chan_merge, wrong, hint)


def test_chan_merge_is_tried_with_the_larger_shard_first():
    """A merge that holds only when the first shard is the smaller one (7 rows, then 13) is refused."""
    refused(exercises.check_chan_merge, lambda a, b: chan(a, b) if a[0] < b[0] else merged(a, b, n=a[0] + b[0] + 1),
            "merged count")


@pytest.mark.parametrize("hostile, hint", [
    (None, "still None"),
    (stub, "not written yet"),
    (lambda a, b: None, "returned None"),
    (lambda a, b: a, "merged count"),
    (lambda a, b: (20, np.zeros(3), np.ones(3)), "merged mean"),
    (lambda a, b: merged(a, b, m2=chan(a, b)[2] * np.nan), "NaN"),
    (lambda a, b: (float("nan"), chan(a, b)[1], chan(a, b)[2]), "NaN"),
    (lambda a, b: 1 / 0, "raised ZeroDivisionError"),
    (lambda a, b: chan(a, b)[1:], "Return three things"),
    (lambda a, b: (20, a[1][:1], a[2][:1]), "one value per channel"),
    (lambda a, b: ("n", "mean", "m2"), "Return three things"),
    (merge_in_place, "changed its argument 1 (tuple) in place"),
    (chan(*[(1, np.zeros(3), np.zeros(3))] * 2), "Pass your function itself"),
])
def test_chan_merge_refuses_hostile_answers(hostile, hint):
    refused(exercises.check_chan_merge, hostile, hint)


def ghost_by_reshaping(x, ghost_size):
    ghosts = x.reshape(-1, ghost_size, x.shape[1])
    mean, var = ghosts.mean(1, keepdim=True), ghosts.var(1, unbiased=False, keepdim=True)
    return ((ghosts - mean) / torch.sqrt(var + 1e-5)).reshape(x.shape)


def ghost_by_unflatten(x, ghost_size):
    ghosts = x.unflatten(0, (-1, ghost_size))
    var, mean = torch.var_mean(ghosts, dim=1, correction=0, keepdim=True)
    return ((ghosts - mean) * torch.rsqrt(var + 1e-5)).flatten(0, 1)


def ghost_by_functional(x, ghost_size):
    """Ghost batches as channels of one batch norm call: (ghost_size, ghosts * C)."""
    n, c = x.shape
    columns = x.reshape(-1, ghost_size, c).transpose(0, 1).reshape(ghost_size, -1)
    out = torch.nn.functional.batch_norm(columns, None, None, training=True, eps=1e-5)
    return out.reshape(ghost_size, -1, c).transpose(0, 1).reshape(n, c)


def ghost_in_numpy(x, ghost_size):
    ghosts = x.numpy().reshape(-1, ghost_size, x.shape[1])
    return ((ghosts - ghosts.mean(1, keepdims=True)) / np.sqrt(ghosts.var(1, keepdims=True) + 1e-5)).reshape(x.shape)


@pytest.mark.parametrize("answer", [ghost_by_reshaping, ghost_by_unflatten, ghost_by_functional, ghost_in_numpy])
def test_ghost_normalize_accepts_every_correct_form(answer, capsys):
    exercises.check_ghost_normalize(answer)
    assert capsys.readouterr().out.startswith("Correct.")


def interleaved(x, ghost_size):
    ghosts = x.reshape(ghost_size, -1, x.shape[1])
    return ((ghosts - ghosts.mean(0)) / torch.sqrt(ghosts.var(0, unbiased=False) + 1e-5)).reshape(x.shape)


def unbiased(x, ghost_size):
    ghosts = x.reshape(-1, ghost_size, x.shape[1])
    return ((ghosts - ghosts.mean(1, keepdim=True)) / torch.sqrt(ghosts.var(1, keepdim=True) + 1e-5)).reshape(x.shape)


def ghost_in_place(x, ghost_size):
    ghosts = x.view(-1, ghost_size, x.shape[1])
    ghosts -= ghosts.mean(1, keepdim=True)
    return (ghosts / torch.sqrt(ghosts.var(1, unbiased=False, keepdim=True) + 1e-5)).reshape(x.shape)


@pytest.mark.parametrize("wrong, hint", [
    (lambda x, g: ghost_by_reshaping(x, len(x)), "normalizes the whole batch at once"),
    (interleaved, "rows 3 apart"),
    (unbiased, "unbiased variance"),
    (lambda x, g: ghost_by_reshaping(x, 4), "use the ghost_size you are given"),
    (lambda x, g: ghost_by_reshaping(x.float(), g), "float32"),
    (lambda x, g: ghost_by_reshaping(x, g) * 0.99, "Per ghost batch and channel"),
    (lambda x, g: (x - x.view(-1, g, 3).mean(1).repeat_interleave(g, 0)), "Per ghost batch and channel"),
    (None, "still None"),
    (stub, "not written yet"),
    (lambda x, g: None, "returned None"),
    (lambda x, g: x, "Per ghost batch"),
    (lambda x, g: torch.zeros_like(x), "Per ghost batch"),
    (lambda x, g: ghost_by_reshaping(x, g) * float("nan"), "NaN"),
    (lambda x, g: x.reshape(-1, g, 5), "raised RuntimeError"),
    (lambda x, g: ghost_by_reshaping(x, g)[:4], "shape of x"),
    (ghost_in_place, "changed its argument 1 (Tensor) in place"),
    (lambda x, g: {"x": x}, "return numbers"),
])
def test_ghost_normalize_refuses(wrong, hint):
    refused(exercises.check_ghost_normalize, wrong, hint)


@pytest.mark.slow  # the check reads the device grid's runs on MNIST (cached)
def test_population_fix(capsys, runs_read_once):
    grid = device_grid()
    i, j = list(grid["devices"]).index(exercises.FIX_DEVICES), list(grid["skews"]).index(exercises.FIX_SKEW)
    assert grid["accuracy"][i, j] + 0.02 < grid["population_accuracy"][i, j] < grid["sync_accuracy"] - 0.1
    exercises.check_population_fix("part of the way")
    assert "the running statistics were wrong, and so was what the network learned" in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.parametrize("answer, hint", [
    ("all the way", "Move the explorer"), ("not at all", "Move the explorer"), ("partly", "Answer with one of"),
    (None, "still None"), (0.5, "Answer with one of"), (float("nan"), "Answer with one of"),
    (np.float64(1.0), "Answer with one of"),
])
def test_population_fix_refuses(answer, hint, runs_read_once):
    refused(exercises.check_population_fix, answer, hint)
