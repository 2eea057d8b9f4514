"""The gamma/beta explorer of notebook 04 redraws at its extremes and reports what it shows."""

import numpy as np
import pytest
from explorer_checks import assert_control_changes_readout_and_plot

from bnlib.course.widgets import gamma_beta_explorer
from bnlib.course.widgets.gamma_beta import SATURATION, gamma_beta_readout, pre_activations


@pytest.fixture(scope="module")
def explorer():
    return gamma_beta_explorer(size=2000)


@pytest.mark.parametrize("gamma", ["min", "max"])
@pytest.mark.parametrize("beta", ["min", "max"])
def test_extremes_redraw_without_error(explorer, gamma, beta):
    for name, end in (("gamma", gamma), ("beta", beta)):
        control = explorer.controls[name]
        control.value = getattr(control, end)
    assert explorer.error is None
    assert explorer.image.value[:4] == b"\x89PNG"
    assert f"beta {explorer.controls['beta'].value:.2f}" in explorer.readout.value


def test_readout_mean_is_beta_and_std_is_gamma(explorer):
    explorer.controls["gamma"].value, explorer.controls["beta"].value = 2.0, -1.5
    assert "mean -1.50" in explorer.readout.value and "std 2.00" in explorer.readout.value


def test_saturation_fraction():
    y = np.array([-5.0, -1.0, 0.0, 3.9, 4.1, 10.0])
    assert gamma_beta_readout(y)["saturated"] == pytest.approx(3 / 6)
    assert SATURATION == 4.0
    assert pre_activations().std() > 3  # the raw unit is far from normalized


def test_sliders_move_the_unit_into_and_out_of_saturation(explorer):
    explorer.controls["gamma"].value, explorer.controls["beta"].value = 0.5, 0.0
    assert "saturated (|y| over 4): 0.0%" in explorer.readout.value
    explorer.controls["gamma"].value, explorer.controls["beta"].value = 0.5, 8.0
    assert "saturated (|y| over 4): 100.0%" in explorer.readout.value


@pytest.mark.parametrize("name, value", [("gamma", 2.5), ("beta", -3.0)])
def test_every_control_changes_the_readout_and_the_plot(name, value):
    assert_control_changes_readout_and_plot(gamma_beta_explorer(size=2000), name, value)
