"""Checks for notebook 09, batch norm across devices: DDP's buffers, Chan's merge, ghost batches, and what
population statistics can and cannot repair. The constants are the questions' data."""

import numpy as np
import torch

from bnlib.course.ch09.buffers import DEMO, broadcast_run
from bnlib.course.ch09.devices import device_grid
from bnlib.course.checks import call, check_choice, check_value, not_yet, passed, run
from bnlib.layers import BatchNorm1d
from bnlib.sync import chan_merge

BROADCAST_MEANS, BROADCAST_RANK, BROADCAST_STEP = (1.0, 4.0, 10.0), 2, 4  # 3 ranks; rank 2 after step 4
GHOST_SIZE = 4
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
    """``merge(a, b)`` as ``(n, mean, m2)`` in float64; an answer that cannot be used becomes a ``NotYet``."""
    __tracebackhide__ = True
    value = run(merge, a, b, returns="(n, mean, m2)")
    try:
        n, mean, m2 = value
        n, mean, m2 = float(n), np.asarray(mean, dtype=np.float64), np.asarray(m2, dtype=np.float64)
    except (TypeError, ValueError):
        not_yet(f"Return three things, (n, mean, m2): a count and two arrays; got {type(value).__name__}.")
    if mean.shape != a[1].shape or m2.shape != a[1].shape:
        not_yet(f"mean and m2 hold one value per channel, shape {a[1].shape}; got {mean.shape} and {m2.shape}.")
    return n, mean, m2


def check_chan_merge(merge):
    """``merge((n_a, mean_a, m2_a), (n_b, mean_b, m2_b)) -> (n, mean, m2)``, checked on a float64 batch split
    unevenly, then in float32 on data of mean 1e4 and spread 1e-2."""
    __tracebackhide__ = True
    x = np.random.default_rng(9).normal([3.0, -1.0, 0.5], [2.0, 0.1, 1.0], size=(20, 3))
    a, b = shard_statistics(x[:7]), shard_statistics(x[7:])
    n, mean, m2 = merged_by(merge, a, b)
    whole = shard_statistics(x)
    delta = b[1] - a[1]
    if n != whole[0]:
        not_yet("The merged count is n = n_a + n_b.")
    if np.allclose(mean, (a[1] + b[1]) / 2) and not np.allclose(mean, whole[1]):
        not_yet("The two shards hold 7 and 13 rows: weight each mean by its count (or step from mean_a towards "
                "mean_b by n_b / n).")
    if not np.allclose(mean, whole[1], rtol=1e-10, atol=1e-12):
        not_yet("The merged mean is mean_a + delta n_b / n, with delta = mean_b - mean_a.")
    if np.allclose(m2, a[2] + b[2]):
        not_yet("M2_a + M2_b misses the spread between the two shards' means: add delta^2 n_a n_b / n.")
    if np.allclose(m2, a[2] + b[2] + delta ** 2 * a[0] * b[0]):
        not_yet("Close: the between-shards term is delta^2 n_a n_b / n (divide by the merged count).")
    if np.allclose(m2 * n, whole[2]) or np.allclose(m2 * (n - 1), whole[2]):
        not_yet("That is a variance; return M2, the sum of squared deviations from the merged mean.")
    if not np.allclose(m2, whole[2], rtol=1e-10, atol=1e-12):
        not_yet("M2 = M2_a + M2_b + delta^2 n_a n_b / n, with delta = mean_b - mean_a.")
    x = 1e4 + 1e-2 * np.random.default_rng(10).standard_normal((1000, 4))
    a, b = ((n_, mean_.astype(np.float32), m2_.astype(np.float32)) for n_, mean_, m2_ in
            (shard_statistics(x[:400]), shard_statistics(x[400:])))
    _, mean, m2 = merged_by(merge, a, b)
    whole = shard_statistics(x)
    reference = np.asarray(chan_merge([a[0], b[0]], [torch.tensor(np.stack(s[1:])) for s in (a, b)])[1])
    allowed = 2 * np.abs(reference - whole[2]) + 1e-6 * whole[2]  # Chan's merge in float32, with room to spare
    if np.any(np.abs(m2 - whole[2]) > allowed):
        not_yet("Right in float64, but in float32 at mean 1e4 your M2 is off by up to "
                f"{np.max(np.abs(m2 / whole[2] - 1)):.1g} times its true value: rebuilding sums of squares (M2 + n mean^2, about 1e11) "
                "and subtracting cancels every digit of a spread of 1e-2. Work with delta = mean_b - mean_a.")
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


def check_ghost_normalize(ghost_normalize):
    """``ghost_normalize(x, ghost_size)``: each run of ``ghost_size`` rows of x normalized with its own mean
    and biased variance (eps 1e-5), no gamma, beta: ``bnlib.BatchNorm1d`` run on each ghost batch."""
    __tracebackhide__ = True
    x = ghost_batch()
    answer = call(ghost_normalize, x.clone(), GHOST_SIZE)
    layer = BatchNorm1d(3, affine=False, dtype=torch.float64)
    expected = torch.cat([layer(ghost) for ghost in x.split(GHOST_SIZE)]).detach().numpy()
    if answer.shape != expected.shape:
        not_yet(f"The output has the shape of x, {tuple(x.shape)}; got {answer.shape}.")
    whole = BatchNorm1d(3, affine=False, dtype=torch.float64)(x).detach().numpy()
    interleaved = x.view(GHOST_SIZE, -1, 3)
    interleaved = ((interleaved - interleaved.mean(0)) / torch.sqrt(interleaved.var(0, unbiased=False) + 1e-5))
    if np.allclose(answer, whole):
        not_yet("That normalizes the whole batch at once (plain batch norm): each ghost batch of 4 needs its own "
                "mean and variance.")
    if np.allclose(answer, interleaved.reshape(12, 3).numpy()):
        not_yet("Your ghost batches take every third row. A ghost batch is 4 consecutive rows: which axis of your "
                "reshape holds them?")
    unbiased = x.view(-1, GHOST_SIZE, 3)
    unbiased = (unbiased - unbiased.mean(1, keepdim=True)) / torch.sqrt(unbiased.var(1, keepdim=True) + 1e-5)
    if np.allclose(answer, unbiased.reshape(12, 3).numpy()):
        not_yet("That divides by sqrt of the unbiased variance (m - 1); batch norm uses the biased one (divide by m).")
    if not np.allclose(answer, expected, rtol=1e-9, atol=1e-9):
        not_yet("Per ghost batch and channel: (x - mean) / sqrt(var + 1e-5), mean and biased variance over the 4 "
                "rows of the ghost batch.")
    passed("Each group of 4 rows is normalized by its own statistics, as bnlib.BatchNorm1d on each ghost batch.")


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
