"""Why batch norm works (notebook 07): noisy BN, loss-landscape smoothness, the largest learning rate."""

import copy

import numpy as np
import pytest
import torch
from torch import nn

from bnlib.course.ch07.landscape import (LANDSCAPE_CONFIG, MAX_LR_CONFIG, NOISY_CONFIG, NoisyBatchNorm1d,
                                         distribution_movement, landscape_figure, largest_trainable_lr,
                                         learning_rate_figure, loss_landscape, max_learning_rate, noisy_batch_norm,
                                         noisy_figure, probe_along_gradient)
from bnlib.course.ch07.network import chapter_mlp
from bnlib.course.training import mnist

pytestmark = pytest.mark.slow  # computes experiments on real MNIST (cached afterwards)

VARIANTS = NOISY_CONFIG["variants"]


@pytest.fixture(scope="module")
def noisy():
    return noisy_batch_norm()


def test_noisy_batch_norm_scales_and_shifts_each_unit_within_its_ranges_and_redraws():
    torch.manual_seed(0)
    layer = NoisyBatchNorm1d(50, scale=2.0, shift=1.0)
    x = torch.randn(64, 50) * 3 + 5
    first, second = layer(x), layer(x)
    mean, std = first.mean(0), first.std(0, unbiased=False)
    assert mean.abs().max() <= 1.0 and mean.abs().max() > 0.5                 # c_j in [-1, 1], not zero
    assert std.min() >= 0.5 - 1e-4 and std.max() <= 2.0 + 1e-4                  # s_j in [1/2, 2], not one
    assert (std - 1).abs().max() > 0.3
    assert not torch.allclose(first, second)
    layer.eval()
    assert torch.equal(layer(x), layer.norm.eval()(x))
    with pytest.raises(ValueError, match="scale >= 1"):
        NoisyBatchNorm1d(5, scale=0.5)


def test_noisy_batch_norm_trains_about_as_well_as_batch_norm(noisy):
    """Notebook: final test accuracy of noisy BN within a few points of BN (about 94.5% against 97.1%)."""
    final = {v: noisy["test_accuracy"][k][-1] for k, v in enumerate(VARIANTS)}
    assert final["batch"] > 0.95
    assert final["noisy batch"] > final["batch"] - 0.04


def test_noisy_batch_norm_learns_faster_than_no_batch_norm_early_on(noisy):
    """Notebook: over the first 500 steps noisy BN is ahead of the network without BN at every checkpoint."""
    early = (noisy["checkpoints"] > 0) & (noisy["checkpoints"] <= 500)
    none, noisy_bn = (noisy["test_accuracy"][VARIANTS.index(v)][early] for v in ("none", "noisy batch"))
    assert np.all(noisy_bn > none + 0.02)


def test_noisy_layer_inputs_move_far_more_than_with_batch_norm_or_without_it(noisy):
    """Notebook: the movement of the layer input is largest with noisy BN, tiny with BN."""
    movement = {v: distribution_movement(noisy["input_mean"][k], noisy["input_std"][k])
                for k, v in enumerate(VARIANTS)}
    assert movement["noisy batch"] > 1.5 * movement["none"]
    assert movement["none"] > 10 * movement["batch"]


def test_probe_matches_a_direct_computation_and_leaves_the_model_untouched():
    images, labels = mnist(train=True)
    x, y = images[:60], labels[:60]
    model = chapter_mlp("batch")
    before = copy.deepcopy(model.state_dict())
    loss_range, change = probe_along_gradient(model, x, y, [0.1, 0.4])
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    losses, grads = [], []
    for eta in (0.0, 0.1, 0.4):
        twin = copy.deepcopy(model)
        if eta:
            with torch.no_grad():
                for p, g in zip(twin.parameters(), grads[0]):
                    p -= eta * g
        twin.zero_grad()
        loss = nn.functional.cross_entropy(twin(x), y)
        loss.backward()
        losses.append(loss.item())
        grads.append([p.grad.clone() for p in twin.parameters()])
    flat = [torch.cat([g.flatten() for g in gs]) for gs in grads]
    assert loss_range == pytest.approx(abs(losses[2] - losses[1]), rel=1e-4)
    assert change == pytest.approx(max((flat[1] - flat[0]).norm().item(), (flat[2] - flat[0]).norm().item()),
                                   rel=1e-4)


def test_batch_norm_smooths_the_loss_landscape():
    """Notebook: after the first checkpoint, the median loss range and gradient change along the gradient
    are several times smaller with BN."""
    result = loss_landscape()
    none, bn = LANDSCAPE_CONFIG["norms"].index("none"), LANDSCAPE_CONFIG["norms"].index("batch")
    later = result["checkpoints"] > 0
    loss_range = np.median(result["loss_range"][:, later], axis=1)
    change = np.median(result["gradient_change"][:, later], axis=1)
    assert loss_range[none] > 5 * loss_range[bn]
    assert change[none] > 2 * change[bn]


def test_batch_norm_trains_at_a_ten_times_larger_learning_rate():
    """Notebook: the largest learning rate reaching 90% is 0.3 without BN and 3 with BN."""
    result = max_learning_rate()
    none, bn = (largest_trainable_lr(result["lrs"], result["test_accuracy"][k]) for k in (0, 1))
    assert MAX_LR_CONFIG["norms"] == ("none", "batch")
    assert bn >= 10 * none


def test_largest_trainable_lr_picks_the_last_good_one():
    assert largest_trainable_lr([0.1, 1, 10], [0.95, 0.92, 0.1]) == 1
    assert largest_trainable_lr([0.1, 1, 10], [0.5, 0.95, 0.91]) == 10
    assert largest_trainable_lr([0.1, 1], [0.5, 0.5]) is None


def test_figures_plot_the_measured_numbers(noisy):
    _, data = noisy_figure()
    np.testing.assert_array_equal(data["batch"]["test_accuracy"], noisy["test_accuracy"][1])
    _, data = landscape_figure()
    np.testing.assert_array_equal(data["loss_range"], loss_landscape()["loss_range"])
    _, data = learning_rate_figure()
    assert data["with BN"]["largest_trainable_lr"] >= 10 * data["no BN"]["largest_trainable_lr"]
