"""The batch-noise explorer of notebook 07."""

import numpy as np
import pytest
from explorer_checks import assert_control_changes_readout_and_plot

from bnlib.course.ch07.small_batches import NOISE_BATCH_SIZES, unit_activations
from bnlib.course.ch07.explorers import batch_noise_explorer
from bnlib.course.ch07.explorers import batch_noise_summary

pytestmark = pytest.mark.slow  # computes experiments on real MNIST (cached afterwards)


@pytest.mark.parametrize("batch_size", [NOISE_BATCH_SIZES[0], NOISE_BATCH_SIZES[-1]])
@pytest.mark.parametrize("unit", [0, 99])
def test_explorer_updates_at_its_extremes(batch_size, unit):
    explorer = batch_noise_explorer()
    explorer.controls["unit"].value = unit
    explorer.controls["batch_size"].value = batch_size
    assert explorer.error is None, explorer.text
    assert f"batch {batch_size}, unit {unit}" in explorer.text
    assert explorer.image.value[:4] == b"\x89PNG"


def test_summary_shows_the_noise_shrinking_with_the_batch():
    values = unit_activations()[:, 3].astype(np.float64)
    small, large = (batch_noise_summary(values, 0.5, m) for m in (2, 256))
    assert small["means"].std() > 8 * large["means"].std()
    assert np.mean(np.abs(small["normalized"]) > 0.99) > 0.95 and np.all(np.abs(small["normalized"]) <= 1)
    assert large["normalized"].std() < 0.2


@pytest.mark.parametrize("name, value", [("batch_size", NOISE_BATCH_SIZES[-1]), ("unit", 5)])
def test_every_control_changes_the_readout_and_the_plot(name, value):
    assert_control_changes_readout_and_plot(batch_noise_explorer(), name, value)


def test_readout_states_the_units_true_mean_and_sigma():
    explorer = batch_noise_explorer()
    explorer.controls["unit"].value = 3
    values = unit_activations()[:, 3].astype(np.float64)
    assert f"unit 3 (mean {values.mean():.3f}, sigma {values.std():.3f})" in explorer.text
