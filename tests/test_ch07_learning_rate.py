"""The largest learning rate that trains, with and without batch norm (notebook 07), and what the grid can say."""

import numpy as np
import pytest

from bnlib.course.ch07.learning_rate import MAX_LR_CONFIG, largest_trainable_lr, learning_rate_figure, max_learning_rate


@pytest.mark.slow  # trains the grid on real MNIST (cached afterwards)
def test_batch_norm_trains_at_a_ten_times_larger_learning_rate():
    """Notebook: the largest learning rate of the grid that reaches 90% is 10x larger with BN, one decade of a
    grid in steps of about 3.3x (so the true ratio lies between about 3x and 33x); at 10 both networks fail."""
    result = max_learning_rate()
    lrs = list(result["lrs"])
    none, bn = (largest_trainable_lr(lrs, result["test_accuracy"][k]) for k in (0, 1))
    assert MAX_LR_CONFIG.norms == ("none", "batch")
    assert bn == pytest.approx(10 * none)                        # "10x", not "at least 10x"
    steps = np.diff(np.log(lrs))
    assert np.all(np.abs(steps - np.log(10) / 2) < 0.1)          # the grid: half a decade a step, about 3.3x
    assert lrs.index(bn) - lrs.index(none) == 2
    upper = lrs[lrs.index(bn) + 1] / none                         # the limits lie below the next grid rate
    lower = bn / lrs[lrs.index(none) + 1]
    assert 2.9 < lower < 3.4 and 30 < upper < 34
    assert np.all(result["test_accuracy"][:, list(result["lrs"]).index(10.0)] < 0.5)


def test_largest_trainable_lr_picks_the_last_good_one():
    assert largest_trainable_lr([0.1, 1, 10], [0.95, 0.92, 0.1]) == 1
    assert largest_trainable_lr([0.1, 1, 10], [0.5, 0.95, 0.91]) == 10
    assert largest_trainable_lr([0.1, 1], [0.5, 0.5]) is None


@pytest.mark.slow
def test_the_figure_plots_the_measured_grid():
    _, data = learning_rate_figure()
    result = max_learning_rate()
    for k, label in enumerate(("no BN", "with BN")):
        np.testing.assert_array_equal(data[label]["test_accuracy"], result["test_accuracy"][k])
        assert data[label]["largest_trainable_lr"] == largest_trainable_lr(result["lrs"], result["test_accuracy"][k])


def test_a_threshold_given_as_a_percentage_is_refused():
    with pytest.raises(ValueError, match="a fraction of the test set"):
        MAX_LR_CONFIG.replace(trains_if_accuracy_above=90)
