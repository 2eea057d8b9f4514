"""The course's one drift measure: the median's move over the mean band width, from a start step to the end."""

import numpy as np
import pytest

from bnlib.course import drift


def bands(medians, width):
    """Percentiles (checkpoints, 3, units) of bands of constant ``width`` (scalar or per checkpoint) around ``medians``."""
    medians = np.asarray(medians, dtype=float)
    width = np.broadcast_to(np.asarray(width, dtype=float).reshape(-1, 1), medians.shape)
    return np.stack([medians - width / 2, medians, medians + width / 2], axis=1)


def test_drift_is_distance_moved_over_band_width_from_the_start_step():
    steps = np.arange(0, 11) * 100
    medians = np.linspace(0, 10, 11)[:, None] * np.array([1.0, -2.0])  # two units, moving 1 and 2 per checkpoint
    percentiles = bands(medians, 4.0)
    # from step 100 to step 1000 the medians move 9 and 18; band width 4
    np.testing.assert_allclose(drift.unit_drifts(percentiles, steps, 100), [9 / 4, 18 / 4])
    assert drift.network_drift(percentiles, steps, 100) == pytest.approx((9 / 4 + 18 / 4) / 2)
    assert drift.network_drift(bands(np.ones((11, 3)), 2.0), steps, 100) == 0
    np.testing.assert_allclose(drift.unit_drifts(percentiles, steps, 150), [8 / 4, 16 / 4])  # first checkpoint >= 150


def test_the_band_width_is_averaged_over_the_window_and_its_growth_reported_apart():
    steps = np.arange(0, 5) * 10
    widths = np.array([100.0, 1.0, 2.0, 3.0, 4.0])  # the band at step 0 lies outside the window
    percentiles = bands(np.arange(5.0)[:, None], widths)
    assert drift.unit_drifts(percentiles, steps, 10)[0] == pytest.approx(3 / 2.5)
    assert drift.band_growth(percentiles, steps, 10)[0] == pytest.approx(4.0)
    still = bands(np.zeros((5, 1)), widths)  # a band that widens around a still median: no drift
    assert drift.unit_drifts(still, steps, 10)[0] == 0


def test_typical_unit_and_steps_to_reach():
    steps = np.arange(0, 11) * 100
    medians = np.outer(np.arange(11), [0.0, 1.0, 2.0, 3.0, 10.0])
    assert drift.typical_unit(bands(medians, 1.0), steps, 100) == 2
    accuracy = np.linspace(0.1, 0.9, 11)
    assert drift.steps_to_reach(accuracy, steps, 0.5) == 500
    assert drift.steps_to_reach(accuracy, steps, 0.95) is None


def test_percentiles_are_the_15th_50th_85th_and_bad_shapes_are_refused():
    values = np.arange(101.0)[:, None] * np.array([1.0, 2.0])
    np.testing.assert_allclose(drift.percentiles(values), [[15, 30], [50, 100], [85, 170]])
    with pytest.raises(ValueError, match="checkpoints, 3, units"):
        drift.unit_drifts(np.zeros((4, 100, 3)), np.arange(4), 1)
    with pytest.raises(ValueError, match="after the last checkpoint"):
        drift.unit_drifts(np.zeros((4, 3, 2)), np.arange(4), 10)
