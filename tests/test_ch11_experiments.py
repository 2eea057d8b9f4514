"""The claims of notebook 11, asserted on its runs with tolerances that hold on any CPU and thread count:
inequalities with margins of about half the smallest margin measured over three seeds, never pinned numbers."""

import numpy as np
import pytest

from bnlib.course.ch11 import renorm, residual, sweep
from bnlib.course.ch11.figures import FIGURES

pytestmark = pytest.mark.slow  # the chapter's runs on MNIST (computed once, then cached)


@pytest.fixture(scope="module")
def variance():
    result = residual.run_variance()
    return {name: (result["variance"][i], result["ratio"][i]) for i, name in enumerate(residual.STREAMS)}


@pytest.fixture(scope="module")
def sweep_result():
    return sweep.run_sweep()


@pytest.fixture(scope="module")
def grid():
    return renorm.run_grid()


def test_with_bn_on_the_branch_the_variance_grows_as_l_plus_1_and_the_branch_carries_1_over_l(variance):
    v, ratio = variance["branch"]
    depth = np.arange(len(v))
    assert len(v) - 1 >= 32 and v[0] == pytest.approx(1, abs=1e-3)
    assert (np.abs(v[8:] / (depth[8:] + 1) - 1) < 0.1).all()
    assert 0.05 < ratio[16] < 0.075 and 0.2 < ratio[4] < 0.3


def test_without_normalization_the_variance_about_doubles_per_block(variance):
    v, _ = variance["none"]
    assert 1.7 < residual.growth_per_block(v) < 2.1


def test_zero_gamma_and_skipinit_start_every_block_as_the_identity(variance):
    for name in ("zero gamma", "skipinit"):
        v, ratio = variance[name]
        assert np.abs(v / v[0] - 1).max() < 1e-6 and np.nanmax(ratio) == 0


def test_bn_after_the_addition_keeps_the_stream_below_one_and_the_relu_after_it_halves_the_growth(variance):
    assert variance["after"][0][1:].max() < 1
    assert (variance["post"][0][8:] < 0.6 * variance["branch"][0][8:]).all()


def test_zero_init_gamma_removes_the_early_loss_spike_at_large_learning_rates(sweep_result):
    assert sweep.early_loss(sweep_result, "BN", 0.8) > 5 > 2 > sweep.early_loss(sweep_result, "BN, zero gamma", 0.8)
    assert all(sweep.early_loss(sweep_result, "BN, zero gamma", lr) < 2 for lr in (0.4, 0.8, 1.6))  # "near 1 up to 1.6"
    assert sweep.first_loss("BN") > sweep.first_loss("BN, zero gamma") + 0.5


def test_zero_init_gamma_helps_at_a_large_learning_rate_not_at_a_small_one_nor_the_largest_that_trains(sweep_result):
    accuracy = dict(zip(sweep.SWEEP.variants, sweep_result["accuracy"]))
    at = sweep.SWEEP.lrs.index
    assert accuracy["BN, zero gamma"][at(1.6)] > accuracy["BN"][at(1.6)] + 0.01
    assert accuracy["BN"][at(0.05)] > accuracy["BN, zero gamma"][at(0.05)] + 0.005
    useful = [sweep.largest_lr(sweep_result, v, criterion=sweep.useful) for v in ("BN", "BN, zero gamma")]
    assert max(useful) <= 2 * min(useful)


def test_bn_trains_at_larger_learning_rates_than_skipinit_and_skipinit_than_the_plain_net(sweep_result):
    stable = {v: sweep.largest_lr(sweep_result, v) for v in sweep.SWEEP.variants}
    assert stable["BN"] >= 4 * stable["SkipInit"] and stable["SkipInit"] >= stable["no normalization"]
    plain, skip, bn = (sweep.summary(sweep_result, v) for v in ("no normalization", "SkipInit", "BN"))
    assert plain["useful"] is None and skip["useful"] is not None
    plain_accuracy = sweep_result["accuracy"][sweep.SWEEP.variants.index("no normalization")]
    assert np.isnan(plain_accuracy[sweep.SWEEP.lrs.index(0.2):]).all()  # diverged from the grid's third rate on
    assert bn["best_accuracy"] > skip["best_accuracy"] + 0.01 > plain["best_accuracy"] + 0.01


def test_batch_renorm_rescues_part_of_batch_two_and_groupnorm_more(grid):
    bn, brn, gn = (renorm.cell(grid, norm, "iid", 2) for norm in renorm.NORMS)
    assert brn["eval"] > bn["eval"] + 0.10 and gn["eval"] > brn["eval"] + 0.05


def test_at_batch_four_batch_renorm_closes_the_train_eval_gap(grid):
    bn, brn, _ = (renorm.cell(grid, norm, "iid", 4) for norm in renorm.NORMS)
    assert brn["eval"] > bn["eval"] + 0.02 and abs(bn["gap"]) > 0.10 and abs(brn["gap"]) < 0.06


def test_at_batch_sixty_iid_the_three_norms_agree(grid):
    scores = [renorm.cell(grid, norm, "iid", 60)["eval"] for norm in renorm.NORMS]
    assert min(scores) > 0.9 and max(scores) - min(scores) < 0.05


def test_on_class_sorted_batches_bn_fails_in_eval_batch_renorm_closes_the_gap_and_groupnorm_leads(grid):
    bn, brn, gn = (renorm.cell(grid, norm, "sorted", 60) for norm in renorm.NORMS)
    assert bn["eval"] < 0.2 and bn["gap"] > 0.15
    assert all(renorm.cell(grid, "BN", "sorted", m)["eval"] < 0.2 for m in renorm.GRID.batch_sizes)  # near chance
    assert abs(brn["gap"]) < 0.06 and brn["eval"] > bn["eval"] + 0.15
    assert gn["eval"] > brn["eval"] + 0.25 and abs(gn["gap"]) < 0.005


def test_on_small_class_sorted_batches_batch_renorms_own_gap_reopens_negative(grid):
    assert renorm.cell(grid, "Batch Renorm", "sorted", 4)["gap"] < -0.05


def test_groupnorms_train_mode_is_its_eval_mode(grid):
    gn = renorm.NORMS.index("GroupNorm")  # (up to an argmax flipped by rounding in batches of another size)
    assert np.abs(grid["train_mode"][gn] - grid["eval_some"][gn]).max() < 0.005


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_the_figures_draw_and_fit_the_page(name):
    figure, _ = FIGURES[name]()
    assert figure.get_size_inches()[0] <= 8.4
