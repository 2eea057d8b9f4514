"""Checks for notebook 06, the paper's MNIST experiment: one unit's drift, Algorithm 2 by hand, the replay of
the running mean, and two predictions checked against the runs themselves."""

import copy

import numpy as np
import torch

from bnlib.course import drift
from bnlib.course.ch06 import paper
from bnlib.course.ch06.checkpoints import checkpoint_model
from bnlib.course.checks import NotYet, call, check, check_choice, check_close, not_yet, passed
from bnlib.course.training import accuracy, mnist
from bnlib.running_stats import batch_norm_layers, recompute_population_statistics, replay_ema

DRIFT_START = int(paper.DRIFT_START * paper.PAPER.steps)  # step 5,000, as in findings(): a checkpoint
DRIFT_STARTS = (DRIFT_START, DRIFT_START + 2_250)            # and step 7,250, between two checkpoints (every 500)
DRIFT_UNITS = ((0, 3), (1, 17), (0, 58), (1, 91))            # (network, unit): both networks, a few units
POPULATION_STEP, POPULATION_EXAMPLES = 1_000, 6_000           # the checkpoint and the training images used
REPLAY_STEPS, REPLAY_MOMENTUM = 500, 0.05
SLOW_MOMENTUM, SLOW_STEP = 0.001, 1_000


def _drift_mistakes(bands, steps, start):
    """(what a common mistake computes for one unit's drift from ``start``; its hint)."""
    t0 = drift.start_index(steps, start)
    median, width = bands[:, 1], bands[:, 2] - bands[:, 0]
    moved = median[-1] - median[t0]
    mistakes = [
        (abs(moved), "That is how far the median moved; divide it by the unit's band width (p85 - p15)."),
        (moved / width[t0:].mean(), "A drift is a distance: take the absolute value of the median's move."),
        (abs(moved) / width[t0], "Average the band width over every checkpoint from t0 to the end, not only the "
                                 "first one."),
        (abs(moved) / width[-1], "Average the band width over every checkpoint from t0 to the end, not only the "
                                 "last one."),
        (abs(moved) / width.mean(), "Average the band width over the checkpoints from t0 on, not from step 0."),
        (abs(median[-1] - median[0]) / width.mean(), "Start at the first checkpoint at or after step `start` "
                                                     "(drift.start_index), not at step 0."),
        (abs(moved) / (bands[t0:, 2] - bands[t0:, 1]).mean(), "The band is p85 - p15 (columns 2 and 0), not p85 - "
                                                              "median."),
    ]
    for shift, hint in ((-1, "You started at the last checkpoint before step `start`: t0 is the first one at or "
                              "after it."),
                        (1, "You started one checkpoint after t0: when step `start` is a checkpoint, t0 is that "
                            "checkpoint (at or after).")):
        if 0 <= t0 + shift < len(steps) - 1:
            window = bands[t0 + shift:]
            mistakes.append((abs(window[-1, 1] - window[0, 1]) / (window[:, 2] - window[:, 0]).mean(), hint))
    return mistakes


@check
def check_unit_drift(unit_drift):
    """``unit_drift(bands, steps, start)``: one unit's drift from its (checkpoints, 3) percentiles, from a start
    that is a checkpoint and from one between two checkpoints."""
    __tracebackhide__ = True  # noqa: F841
    run = paper.run_paper_experiment(progress=False)
    steps = run["steps"]
    for start in DRIFT_STARTS:
        for net, unit in DRIFT_UNITS:
            bands = run["percentiles"][:, net, :, unit].astype(np.float64)  # (checkpoints, 3): p15, p50, p85
            try:
                answer = call(unit_drift, bands, steps, start)
            except NotYet as refusal:
                if start in steps or not isinstance(refusal.__cause__, (ValueError, IndexError, KeyError)):
                    raise
                raise NotYet(f"{refusal} (start = {start:,} is no checkpoint: t0 is the first checkpoint at or after "
                             "it.)") from refusal.__cause__
            if answer.size != 1:
                not_yet(f"Return one number, the unit's drift (got an array of shape {answer.shape}).")
            check_close(answer.reshape(()), drift.unit_drifts(bands[:, :, None], steps, start)[0], None,
                        "drift = |median(T) - median(t0)| / (p85 - p15 averaged over the checkpoints t0..T), with "
                        "t0 the first checkpoint at or after step `start` (a step, not an index); `bands[:, 1]` "
                        "holds the medians.", _drift_mistakes(bands, steps, start))
    passed("The median's move in band widths: 1 would mean it moved by a whole 15-85 band.")


def _population_case():
    """The BN network at step ``POPULATION_STEP`` and batches of 60 of the first training images."""
    run = paper.run_paper_experiment(progress=False)
    model = checkpoint_model(run, list(run["steps"]).index(POPULATION_STEP))
    images, _ = mnist(train=True)
    return model, list(images[:POPULATION_EXAMPLES].split(paper.PAPER.batch_size))


def _layer_inputs(model, batches, upto=7, train_mode=True):
    """The input of a BN layer (``model[:upto]``; 7 for the last one) for each batch, float64."""
    model = copy.deepcopy(model).train(train_mode)
    with torch.no_grad():
        return [model[:upto](batch).double() for batch in batches]


def _algorithm2(inputs, unbiased=True):
    """(E[mu_B], m/(m-1) E[sigma_B^2]) over the batches' inputs; the plain E[sigma_B^2] if not ``unbiased``."""
    m = len(inputs[0])
    mean = torch.stack([z.mean(0) for z in inputs]).mean(0)
    var = torch.stack([z.var(0, unbiased=False) for z in inputs]).mean(0) * (m / (m - 1) if unbiased else 1)
    return np.stack([mean.numpy(), var.numpy()])


def _as_pair(value):
    if value is None:
        return None
    try:
        mean, var = value
    except (TypeError, ValueError):
        raise ValueError("return a pair (mean, var), two arrays of 100 values") from None
    return np.stack([np.asarray(torch.as_tensor(v).detach(), dtype=np.float64) for v in (mean, var)])


@check
def check_population_statistics(population_statistics):
    """``population_statistics(model, batches) -> (mean, var)``: Algorithm 2 for the last BN layer's input."""
    __tracebackhide__ = True  # noqa: F841
    if not callable(population_statistics):
        call(population_statistics)  # refused with the shared message: not answered, or not a function
    model, batches = _population_case()
    answer = call(lambda *args: _as_pair(population_statistics(*args)), copy.deepcopy(model), batches,
                  may_change=(0,))  # running the network in train mode moves its running statistics: allowed
    if answer.shape != (2, 100):
        not_yet(f"Return (mean, var) for the 100 units of the last BN layer; got shape {answer.shape[1:]} each.")
    reference = batch_norm_layers(recompute_population_statistics(copy.deepcopy(model), batches))[-1]
    expected = np.stack([reference.running_mean.double().numpy(), reference.running_var.double().numpy()])
    m = len(batches[0])
    check_close(answer, expected, "E[mu_B] and m/(m-1) E[sigma_B^2] over the batches, the frozen network run as in "
                                  "training.",
                "Per batch: z = model[:7](batch) in train mode, its mean and biased variance over the batch; then "
                f"average both over the batches and multiply the variance by m/(m-1) = {m}/{m - 1}.",
                _population_mistakes(model, batches), rtol=1e-4, atol=1e-6 * np.abs(expected).max())


def _population_mistakes(model, batches):
    """(what a common mistake computes, computed only when asked; its hint) for Algorithm 2 by hand."""
    m = len(batches[0])

    def pooled(unbiased):
        z = torch.cat(_layer_inputs(model, batches))
        return np.stack([z.mean(0).numpy(), z.var(0, unbiased=unbiased).numpy()])

    def corrected_twice():
        mean, var = _algorithm2(_layer_inputs(model, batches))
        return np.stack([mean, var * m / (m - 1)])

    return [
        (lambda: _algorithm2(_layer_inputs(model, batches), unbiased=False),
         f"Algorithm 2 stores the unbiased variance: m/(m-1) = {m}/{m - 1} times the average of the batch variances."),
        (corrected_twice, "The factor m/(m-1) is in twice: the unbiased variance of each batch (torch's default "
                          "var) already holds it."),
        (lambda: pooled(True), "Average the per-batch variances sigma_B^2: the variance of all the examples pooled "
                               "also counts how the batch means scatter."),
        (lambda: pooled(False), "Average the per-batch variances sigma_B^2 (times m/(m-1)), not the variance of the "
                                "pooled examples."),
        (lambda: _algorithm2(_layer_inputs(model, batches, train_mode=False)),
         "Run the batches as in training (model.train()): the earlier BN layers must normalize each batch with "
         "its own statistics, not with running averages."),
        (lambda: _algorithm2(_layer_inputs(model, batches, upto=1)),
         "Those are the statistics of the first BN layer's input; the exercise asks for the last one, model[:7]."),
        (lambda: _algorithm2(_layer_inputs(model, batches, upto=4)),
         "Those are the statistics of the second BN layer's input; the exercise asks for the last one, model[:7]."),
        (lambda: _algorithm2(_layer_inputs(model, batches, upto=8)),
         "Those are the statistics of the last BN layer's output; the exercise asks for its input, model[:7]."),
    ]


def _replay_mistakes(values, m):
    """(what a common mistake returns for the replayed running mean; its hint)."""
    expected = replay_ema(values, m, 0.0)
    steps = np.arange(1, len(values) + 1)[:, None]
    return [
        (replay_ema(values, 1 - m, 0.0), "That is the Keras convention: in PyTorch momentum is the weight of the "
                                         "NEW batch, running = (1 - m) running + m batch."),
        (np.concatenate([values[:1], replay_ema(values[1:], m, values[0])]),
         "torch starts running_mean at 0, not at the first batch's mean."),
        (replay_ema(values, m, values[0]), "torch starts running_mean at 0, not at the first batch's mean."),
        (np.concatenate([np.zeros_like(values[:1]), expected[:-1]]),
         "Each row is one step late: record the running mean after that step's update, not before."),
        (expected / (1 - (1 - m) ** steps), "That is Adam's bias-corrected average: BatchNorm1d keeps the plain "
                                            "running mean, which starts at 0 and is not divided by 1 - (1 - m)^t."),
        (np.cumsum(values, axis=0) / steps, "That is the cumulative average of the batch means (momentum=None); "
                                            "use the momentum you are given."),
        (np.repeat(expected[-1:], len(values), axis=0), "Every row holds the last step's value: you appended the "
                                                        "same array each time and changed it in place; keep a copy."),
    ]


@check
def check_replay(replay_running_mean):
    """``replay_running_mean(batch_means, momentum)``: the running mean after each step, from 0."""
    __tracebackhide__ = True  # noqa: F841
    run = paper.run_paper_experiment(progress=False)
    values = run["batch_mean"][:REPLAY_STEPS, 2].astype(np.float64)  # (steps, 100), the last BN layer
    answer = call(replay_running_mean, values, REPLAY_MOMENTUM)
    if answer.shape != values.shape:
        not_yet(f"Return the running mean after every step, one row per step: shape {values.shape}, "
                f"got {answer.shape}.")
    check_close(answer, replay_ema(values, REPLAY_MOMENTUM, 0.0),
                "running = (1 - m) running + m mu_B, from 0: what BatchNorm1d keeps, replayed after training.",
                "Start from running = 0; for each step t: running = (1 - momentum) * running + momentum * "
                "batch_means[t], and keep a copy of every step's value.", _replay_mistakes(values, REPLAY_MOMENTUM))


def _compare(low, high, ratio=1.5):
    """"more" when ``high`` exceeds ``low`` by a factor ``ratio``, "less" the other way, else "about the same"."""
    if high > ratio * low:
        return "more"
    if low > ratio * high:
        return "less"
    return "about the same"


def check_drift_at_batch_two(prediction):
    """``prediction``: does the BN network drift "more", "less" or "about the same" at batch 2 as at 60?"""
    __tracebackhide__ = True  # noqa: F841
    usual = paper.PAPER.batch_size
    drifts = {size: paper.findings(paper.run_paper_experiment(paper.SHORT_RUN.replace(batch_size=size),
                                                              progress=False))["drift"]["batch norm"]
              for size in (2, usual)}
    check_choice(prediction, _compare(drifts[usual], drifts[2]), ("more", "less", "about the same"),
                 f"With BN, the drift at batch 2 is {drifts[2] / drifts[usual]:.0f} times the drift at batch 60: each "
                 "unit's normalized value is +-1, and the network keeps chasing it.",
                 "Move the batch-size explorer to 2 and to 60 and compare the BN network's drift in its readout.")


def _slow_momentum_accuracies():
    """Test accuracy at step ``SLOW_STEP`` with momentum-``SLOW_MOMENTUM`` running averages and with Algorithm 2."""
    run = paper.run_paper_experiment(progress=False)
    test_images, test_labels = mnist(train=False)
    train_images, _ = mnist(train=True)
    model = checkpoint_model(run, list(run["steps"]).index(SLOW_STEP), momentum=SLOW_MOMENTUM)
    running = accuracy(model, test_images, test_labels)
    recompute_population_statistics(model, train_images.split(paper.PAPER.batch_size))
    return running, accuracy(model, test_images, test_labels)


def check_slow_momentum(prediction):
    """``prediction``: at step 1,000, is the accuracy with momentum 0.001 "lower", "higher" or "about the same"
    as with Algorithm 2's statistics?"""
    __tracebackhide__ = True  # noqa: F841

    def expected():  # a network evaluated three times: only for an answer to compare
        running, population = _slow_momentum_accuracies()
        return "lower" if running < population - 0.02 else "higher" if running > population + 0.02 else \
            "about the same"

    check_choice(prediction, expected, ("lower", "higher", "about the same"),
                 "Momentum 0.001 averages over about 1,000 steps, most of them taken by a network that has "
                 "since changed: its statistics are stale.",
                 "Set the momentum explorer to 0.001 and compare its running-average and Algorithm 2 curves early "
                 "in training.")
