"""The claims of notebook 10, asserted on its runs with tolerances that hold on any CPU: predicted against
measured within a stated relative error, ratios with margins, never pinned numbers."""

import numpy as np
import pytest

from bnlib.course.ch10 import dynamics, equivalence, gamma_beta, geometry, initialization
from bnlib.course.ch10.figures import FIGURES

pytestmark = pytest.mark.slow  # the chapter's runs on MNIST (computed once, then cached)


@pytest.fixture(scope="module")
def grid():
    return dynamics.run_grid()


def no_decay(grid):
    return [dynamics.run_index(grid, lr, 0.0) for lr in dynamics.GRID.lrs]


def test_without_weight_decay_the_norm_grows_as_predicted_and_the_effective_lr_falls(grid):
    ends = []
    for index in no_decay(grid):
        growth = dynamics.norm_growth(grid, index)
        assert growth["error"].max() < 1e-2  # every step, every hidden layer (BN's eps: about 1e-3 in layer 3)
        assert (growth["measured"][-1] > 3 * growth["measured"][0]).all()
        assert (growth["effective_lr"][-1] < growth["effective_lr"][0] / 3).all()
        assert np.abs(grid["cos"][:, :, index]).max() < 1e-2
        ends.append(growth["effective_lr"][-1])
    ends = np.array(ends)  # (lr, layer): about the same whatever the learning rate
    assert (ends.max(0) < 1.5 * ends.min(0)).all()


def test_with_weight_decay_the_angle_settles_at_sqrt_2_lr_wd_where_the_run_had_time(grid):
    summaries = [dynamics.angle_summary(grid, index) for index in np.flatnonzero(grid["wd"])]
    settled = [s for s in summaries if dynamics.reached(s)]
    assert len(settled) >= 4 and any(s["momentum"] for s in settled)
    for s in settled:
        assert (np.abs(s["rms_ratio"] - 1) < 0.1).all(), s
        assert (s["mean_ratio"] < s["rms_ratio"]).all()  # the mean of a fluctuating angle is below its RMS
        assert (s["first_within"] > 0).all() and (s["first_within"] < 3 * s["time_scale"] + dynamics.WINDOW).all()
    late = [s for s in summaries if s["time_scale"] >= 2500]  # what the notebook reports as not there yet
    assert late and all((s["rms_ratio"] > 1.1).all() for s in late)


def test_momentum_divides_by_one_plus_mu(grid):
    index = dynamics.run_index(grid, 0.02, 1e-2, 0.9)
    measured = np.sqrt(np.mean(np.square(grid["angle"][-dynamics.LAST:, :, index])))
    guesses = dynamics.momentum_candidates(0.02, 1e-2, 0.9)
    closest = min(guesses, key=lambda name: abs(np.log(guesses[name] / measured)))
    assert closest == "sqrt(2 lr wd / (1 + mu))" and abs(measured / guesses[closest] - 1) < 0.1


def test_weight_decay_lowered_the_accuracy_at_every_learning_rate(grid):
    for lr in dynamics.GRID.lrs:
        assert grid["accuracy"][dynamics.run_index(grid, lr, 1e-2)] < grid["accuracy"][dynamics.run_index(grid, lr, 0.0)] - 0.005


def test_the_equivalent_runs_agree_to_rounding_in_float64_and_part_otherwise():
    config = equivalence.EquivalenceRun()
    result = equivalence.run_equivalence(config)
    cases = [case[:2] for case in config.cases]
    exact = cases.index(("float64", equivalence.TINY_EPS))
    with_eps = cases.index(("float64", 1e-5))
    single = cases.index(("float32", equivalence.TINY_EPS))
    assert result["hidden"][exact, 0].max() < 1e-12 and result["last"][exact, 0].max() < 1e-12
    assert result["logits"][exact, 0] < 1e-12 and result["agreement"][exact, 0] == 1.0
    assert 1e-8 < result["hidden"][with_eps, 0, 0] < 1e-4  # eps breaks scale invariance a little at once
    assert result["hidden"][with_eps, 0, -1] > 1e-5
    assert 1e-9 < result["hidden"][single, 0, 0] < 1e-5  # float32 rounding
    assert result["agreement"][:, 0].min() > 0.95


def test_decaying_gamma_and_beta_shrinks_gamma_raises_the_loss_and_costs_no_accuracy():
    pairs = gamma_beta.run_gamma_beta()
    assert (pairs["gamma"][:, 1, :2] < 0.6).all() and (np.abs(pairs["gamma"][:, 0, :2] - 1) < 0.2).all()
    assert (pairs["train_loss"][:, 1] > pairs["train_loss"][:, 0]).all()
    assert pairs["test_loss"][:, 1].mean() > pairs["test_loss"][:, 0].mean()
    difference = gamma_beta.paired_difference(pairs)
    assert -0.5 < difference.mean() < 1.5  # points: small, of either sign within a few seed spreads


def test_the_initial_scale_without_and_with_bn():
    config = initialization.InitSweep()
    sweep = initialization.run_init_sweep(config)
    plain, bn, last_he = (initialization.FAMILIES.index(name) for name in initialization.FAMILIES)
    k = list(config.scales)
    small, he, large = k.index(0.1), k.index(1.0), k.index(10.0)
    assert sweep["accuracy"][plain, small] < 0.2 and not sweep["diverged"][plain, small]  # never leaves chance
    assert sweep["diverged"][plain, large] and sweep["accuracy"][plain, he] > 0.85
    assert not sweep["diverged"][bn:].any() and sweep["accuracy"][bn:].min() > 0.75  # every scale trains
    spread = sweep["activation_std"][bn]  # the forward pass does not see k
    assert (spread.max(0) < 1.01 * spread.min(0)).all()
    ratio = sweep["update_ratio"][last_he, :, 0]  # 1/k^2 when only the hidden weights are scaled
    assert 0.9e4 < ratio[small] / ratio[large] < 1.1e4
    assert np.ptp(sweep["loss"][last_he]) < 1e-3 * sweep["loss"][last_he].mean() and sweep["loss"][bn, large] > 5
    assert sweep["accuracy"][bn, large] < sweep["accuracy"][bn, he] - 0.05  # slow: a tiny effective lr
    assert sweep["accuracy"][bn, small] > sweep["accuracy"][bn, he] - 0.02
    growth = sweep["norm2"][bn, 1, 0] / sweep["norm2"][bn, 0, 0]
    assert growth[small] > 5 and abs(growth[large] - 1) < 0.01


def test_section_one_on_mnist():
    exact, with_eps, single, _ = geometry.summary_table()
    assert exact["cos"] < 1e-15 and exact["gradient_change"] < 1e-12 and exact["rows"][0] < 1e-12
    assert single["cos"] < 1e-6 and single["gradient_change"] < 1e-5
    assert 1e-8 < with_eps["cos"] < 1e-3 and 1e-7 < with_eps["rows"][0] < 1e-3
    assert abs(exact["last_cos"]) > 1e-2 and (exact["last_loss_change"] > 1e-3).all()


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_each_figure_draws_from_the_cached_runs(name):
    figure, data = FIGURES[name]()
    assert figure.axes and data
