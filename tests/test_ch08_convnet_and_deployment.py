"""Notebook 08's claims, on its own runs: the learning-rate sweep, folding, frozen batch norm, recalibration
and dropout's variance shift. Margins are wide: training is chaotic, and these hold on any CPU."""

import copy

import numpy as np
import pytest
import torch
from explorer_checks import assert_control_changes_readout_and_plot

from bnlib import BatchNorm2d
from bnlib.course.ch08 import convnet, deployment, folding
from bnlib.course.ch08.figures import recalibration_figure, sweep_figure
from bnlib.course.ch08.explorers import recalibration_explorer
from bnlib.running_stats import recompute_population_statistics

pytestmark = pytest.mark.slow  # trains conv nets on MNIST (cached after the first run)


@pytest.fixture(scope="module")
def sweep():
    return convnet.lr_sweep(progress=False)


@pytest.fixture(scope="module")
def net(sweep):
    return convnet.trained_net(sweep)


def test_both_versions_start_from_the_same_weights():
    plain, bn = convnet.conv_net(False), convnet.conv_net(True)
    for name in ("conv1.weight", "conv2.weight", "fc.weight", "fc.bias"):
        assert torch.equal(plain.state_dict()[name], bn.state_dict()[name]), name
    assert bn.conv1.bias is None and isinstance(bn.bn1, torch.nn.modules.batchnorm._BatchNorm)


def test_bn_widens_the_usable_learning_rates_but_not_without_limit(sweep):
    """Section 2: both learn at rates up to 0.3, BN at least as fast to 90%; at 1.0 only BN learns; at 3.0 neither."""
    final = {(version, lr): accuracy for lr, version, _, accuracy, _ in convnet.sweep_table(sweep)}
    reached = {(version, lr): steps for lr, version, steps, _, _ in convnet.sweep_table(sweep)}
    for lr in (0.03, 0.1, 0.3):
        assert final["BN", lr] > 0.93 and final["plain", lr] > 0.8, lr
        assert reached["BN", lr] is not None and (reached["plain", lr] is None or reached["BN", lr] <= reached["plain", lr])
    assert reached["plain", 0.03] is None or reached["plain", 0.03] > 2 * reached["BN", 0.03]
    assert final["BN", 1.0] > 0.5 and final["plain", 1.0] < 0.2
    assert final["BN", 3.0] < 0.2 and final["plain", 3.0] < 0.2
    # "one step of our grid (about three times)": the grid's rates are half a decade apart, and the largest rate
    # that learns is the next one up with BN; the true factor lies between about 1 and 10
    lrs = list(sweep["lrs"])
    np.testing.assert_allclose(np.diff(np.log10(lrs)), 0.5, atol=0.03)
    largest = {v: max(lr for lr in lrs if final[v, lr] > 0.5) for v in ("plain", "BN")}
    assert lrs.index(largest["BN"]) == lrs.index(largest["plain"]) + 1


def test_the_sweep_figure_plots_the_sweep(sweep):
    figure, data = sweep_figure(sweep)
    np.testing.assert_array_equal(figure.axes[0].get_lines()[1].get_ydata(), sweep["accuracy"][1, 0])
    assert data["accuracy"].shape == (2, len(sweep["lrs"]), len(sweep["steps"]))


def test_bn_normalizes_each_channel_of_real_feature_maps(net):
    stats = convnet.channel_statistics(net, convnet.images_2d(False)[0][:256])
    assert np.ptp(stats["mean before"]) > 0.05 and np.ptp(stats["std before"]) > 0.02  # channels differ
    np.testing.assert_allclose(stats["mean after"], 0, atol=1e-5)
    np.testing.assert_allclose(stats["std after"], 1, atol=1e-3)


def test_folding_is_exact_in_float64_and_matches_torchs_fuse(net):
    errors = folding.folding_errors(net, convnet.images_2d(False)[0][:200])
    assert max(errors.values()) < 1e-12, errors


def test_the_fold_handles_a_conv_with_a_bias():
    conv, bn = torch.nn.Conv2d(2, 3, 3).double(), BatchNorm2d(3).double()
    bn.train()(conv(torch.randn(8, 2, 6, 6, dtype=torch.float64)))  # statistics of a batch
    bn.eval()
    x = torch.randn(4, 2, 6, 6, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(folding.fold_bn_into_conv(conv, bn)(x), bn(conv(x)), rtol=0, atol=1e-12)


def test_requires_grad_false_lets_the_statistics_move_and_the_fixes_do_not():
    result = deployment.finetune()
    moved = dict(zip(deployment.FINETUNE.variants, result["moved"]))
    after = dict(zip(deployment.FINETUNE.variants, result["after"]))
    assert moved["requires_grad=False"] > 0.05
    assert moved["BN in eval mode"] == 0 and moved["FrozenBatchNorm2d"] == 0
    np.testing.assert_allclose(after["BN in eval mode"], after["FrozenBatchNorm2d"], atol=1e-3)  # the same map
    assert after["requires_grad=False"][1] < result["before"][1] - 0.2  # the originals: broken silently
    assert after["BN in eval mode"][1] > result["before"][1] - 0.1      # kept
    assert after["BN in eval mode"][0] > result["before"][0] + 0.3      # and the classifier did learn


def test_update_bn_and_ours_recompute_the_same_statistics(net):
    batches = list(deployment.shifted(convnet.images_2d(True)[0][:320], 0.3).split(64))
    ours, theirs = copy.deepcopy(net), deployment.recalibrate_with_update_bn(net, batches)
    recompute_population_statistics(ours, batches)
    for name in ("bn1", "bn2"):
        for buffer in ("running_mean", "running_var"):
            torch.testing.assert_close(getattr(getattr(ours, name), buffer), getattr(getattr(theirs, name), buffer))
        assert not torch.allclose(getattr(ours, name).running_mean, getattr(net, name).running_mean)


def test_each_channel_statistic_of_a_batch_of_64_averages_24x24_values_at_bn1_and_8x8_at_bn2():
    """Section 6: 64 x 24 x 24 values per channel at bn1, 64 x 8 x 8 at bn2; no padding, so a contrast shift
    c x + d is the same affine map at every position of the first convolution's output."""
    net = convnet.conv_net(True).eval()
    x = convnet.images_2d(False)[0][:64]
    with torch.no_grad():
        first = net.conv1(x)
        second = net.conv2(torch.nn.functional.max_pool2d(torch.relu(net.bn1(first)), 2))
        shifted = net.conv1(0.3 * x + 0.35)
    assert first.shape[2:] == (24, 24) and second.shape[2:] == (8, 8)
    assert net.conv1.padding == (0, 0) and net.conv2.padding == (0, 0)
    offset = 0.35 * net.conv1.weight.sum((1, 2, 3)).view(1, -1, 1, 1)
    torch.testing.assert_close(shifted, 0.3 * first + offset, atol=1e-5, rtol=1e-5)


def test_recalibration_undoes_a_contrast_shift_and_only_part_of_noise():
    result = deployment.recalibration()
    shifts, accuracy = deployment.RECALIBRATE.shifts, result["accuracy"]
    clean = accuracy[shifts.index(("contrast", 1.0)), 0]
    for row, (kind, level) in enumerate(shifts):
        if kind == "contrast" and level <= 0.3:
            assert accuracy[row, 0] < clean - 0.3                          # stale statistics fail
            assert np.all(accuracy[row, 1:] > clean - 0.01)                # one batch repairs it all
        if kind == "contrast" and level < 1:
            assert accuracy[row, 0] + 0.1 < result["plain_accuracy"][row] < accuracy[row, 1]  # stale < plain < recalibrated
    noisy = shifts.index(("noise", 0.5))
    assert accuracy[noisy, 0] + 0.1 < accuracy[noisy, -1] < clean - 0.05   # part of the way
    assert result["plain_accuracy"][noisy] > accuracy[noisy, -1]           # the plain net ahead of both
    figure, data = recalibration_figure(result)
    np.testing.assert_array_equal(figure.axes[0].get_lines()[0].get_ydata(), accuracy[0])


def test_dropout_before_bn_shrinks_the_test_variance_and_recomputing_restores_it():
    result = deployment.variance_shift()
    ratio = result["ratio"].mean(1)
    assert ratio[-1] < ratio[0] - 0.1 and np.all(np.diff(ratio) < 0)  # more dropout, less test variance
    assert ratio[0] > 1.0 and ratio[-1] < 0.95                     # at p = 0 a little above 1; below 1 at 0.5
    np.testing.assert_allclose(result["fixed_ratio"].mean(1), 1, atol=0.05)
    np.testing.assert_allclose(result["fixed_accuracy"], result["accuracy"], atol=0.01)  # "barely changes"


def test_the_explorer_answers_every_control(sweep):
    explorer = recalibration_explorer(test_examples=500)
    assert explorer.error is None, explorer.text
    assert explorer.text.startswith("recalibrated BN ")
    assert "contrast strength 0.80 (contrast x0.28)" in explorer.text  # one name for one setting
    assert_control_changes_readout_and_plot(explorer, "strength", 0.3)
    assert_control_changes_readout_and_plot(explorer, "kind", "noise")
    assert_control_changes_readout_and_plot(explorer, "batches", 4)


def test_bad_settings_are_refused_clearly():
    with pytest.raises(TypeError, match="learning_rate"):
        convnet.SWEEP.replace(learning_rate=0.1)
    with pytest.raises(TypeError, match="FinetuneRun"):
        deployment.finetune(deployment.DROPOUT)
    with pytest.raises(ValueError, match="tested at least once"):
        convnet.LrSweepRun(steps=20)
    with pytest.raises(ValueError, match="a fraction between 0 and 1"):
        convnet.SWEEP.replace(target=90)
    with pytest.raises(ValueError, match="unknown variant"):
        deployment.FINETUNE.replace(variants=("BN in eval",))
    with pytest.raises(ValueError, match=r"contrast must be in \(0, 1\]"):
        deployment.FinetuneRun(contrast=1.5)
    with pytest.raises(ValueError, match="nothing gets through"):
        deployment.DROPOUT.replace(ps=(0.5, 1.0))


def test_update_bn_recomputes_with_dropout_on_and_ours_with_it_off():
    """Section 6: update_bn and ours agree only without dropout: update_bn puts the whole model in train
    mode, so on the dropout MLP its running variance is the larger one (dropout on), by more at a higher rate."""
    from bnlib.course.ch08.dropout_recalibration import update_bn_with_dropout
    none, half = update_bn_with_dropout(0.0), update_bn_with_dropout(0.5)
    np.testing.assert_allclose(none["var_ratio"], 1, rtol=1e-4)
    assert 1.2 < half["var_ratio"].mean() < 1.6 and np.mean(half["var_ratio"] > 1) > 0.9  # "about a third"
    assert half["accuracy"]["update_bn"] <= half["accuracy"]["ours"] + 0.005
