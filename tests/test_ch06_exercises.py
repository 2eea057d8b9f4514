"""The exercise checks of notebook 06 accept the solutions and refuse blanks and the usual mistakes with a hint."""

import numpy as np
import pytest
import torch
from exercise_checks import once, refused, stub

from bnlib.course import drift
from bnlib.course.ch06 import exercises
from bnlib.running_stats import batch_norm_layers, recompute_population_statistics

pytestmark = pytest.mark.slow  # the checks read the paper run and short runs (computed once, then cached)


@pytest.fixture(autouse=True, scope="module")
def runs_read_once():
    """Each check reads the paper's run from the disk cache and rebuilds its network (seconds); the banks call the
    checks a hundred times, so here both are made once and shared (the checks copy what they hand to an answer).
    After that a check of an answer costs 0.01 to 0.04 s. The first test to read the run (the first correct form of
    the unit drift) pays for it once: about 3 s from the disk cache, or the paper run itself, both networks
    trained (about two minutes), where the cache does not hold it yet for this code, as on a fresh CI machine;
    whichever test asks first pays that, and the other tests that read the run then find it cached."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(exercises.paper, "run_paper_experiment", once(exercises.paper.run_paper_experiment))
        patch.setattr(exercises, "_population_case", once(exercises._population_case))
        yield


def unit_drift(bands, steps, start):
    window = bands[drift.start_index(steps, start):]
    return abs(window[-1, 1] - window[0, 1]) / (window[:, 2] - window[:, 0]).mean()


def drift_from(t0):
    """A unit drift whose t0 is ``t0(steps, start)``."""
    def answer(bands, steps, start):
        window = bands[t0(np.asarray(steps), start):]
        return abs(window[-1, 1] - window[0, 1]) / (window[:, 2] - window[:, 0]).mean()
    return answer


def drift_by_loop(bands, steps, start):
    t0 = next(i for i, step in enumerate(steps) if step >= start)
    widths = [bands[i][2] - bands[i][0] for i in range(t0, len(bands))]
    return torch.tensor(abs(bands[-1][1] - bands[t0][1]) / (sum(widths) / len(widths)))


@pytest.mark.parametrize("answer", [
    unit_drift, drift_by_loop,
    drift_from(lambda steps, start: int(np.searchsorted(steps, start))),
    drift_from(lambda steps, start: int(np.flatnonzero(steps >= start)[0])),
    lambda b, s, st: drift.unit_drifts(b[:, :, None], s, st),
])
def test_unit_drift_accepts_every_correct_form(answer, capsys):
    exercises.check_unit_drift(answer)
    assert capsys.readouterr().out.startswith("Correct.")


T0 = drift.start_index


@pytest.mark.parametrize("wrong, hint", [
    (lambda b, s, st: abs(b[-1, 1] - b[T0(s, st), 1]), "divide it by the unit's band width"),
    (lambda b, s, st: (b[-1, 1] - b[T0(s, st), 1]) / (b[T0(s, st):, 2] - b[T0(s, st):, 0]).mean(), "absolute value"),
    (lambda b, s, st: abs(b[-1, 1] - b[T0(s, st), 1]) / (b[T0(s, st), 2] - b[T0(s, st), 0]), "not only the first"),
    (lambda b, s, st: abs(b[-1, 1] - b[T0(s, st), 1]) / (b[-1, 2] - b[-1, 0]), "not only the last"),
    (lambda b, s, st: abs(b[-1, 1] - b[T0(s, st), 1]) / (b[:, 2] - b[:, 0]).mean(), "from t0 on, not from step 0"),
    (lambda b, s, st: abs(b[-1, 1] - b[0, 1]) / (b[:, 2] - b[:, 0]).mean(), "not at step 0"),
    (lambda b, s, st: abs(b[-1, 1] - b[T0(s, st), 1]) / (b[T0(s, st):, 2] - b[T0(s, st):, 1]).mean(), "p85 - median"),
    (drift_from(lambda steps, start: int(np.searchsorted(steps, start, side="right"))), "t0 is that checkpoint"),
    (drift_from(lambda steps, start: int(np.flatnonzero(steps > start)[0])), "t0 is that checkpoint"),
    (drift_from(lambda steps, start: start // 500), "last checkpoint before"),
    (drift_from(lambda steps, start: list(steps).index(start)), "is no checkpoint"),
    (drift_from(lambda steps, start: int(np.where(steps == start)[0][0])), "is no checkpoint"),
    (lambda b, s, st: np.float32(unit_drift(b.astype(np.float32), s, st)), "float32"),
])
def test_unit_drift_names_the_mistake(wrong, hint):
    refused(exercises.check_unit_drift, wrong, hint)


@pytest.mark.parametrize("hostile, hint", [
    (None, "still None"),
    (stub, "not written yet"),
    (lambda bands, steps, start: None, "returned None"),
    (lambda bands, steps, start: bands, "one number"),
    (lambda bands, steps, start: np.nan, "NaN"),
    (lambda bands, steps, start: 0.5, "drift = |median(T)"),
    (drift_from(lambda steps, start: start), "IndexError"),
    (lambda bands, steps, start: bands.fill(0.0) or 0.5, "changed its argument 1 (ndarray) in place"),
    (lambda bands, steps, start: (steps.fill(0), 0.5)[1], "changed its argument 2 (ndarray) in place"),
    (lambda bands, steps, start: {"drift": 0.5}, "return numbers"),
    (lambda bands, steps, start: bands[len(bands)], "IndexError"),
])
def test_unit_drift_refuses_hostile_answers(hostile, hint):
    refused(exercises.check_unit_drift, hostile, hint)


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


def with_the_library(model, batches):
    last = batch_norm_layers(recompute_population_statistics(model, batches))[-1]
    return last.running_mean, last.running_var


def with_unbiased_batch_variances(model, batches):
    model.train()
    with torch.no_grad():
        inputs = [model[:7](batch).double() for batch in batches]
    return (np.mean([z.mean(0).numpy() for z in inputs], axis=0),
            np.mean([z.var(0).numpy() for z in inputs], axis=0))  # var(0) is unbiased: m/(m-1) already in


def with_sums(model, batches):
    for layer in model.modules():
        layer.training = True
    total, squares, m = 0, 0, len(batches[0])
    with torch.no_grad():
        for batch in batches:
            z = model[:7](batch).double()
            total = total + z.sum(0) / m
            squares = squares + ((z - z.mean(0)) ** 2).sum(0) / (m - 1)
    return [total / len(batches), squares / len(batches)]


@pytest.mark.parametrize("answer", [algorithm2_statistics, with_the_library, with_unbiased_batch_variances,
                                    with_sums])
def test_population_statistics_accepts_every_correct_form(answer, capsys):
    exercises.check_population_statistics(answer)
    assert capsys.readouterr().out.startswith("Correct.")


def corrected_twice(model, batches):
    model.train()
    with torch.no_grad():
        inputs = [model[:7](batch) for batch in batches]
    m = len(batches[0])
    return torch.stack([z.mean(0) for z in inputs]).mean(0), torch.stack([z.var(0) for z in inputs]).mean(0) * m / (m - 1)


@pytest.mark.parametrize("wrong, hint", [
    (lambda m, b: algorithm2_statistics(m, b, unbiased=False), "unbiased variance"),
    (corrected_twice, "in twice"),
    (lambda m, b: algorithm2_statistics(m, b, pooled=True), "pooled"),
    (lambda m, b: algorithm2_statistics(m, b, train_mode=False), "model.train()"),
    (lambda m, b: algorithm2_statistics(m, b, layer_end=1), "first BN layer"),
    (lambda m, b: algorithm2_statistics(m, b, layer_end=4), "second BN layer"),
    (lambda m, b: algorithm2_statistics(m, b, layer_end=8), "last BN layer's output"),
    (lambda m, b: (batch_norm_layers(m)[-1].running_mean, batch_norm_layers(m)[-1].running_var), "Per batch"),
])
def test_population_statistics_names_the_mistake(wrong, hint):
    refused(exercises.check_population_statistics, wrong, hint)


def edits_the_batches(model, batches):
    for batch in batches:
        batch.sub_(batch.mean())
    return algorithm2_statistics(model, batches)


@pytest.mark.parametrize("hostile, hint", [
    (None, "still None"),
    (stub, "not written yet"),
    (lambda model, batches: None, "returned None"),
    (lambda model, batches: 3.0, "pair (mean, var)"),
    (lambda model, batches: batches, "pair (mean, var)"),
    (lambda model, batches: (torch.zeros(100), torch.ones(100)), "Per batch"),
    (lambda model, batches: (torch.zeros(100), torch.full((100,), float("nan"))), "NaN"),
    (lambda m, b: tuple(value[:50] for value in algorithm2_statistics(m, b)), "100 units"),
    (edits_the_batches, "changed its argument 2 (list) in place"),
    (lambda model, batches: (model(batches), None), "TypeError"),
])
def test_population_statistics_refuses_hostile_answers(hostile, hint):
    refused(exercises.check_population_statistics, hostile, hint)


def replay(batch_means, momentum, start=None):
    running, history = (np.zeros(batch_means.shape[1]) if start is None else start), []
    for mu in batch_means:
        running = (1 - momentum) * running + momentum * mu
        history.append(running)
    return np.array(history)


def replay_preallocated(batch_means, momentum):
    out = np.zeros_like(batch_means)
    running = np.zeros(batch_means.shape[1])
    for t in range(len(batch_means)):
        running += momentum * (batch_means[t] - running)
        out[t] = running
    return out


def replay_with_a_module(batch_means, momentum):
    """A BatchNorm1d's own update: lerp_ toward each batch mean, in place on its buffer (a copy is kept)."""
    running, history = torch.zeros(batch_means.shape[1], dtype=torch.float64), []
    for mu in torch.from_numpy(batch_means):
        running.lerp_(mu, momentum)
        history.append(running.clone())
    return torch.stack(history)


def replay_closed_form(batch_means, momentum):
    t = np.arange(1, len(batch_means) + 1)
    weights = momentum * (1 - momentum) ** (t[:, None] - t[None, :]) * (t[:, None] >= t[None, :])
    return weights @ batch_means


@pytest.mark.parametrize("answer", [replay, replay_preallocated, replay_with_a_module, replay_closed_form])
def test_replay_accepts_every_correct_form(answer, capsys):
    exercises.check_replay(answer)
    assert capsys.readouterr().out.startswith("Correct.")


def replay_appending_one_array(batch_means, momentum):
    running, history = np.zeros(batch_means.shape[1]), []
    for mu in batch_means:
        running *= 1 - momentum
        running += momentum * mu
        history.append(running)
    return np.array(history)


@pytest.mark.parametrize("wrong, hint", [
    (lambda means, m: replay(means, 1 - m), "Keras convention"),
    (lambda means, m: np.concatenate([means[:1], replay(means[1:], m, means[0])]), "starts running_mean at 0"),
    (lambda means, m: replay(means, m, means[0]), "starts running_mean at 0"),
    (lambda means, m: np.concatenate([np.zeros_like(means[:1]), replay(means, m)[:-1]]), "one step late"),
    (lambda means, m: replay(means, m) / (1 - (1 - m) ** np.arange(1, len(means) + 1)[:, None]), "bias-corrected"),
    (lambda means, m: np.cumsum(means, axis=0) / np.arange(1, len(means) + 1)[:, None], "cumulative average"),
    (replay_appending_one_array, "same array"),
    (lambda means, m: replay(means.astype(np.float32), np.float32(m)), "float32"),
])
def test_replay_names_the_mistake(wrong, hint):
    refused(exercises.check_replay, wrong, hint)


def replay_in_place(batch_means, momentum):
    running = np.zeros(batch_means.shape[1])
    for t in range(len(batch_means)):
        running = (1 - momentum) * running + momentum * batch_means[t]
        batch_means[t] = running
    return batch_means


@pytest.mark.parametrize("hostile, hint", [
    (None, "still None"),
    (stub, "not written yet"),
    (lambda means, m: None, "returned None"),
    (lambda means, m: means, "Start from running = 0"),
    (lambda means, m: np.zeros_like(means), "Start from running = 0"),
    (lambda means, m: means * np.nan, "NaN"),
    (lambda means, m: replay(means, m)[-1], "one row per step"),
    (lambda means, m: replay(means, m).T, "one row per step"),
    (replay_in_place, "changed its argument 1 (ndarray) in place"),
    (lambda means, m: replay(means, m) * 0.5, "keep a copy of every step"),
    (lambda means, m: means[len(means)], "IndexError"),
])
def test_replay_refuses_hostile_answers(hostile, hint):
    refused(exercises.check_replay, hostile, hint)


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
