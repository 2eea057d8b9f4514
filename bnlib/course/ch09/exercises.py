"""Checks for notebook 09, batch norm across devices: DDP's buffers, Chan's merge, ghost batches, and what
population statistics can and cannot repair. The constants are the questions' data."""

import numpy as np
import torch

from bnlib.course.ch09.buffers import DEMO, broadcast_run
from bnlib.course.ch09.devices import device_grid
from bnlib.course.checks import (as_array, call, check, check_choice, check_close, check_value, not_yet, passed,
                                 run)
from bnlib.layers import BatchNorm1d
from bnlib.sync import chan_merge

BROADCAST_MEANS, BROADCAST_RANK, BROADCAST_STEP = (1.0, 4.0, 10.0), 2, 4  # 3 ranks; rank 2 after step 4
GHOST_SIZE = 4
GHOST_SIZES = (GHOST_SIZE, 3, 6)  # the statement's, and others that divide the batch of 12
FIX_DEVICES, FIX_SKEW = 10, 1.0
FIX_CHOICES = ("all the way", "part of the way", "not at all")


def check_broadcast_running_mean(answer):
    """``answer``: rank ``BROADCAST_RANK``'s running mean after step ``BROADCAST_STEP`` of a run on three ranks."""
    run = broadcast_run(DEMO.replace(means=BROADCAST_MEANS, steps=BROADCAST_STEP))
    rank, last = BROADCAST_RANK, BROADCAST_STEP - 1
    own = BROADCAST_MEANS[rank]
    check_value(
        answer, run["after"][rank][last],
        "At every forward DDP hands rank 2 rank 0's running mean; rank 2's batch then moves it one step: "
        "0.9 x (rank 0's after step 3) + 0.1 x 10.",
        [(run["without_ddp"][rank][last], ("That is what rank 2 would hold on its own. DDP overwrites its buffer "
                                           "with rank 0's at the start of every forward pass.")),
         (run["after"][0][last], ("That is rank 0's running mean. Rank 2 starts each step from it, then its own "
                                  "batch (mean 10) moves its copy one step.")),
         (own, "The running mean moves only 10% of the way towards a batch's mean per step."),
         (0.1 * own, "Rank 2 does not start step 4 from 0: it starts from rank 0's running mean after step 3.")],
        "Where does rank 2's running mean stand when its forward pass starts? DDP has just replaced it by rank 0's "
        "(rank 0 sees batches of mean 1).", rel_tol=1e-6)


def shard_statistics(x):
    """``(n, mean, m2)`` of the rows of ``x``: count, per-column mean and sum of squared deviations."""
    return len(x), x.mean(0), ((x - x.mean(0)) ** 2).sum(0)


def merged_by(merge, a, b):
    """``merge(a, b)`` as ``(n, mean, m2)`` in float64; an answer that cannot be used (or holds NaN) becomes a
    ``NotYet``."""
    __tracebackhide__ = True
    value = run(merge, a, b, returns="(n, mean, m2)")
    try:
        n, mean, m2 = value
        n = float(n)
    except (TypeError, ValueError):
        not_yet(f"Return three things, (n, mean, m2): a count and two arrays; got {type(value).__name__}.")
    n, mean, m2 = as_array(n), as_array(mean), as_array(m2)
    if mean.shape != a[1].shape or m2.shape != a[1].shape:
        not_yet(f"mean and m2 hold one value per channel, shape {a[1].shape}; got {mean.shape} and {m2.shape}.")
    return float(n), mean, m2


def _merge_in_float64(merge, x, rows):
    """The learner's merge of the shards ``x[:rows]`` and ``x[rows:]`` against the whole batch's statistics."""
    __tracebackhide__ = True
    a, b = shard_statistics(x[:rows]), shard_statistics(x[rows:])
    n, mean, m2 = merged_by(merge, a, b)
    whole = shard_statistics(x)
    delta = b[1] - a[1]
    if n != whole[0]:
        not_yet("The merged count is n = n_a + n_b.")
    check_close(mean, whole[1], None, "The merged mean is mean_a + delta n_b / n, with delta = mean_b - mean_a.", [
        ((a[1] + b[1]) / 2, f"The two shards hold {a[0]} and {b[0]} rows: weight each mean by its count (or step "
                            "from mean_a towards mean_b by n_b / n)."),
        (a[1] + delta * a[0] / whole[0], "Step from mean_a by delta n_b / n: the weight of the OTHER shard's count "
                                         "(with n_a / n you weigh each mean by the wrong count)."),
        (a[1] - delta * b[0] / whole[0], "delta = mean_b - mean_a: the merged mean lies between the two, "
                                         "mean_a + delta n_b / n."),
    ], rtol=1e-10, atol=1e-12)
    check_close(m2, whole[2], None, "M2 = M2_a + M2_b + delta^2 n_a n_b / n, with delta = mean_b - mean_a.", [
        (a[2] + b[2], "M2_a + M2_b misses the spread between the two shards' means: add delta^2 n_a n_b / n."),
        (a[2] + b[2] + delta ** 2 * a[0] * b[0], "Close: the between-shards term is delta^2 n_a n_b / n (divide by "
                                                 "the merged count)."),
        (whole[2] / n, "That is a variance; return M2, the sum of squared deviations from the merged mean."),
        (whole[2] / (n - 1), "That is a variance; return M2, the sum of squared deviations from the merged mean."),
        (a[2] + b[2] + delta * a[0] * b[0] / n, "The between-shards term squares delta: delta^2 n_a n_b / n."),
    ], rtol=1e-10, atol=1e-12)


@check
def check_chan_merge(merge):
    """``merge((n_a, mean_a, m2_a), (n_b, mean_b, m2_b)) -> (n, mean, m2)``, checked on a float64 batch split
    unevenly both ways (7 and 13 rows, 13 and 7), then in float32 on data of mean 1e4 and spread 1e-2. An empty
    shard is not tried: the statement's shards have rows (the mean of none is undefined)."""
    __tracebackhide__ = True
    if not callable(merge):
        call(merge)
    x = np.random.default_rng(9).normal([3.0, -1.0, 0.5], [2.0, 0.1, 1.0], size=(20, 3))
    for rows in (7, 13):
        _merge_in_float64(merge, x, rows)
    x = 1e4 + 1e-2 * np.random.default_rng(10).standard_normal((1000, 4))
    a, b = ((n_, mean_.astype(np.float32), m2_.astype(np.float32)) for n_, mean_, m2_ in
            (shard_statistics(x[:400]), shard_statistics(x[400:])))
    _, mean, m2 = merged_by(merge, a, b)
    whole = shard_statistics(x)
    reference = np.asarray(chan_merge([a[0], b[0]], [torch.tensor(np.stack(s[1:])) for s in (a, b)])[1])
    allowed = 2 * np.abs(reference - whole[2]) + 1e-6 * whole[2]  # Chan's merge in float32, with room to spare
    if np.any(np.abs(m2 - whole[2]) > allowed):
        not_yet("Right in float64, but in float32 at mean 1e4 your M2 is off by up to "
                f"{np.max(np.abs(m2 / whole[2] - 1)):.1g} times its true value: rebuilding sums of squares "
                "(M2 + n mean^2, about 1e11) and subtracting cancels every digit of a spread of 1e-2. Work with delta = mean_b - mean_a.")
    if np.any(np.abs(mean - whole[1]) > 2e-3):
        not_yet("Right in float64, but in float32 at mean 1e4 your merged mean is off: step from mean_a by "
                "delta n_b / n rather than adding up n_a mean_a + n_b mean_b.")
    passed("Counts add, the mean moves by delta n_b / n, and M2 gains delta^2 n_a n_b / n; nothing large is "
           "subtracted, so float32 at mean 1e4 keeps its precision.")


def ghost_batch(seed=11):
    """The batch of the ghost exercise: 12 examples, 3 channels, float64, each ghost batch of 4 different."""
    generator = torch.Generator().manual_seed(seed)
    shifts = torch.tensor([[0.0], [5.0], [-3.0]], dtype=torch.float64).repeat_interleave(GHOST_SIZE, 0)
    return torch.randn(12, 3, generator=generator, dtype=torch.float64) + shifts


def _standardized(groups, axis, unbiased=False):
    return (groups - groups.mean(axis, keepdim=True)) / torch.sqrt(groups.var(axis, unbiased=unbiased, keepdim=True)
                                                                   + 1e-5)


@check
def check_ghost_normalize(ghost_normalize):
    """``ghost_normalize(x, ghost_size)``: each run of ``ghost_size`` rows of x normalized with its own mean
    and biased variance (eps 1e-5), no gamma, beta: ``bnlib.BatchNorm1d`` run on each ghost batch. Tried with
    ghost sizes 4, 3 and 6; a size that does not divide the batch is not (the statement reshapes the batch into
    ghost batches)."""
    __tracebackhide__ = True
    x = ghost_batch()
    for size in GHOST_SIZES:
        answer = call(ghost_normalize, x.clone(), size)
        layer = BatchNorm1d(3, affine=False, dtype=torch.float64)
        expected = torch.cat([layer(ghost) for ghost in x.split(size)]).detach().numpy()
        if answer.shape != expected.shape:
            not_yet(f"The output has the shape of x, {tuple(x.shape)}; got {answer.shape}.")
        count = len(x) // size
        mistakes = [
            (BatchNorm1d(3, affine=False, dtype=torch.float64)(x).detach().numpy(),
             f"That normalizes the whole batch at once (plain batch norm): each ghost batch of {size} needs its own "
             "mean and variance."),
            (_standardized(x.view(size, count, 3), 0).reshape(12, 3).numpy(),
             f"Your ghost batches take rows {count} apart. A ghost batch is {size} consecutive rows: which axis of "
             "your reshape holds them?"),
            (_standardized(x.view(count, size, 3), 1, unbiased=True).reshape(12, 3).numpy(),
             "That divides by sqrt of the unbiased variance (m - 1); batch norm uses the biased one (divide by m)."),
            (torch.cat([layer(ghost) for ghost in x.split(GHOST_SIZE)]).detach().numpy(),
             f"With ghost_size = {size} your ghost batches hold {GHOST_SIZE} rows: use the ghost_size you are given."),
        ]
        check_close(answer, expected, None, f"Per ghost batch and channel: (x - mean) / sqrt(var + 1e-5), mean and "
                    f"biased variance over the {size} rows of the ghost batch (ghost_size = {size}).", mistakes,
                    rtol=1e-9, atol=1e-9)
    passed("Each group of ghost_size rows is normalized by its own statistics, as bnlib.BatchNorm1d on each ghost "
           "batch.")


def check_population_fix(answer):
    """``answer``: how much of the accuracy per-device batch norm loses (10 devices, skew 1) comes back when
    its running statistics are replaced by population statistics after training, one of ``FIX_CHOICES``."""
    __tracebackhide__ = True
    grid = device_grid()
    i, j = list(grid["devices"]).index(FIX_DEVICES), list(grid["skews"]).index(FIX_SKEW)
    kept, recomputed, sync = grid["accuracy"][i, j], grid["population_accuracy"][i, j], grid["sync_accuracy"]
    expected = ("all the way" if recomputed >= sync - 0.01 else
                "part of the way" if recomputed >= kept + 0.02 else "not at all")
    why = {"all the way": "the running statistics were all that was wrong.",
           "part of the way": "the running statistics were wrong, and so was what the network learned: in training "
                              "it only ever saw each device's few classes normalized among themselves.",
           "not at all": "what the network learned from its shards' statistics cannot be undone afterwards."}
    check_choice(answer, expected, FIX_CHOICES,
                 f"Population statistics take it from {kept:.0%} to {recomputed:.0%}, against {sync:.0%} "
                 f"synchronized: {why[expected]}",
                 "Move the explorer to 10 devices and skew 1 and compare the two per-device curves with the "
                 "synchronized line.")
