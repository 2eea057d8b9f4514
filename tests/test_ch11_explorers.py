"""Notebook 11's explorer: every control changes the readout and the plot, the readout leads with the three eval
accuracies, and the figure fits the screen."""

import pytest
from explorer_checks import assert_control_changes_readout_and_plot

from bnlib.course.ch11.explorers import composition_explorer
from bnlib.course.explorer import MAX_HEIGHT, MAX_WIDTH

pytestmark = pytest.mark.slow  # reads the cached grid of runs (trained on MNIST the first time)


@pytest.fixture(scope="module")
def explorer():
    return composition_explorer()


@pytest.mark.parametrize("name, value", [("batch_size", 60), ("composition", "sorted"), ("batch_size", 4)])
def test_every_control_changes_readout_and_plot(explorer, name, value):
    assert_control_changes_readout_and_plot(explorer, name, value)


def test_the_readout_leads_with_the_eval_accuracy_of_each_norm(explorer):
    explorer.controls["composition"].value, explorer.controls["batch_size"].value = "iid", 2
    headline = explorer.text.split("; ")[0]
    assert headline.startswith("eval accuracy BN ") and "Batch Renorm" in headline and "GroupNorm" in headline
    assert "train-eval gap" in explorer.text.split("; ")[1]


def test_the_plot_fits_the_screen(explorer):
    width, height = explorer.draw(batch_size=8, composition="sorted")[0].get_size_inches()
    assert width <= MAX_WIDTH and height <= MAX_HEIGHT
