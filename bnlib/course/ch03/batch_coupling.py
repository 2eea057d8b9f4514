"""In training mode an example's output depends on the other examples of its batch; in eval mode it does not.

One feature over a batch of values drawn from N(0, 1). Example 0 is moved to another value; training-mode
batch norm (the batch's own mean and variance) then moves every other example's output too, because the
statistics it normalizes with moved. Eval mode normalizes with fixed running statistics (here the
population's own, mean 0 and variance 1): the others stay where they were. The larger the batch, the
less one example weighs in its statistics. Notebook 03's explorer and its figure draw this.
"""

import numpy as np
from matplotlib.figure import Figure

from bnlib.normalization import EPS, batch_norm_forward

VALUES = np.linspace(-8.0, 8.0, 161)  # where example 0 can be moved to
BATCH_SIZES = (4, 8, 32, 128)
RUNNING_MEAN, RUNNING_VAR = 0.0, 1.0  # eval mode's statistics: those of the population the batch is drawn from


def feature_batch(batch_size, seed=0):
    """One feature over a batch: ``batch_size`` values drawn from N(0, 1)."""
    if batch_size < 2:
        raise ValueError(f"batch_size must be at least 2 (a batch of one has no variance), got {batch_size}")
    return np.random.default_rng(seed).standard_normal(batch_size)


def train_outputs(x):
    """Training-mode batch norm of the batch ``x`` (one feature), gamma = 1 and beta = 0."""
    return batch_norm_forward(x[:, None], np.ones(1), np.zeros(1))[0][:, 0]


def eval_outputs(x):
    """Eval-mode batch norm of ``x``: the running statistics, whatever the batch holds."""
    return (x - RUNNING_MEAN) / np.sqrt(RUNNING_VAR + EPS)


def coupling(batch_size, moved_to, seed=0):
    """Both modes' outputs before and after example 0's input is set to ``moved_to``, and how far the other
    examples' outputs moved (the largest change): ``train_shift`` and ``eval_shift``."""
    x = feature_batch(batch_size, seed)
    moved = x.copy()
    moved[0] = moved_to
    result = {"x": x, "moved": moved}
    for mode, outputs in (("train", train_outputs), ("eval", eval_outputs)):
        before, after = outputs(x), outputs(moved)
        result[f"{mode}_before"], result[mode] = before, after
        result[f"{mode}_shift"] = float(np.abs(after[1:] - before[1:]).max())
    return result


def train_curves(batch_size, seed=0, values=VALUES):
    """The other examples' training-mode outputs as example 0 runs over ``values``: (len(values), batch_size - 1)."""
    x = feature_batch(batch_size, seed)
    batches = np.repeat(x[None], len(values), axis=0)
    batches[:, 0] = values
    return np.array([train_outputs(batch)[1:] for batch in batches])


def draw_coupling(number_line, curves_ax, result, curves, values=VALUES):
    """Left: inputs and both modes' outputs on three number lines (example 0 in red, the others' outputs
    before the move in grey). Right: the others' training-mode outputs against example 0's input."""
    number_line.cla()
    rows = (("input x", result["x"], result["moved"]), ("train-mode BN(x)", result["train_before"], result["train"]),
            ("eval-mode BN(x)", result["eval_before"], result["eval"]))
    for row, (_, before, after) in zip((2, 1, 0), rows):
        number_line.plot(before[1:], np.full(len(before) - 1, row + 0.18), "o", color="0.7", ms=4)
        number_line.plot(after[1:], np.full(len(after) - 1, row), "o", color="C0", ms=5)
        number_line.plot(after[:1], [row], "o", color="C3", ms=7)
    number_line.set(yticks=(2, 1, 0), yticklabels=[name for name, *_ in rows], ylim=(-0.5, 2.6),
                    xlim=(values[0] - 0.5, values[-1] + 0.5), xlabel="value",
                    title=f"batch of {len(result['x'])}: example 0 (red) moved\ngrey: the others before the move")
    number_line.grid(axis="x", alpha=0.3)
    curves_ax.cla()
    curves_ax.plot(values, curves, color="C0", linewidth=0.8, alpha=0.6)
    curves_ax.axvline(result["moved"][0], color="C3", linestyle="--", linewidth=1)
    curves_ax.set(xlabel="example 0's input", ylabel="the others' train-mode outputs",
                  title="each line: one other example", xlim=(values[0], values[-1]))


def coupling_figure(batch_size=8, moved_to=4.0):
    """The figure of notebook 03: a batch of 8, example 0 moved to 4."""
    figure = Figure(figsize=(8.4, 4.2), layout="constrained")
    axes = figure.subplots(1, 2, width_ratios=(1.3, 1))
    result = coupling(batch_size, moved_to)
    draw_coupling(*axes, result, train_curves(batch_size))
    return figure, {key: result[key] for key in ("moved", "train_before", "train", "eval", "train_shift", "eval_shift")}
