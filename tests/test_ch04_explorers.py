"""The gamma/beta explorer of notebook 04 redraws at its extremes and reports what it shows."""

import numpy as np
import pytest
from explorer_checks import assert_control_changes_readout_and_plot

from bnlib.course.ch04.explorers import gamma_beta_explorer
from bnlib.course.ch04.explorers import SATURATION, Y_RANGE, gamma_beta_readout, pre_activations
from bnlib.normalization import batch_norm_forward


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
    assert f"beta {explorer.controls['beta'].value:.2f}" in explorer.text


def test_readout_mean_is_beta_and_std_is_gamma(explorer):
    explorer.controls["gamma"].value, explorer.controls["beta"].value = 2.0, -1.5
    assert "mean -1.50" in explorer.text and "std 2.00" in explorer.text


def test_saturation_fraction():
    y = np.array([-5.0, -1.0, 0.0, 3.9, 4.1, 10.0])
    assert gamma_beta_readout(y)["saturated"] == pytest.approx(3 / 6)
    assert pre_activations().std() > 3  # the raw unit is far from normalized


def test_saturation_is_where_the_sigmoid_is_flat_as_its_comment_says():
    """Beyond |y| = SATURATION the sigmoid is within 0.018 of 0 or 1, and its slope under 1/14 of its peak 1/4."""
    s = 1 / (1 + np.exp(-SATURATION))
    assert 1 - s < 0.018 and s * (1 - s) < 0.25 / 14
    s = 1 / (1 + np.exp(-0.9 * SATURATION))  # and not much before: the bound is tight
    assert 1 - s > 0.018


def test_sliders_move_the_unit_into_and_out_of_saturation(explorer):
    explorer.controls["gamma"].value, explorer.controls["beta"].value = 0.5, 0.0
    assert explorer.text.startswith("saturated: 0.0% of the batch (|y| over 4)")
    explorer.controls["gamma"].value, explorer.controls["beta"].value = 0.5, 8.0
    assert explorer.text.startswith("saturated: 100.0% of the batch (|y| over 4)")


def test_values_beyond_the_histogram_are_counted_not_piled_at_its_edge(explorer):
    """At gamma 6 and beta 8 part of y lies beyond +12: the histogram's last bin holds only the values that
    fall in it, and a note at the edge gives the share beyond."""
    explorer.controls["gamma"].value, explorer.controls["beta"].value = 6.0, 8.0
    y = batch_norm_forward(pre_activations(2000), np.array([6.0]), np.array([8.0]))[0].ravel()
    beyond = gamma_beta_readout(y)["above"]
    assert beyond > 0.05
    ax = explorer.draw(gamma=6.0, beta=8.0)[0].axes[0]
    last_bin = max(ax.patches[:96], key=lambda bar: bar.get_x())  # the histogram's 96 bars come first
    assert round(last_bin.get_height()) == np.sum((y >= Y_RANGE - 24 / 96) & (y <= Y_RANGE))
    assert f"{beyond:.1%} beyond +12" in [text.get_text() for text in ax.texts]


@pytest.mark.parametrize("name, value", [("gamma", 2.5), ("beta", -3.0)])
def test_every_control_changes_the_readout_and_the_plot(name, value):
    assert_control_changes_readout_and_plot(gamma_beta_explorer(size=2000), name, value)
