"""Checks for notebook 07, the perils of batch norm: noise against batch size, batches of two,
GroupNorm's statistics."""

import numpy as np

from bnlib.course.exercises.checks import UNANSWERED, check_number, report

NOISE_STD, NOISE_BATCH, NOISE_TARGET = 0.2, 8, 0.05
PAIR = (3.0, 7.5)
GROUP_COUNT = 2


def check_batch_size_for_noise(answer):
    """``answer``: the batch size at which the batch mean's std drops from 0.2 (at batch 8) to 0.05."""
    needed = NOISE_BATCH * (NOISE_STD / NOISE_TARGET) ** 2  # sigma / sqrt(m) = target  =>  m = m0 (std0 / target)^2
    return check_number(
        answer, needed,
        "A quarter of the noise costs sixteen times the batch: std(mu_B) = sigma / sqrt(m).",
        [(NOISE_BATCH * NOISE_STD / NOISE_TARGET, "That would be right if the noise fell like 1/m; it falls like "
                                                  "1/sqrt(m)")],
        "Write std(mu_B) = sigma / sqrt(m) for both batch sizes and divide the two equations")


def check_batch_of_two(answer):
    """``answer``: BN's outputs (gamma = 1, beta = 0) for a batch holding the two values of ``PAIR``."""
    if answer is None:
        return report(False, "", UNANSWERED)
    try:
        outputs = np.asarray(answer, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        return report(False, "", "The answer must be two numbers, one output per example")
    if outputs.shape != (2,):
        return report(False, "", f"The answer must hold two numbers, one per example; got {outputs.size}")
    if np.allclose(outputs, [-1.0, 1.0], atol=1e-3):
        return report(True, "With two examples the mean sits midway and the std is half their distance, so BN "
                            "outputs -1 and +1 whatever the values: only their order survives.", "")
    if np.allclose(outputs, [1.0, -1.0], atol=1e-3):
        return report(False, "", "Right size, wrong signs: which of the two values is below the batch mean?")
    return report(False, "", "Compute the batch mean and the biased variance (divide by m = 2) of the two "
                             "values, then (x - mean) / sqrt(var)")


def group_exercise_batch(seed=7):
    """The activations of the GroupNorm exercise: 4 examples, 6 units."""
    return np.random.default_rng(seed).normal(size=(4, 6)).round(2)


def check_group_means(answer):
    """``answer``: GroupNorm's means for ``group_exercise_batch()`` with 2 groups of 3 units, shape (4, 2)."""
    h = group_exercise_batch()
    expected = h.reshape(len(h), GROUP_COUNT, -1).mean(2)  # mu[n, g] = mean of h[n, c] over c in group g
    if answer is None:
        return report(False, "", UNANSWERED)
    try:
        means = np.asarray(answer, dtype=np.float64)
    except (TypeError, ValueError):
        return report(False, "", "The answer must be an array of numbers")
    if means.shape == (h.shape[1],) or means.shape == (1, h.shape[1]):
        return report(False, "", "Those are per-unit means over the batch: BatchNorm's statistics, not GroupNorm's")
    if means.shape in ((len(h),), (len(h), 1)):
        return report(False, "", "One mean per example over all units is LayerNorm; GroupNorm splits the units into 2 groups")
    if means.shape != expected.shape:
        return report(False, "", f"Expected one mean per example and group, shape {expected.shape}; got {means.shape}")
    return report(np.allclose(means, expected, atol=1e-6),
                  "Each example is normalized on its own: no other example enters its statistics.",
                  "Group g holds units 3g to 3g + 2; average each example's units within each group")
