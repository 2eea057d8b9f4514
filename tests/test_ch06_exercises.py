"""The exercise checks of notebook 06 accept the solutions and refuse blanks and the usual mistakes with a hint."""

import numpy as np
import pytest
import torch
from exercise_checks import refused, stub

from bnlib.course import drift
from bnlib.course.ch06 import exercises

pytestmark = pytest.mark.slow  # the checks read the paper run and short runs (computed once, then cached)


def unit_drift(bands, steps, start):
    window = bands[drift.start_index(steps, start):]
    return abs(window[-1, 1] - window[0, 1]) / (window[:, 2] - window[:, 0]).mean()


def test_unit_drift(capsys):
    exercises.check_unit_drift(unit_drift)
    assert capsys.readouterr().out.startswith("Correct.")
    refused(exercises.check_unit_drift, None, "still None")
    refused(exercises.check_unit_drift, stub, "not written yet")
    refused(exercises.check_unit_drift, lambda bands, steps, start: None, "returned None")
    refused(exercises.check_unit_drift, lambda bands, steps, start: bands, "one number")
    t0 = lambda steps, start: drift.start_index(steps, start)  # noqa: E731
    refused(exercises.check_unit_drift,
            lambda b, s, st: abs(b[-1, 1] - b[t0(s, st), 1]), "divide it by the unit's band width")
    refused(exercises.check_unit_drift,
            lambda b, s, st: (b[-1, 1] - b[t0(s, st), 1]) / (b[t0(s, st):, 2] - b[t0(s, st):, 0]).mean(),
            "absolute value")
    refused(exercises.check_unit_drift,
            lambda b, s, st: abs(b[-1, 1] - b[t0(s, st), 1]) / (b[t0(s, st), 2] - b[t0(s, st), 0]),
            "not only the first one")
    refused(exercises.check_unit_drift, lambda b, s, st: abs(b[-1, 1] - b[0, 1]) / (b[:, 2] - b[:, 0]).mean(),
            "not at step 0")


def algorithm2_statistics(model, batches, layer_end=7, train_mode=True, unbiased=True, pooled=False):
    model.train(train_mode)
    with torch.no_grad():
        inputs = [model[:layer_end](batch) for batch in batches]
    m = len(batches[0])
    if pooled:
        everything = torch.cat(inputs)
        return everything.mean(0), everything.var(0)
    variance = torch.stack([z.var(0, unbiased=False) for z in inputs]).mean(0)
    return torch.stack([z.mean(0) for z in inputs]).mean(0), variance * (m / (m - 1) if unbiased else 1)


def test_population_statistics(capsys):
    exercises.check_population_statistics(algorithm2_statistics)
    assert capsys.readouterr().out.startswith("Correct.")
    refused(exercises.check_population_statistics, None, "still None")
    refused(exercises.check_population_statistics, stub, "not written yet")
    refused(exercises.check_population_statistics, lambda model, batches: 3.0, "pair (mean, var)")
    refused(exercises.check_population_statistics, lambda m, b: algorithm2_statistics(m, b, unbiased=False),
            "unbiased variance")
    refused(exercises.check_population_statistics, lambda m, b: algorithm2_statistics(m, b, pooled=True),
            "pooled")
    refused(exercises.check_population_statistics, lambda m, b: algorithm2_statistics(m, b, train_mode=False),
            "model.train()")
    refused(exercises.check_population_statistics, lambda m, b: algorithm2_statistics(m, b, layer_end=1),
            "first BN layer")
    refused(exercises.check_population_statistics,
            lambda m, b: tuple(value[:50] for value in algorithm2_statistics(m, b)), "100 units")


def replay(batch_means, momentum, start=None):
    running, history = (np.zeros(batch_means.shape[1]) if start is None else start), []
    for mu in batch_means:
        running = (1 - momentum) * running + momentum * mu
        history.append(running)
    return np.array(history)


def test_replay(capsys):
    exercises.check_replay(replay)
    assert capsys.readouterr().out.startswith("Correct.")
    refused(exercises.check_replay, None, "still None")
    refused(exercises.check_replay, stub, "not written yet")
    refused(exercises.check_replay, lambda means, m: replay(means, 1 - m), "Keras convention")
    refused(exercises.check_replay, lambda means, m: np.concatenate([means[:1], replay(means[1:], m, means[0])]),
            "starts running_mean at 0")
    refused(exercises.check_replay, lambda means, m: replay(means, m)[-1], "one row per step")
    refused(exercises.check_replay, lambda means, m: replay(means, m) * 0.5, "keep a copy of every step")


def test_drift_at_batch_two(capsys):
    exercises.check_drift_at_batch_two("more")
    assert capsys.readouterr().out.startswith("Correct.")
    refused(exercises.check_drift_at_batch_two, None, "still None")
    refused(exercises.check_drift_at_batch_two, "less", "batch-size explorer")
    refused(exercises.check_drift_at_batch_two, "a lot", "one of")


def test_slow_momentum(capsys):
    exercises.check_slow_momentum("lower")
    assert capsys.readouterr().out.startswith("Correct.")
    refused(exercises.check_slow_momentum, None, "still None")
    refused(exercises.check_slow_momentum, "about the same", "momentum explorer")
    refused(exercises.check_slow_momentum, "worse", "one of")


def test_the_predictions_expected_answers_come_from_the_runs_with_margin():
    """The expected answers are computed from the runs; they hold with room to spare (factor 1.5, 2 points)."""
    running, population = exercises._slow_momentum_accuracies()
    assert running < population - 0.1
    assert exercises._compare(1.0, 2.0) == "more" and exercises._compare(2.0, 1.0) == "less"
    assert exercises._compare(1.0, 1.2) == "about the same"
