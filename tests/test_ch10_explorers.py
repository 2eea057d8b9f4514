"""Notebook 10's explorer: every control changes the readout and the plot, the readout leads with the angle
against its prediction, and the figure fits the screen."""

import pytest
from explorer_checks import assert_control_changes_readout_and_plot

from bnlib.course.ch10.explorers import optimizer_explorer
from bnlib.course.explorer import MAX_HEIGHT, MAX_WIDTH

pytestmark = pytest.mark.slow  # reads the cached grid of runs (trained on MNIST the first time)


@pytest.fixture(scope="module")
def explorer():
    return optimizer_explorer()


@pytest.mark.parametrize("name, value", [("lr", 0.4), ("wd", 1e-2), ("layer", 3), ("wd", 0.0)])
def test_every_control_changes_readout_and_plot(explorer, name, value):
    assert_control_changes_readout_and_plot(explorer, name, value)


def test_the_readout_leads_with_the_angle_against_its_prediction(explorer):
    explorer.controls["wd"].value, explorer.controls["lr"].value = 1e-2, 0.2
    headline = explorer.text.split("; ")[0]
    assert headline.startswith("angle per step") and "sqrt(2 lr wd) = 0.0632" in headline
    explorer.controls["wd"].value = 0.0
    assert "no equilibrium" in explorer.text.split("; ")[0]


def test_the_plot_fits_the_screen(explorer):
    width, height = explorer.draw(lr=0.1, wd=3e-3, layer=2)[0].get_size_inches()
    assert width <= MAX_WIDTH and height <= MAX_HEIGHT
