"""Why batch norm works (notebook 07): noisy BN, internal covariate shift measured through the gradients,
loss-landscape smoothness."""

import copy

import numpy as np
import pytest
import torch
from torch import nn

from bnlib.course.ch07.landscape import (LANDSCAPE_CONFIG, NOISY_CONFIG, SHIFT_CONFIG, LandscapeRun, NoisyBatchNorm1d,
                                         ShiftRun, distribution_movement, gradient_shift, internal_covariate_shift,
                                         landscape_figure, layer_parameters, loss_landscape, noisy_batch_norm,
                                         noisy_figure, probe_along_gradient, shift_figure)
from bnlib.course.ch07.network import chapter_mlp
from bnlib.course.training import mnist, train_mlp

pytestmark = pytest.mark.slow  # computes experiments on real MNIST (cached afterwards)

VARIANTS = NOISY_CONFIG.variants


@pytest.fixture(scope="module")
def noisy():
    return noisy_batch_norm()


def alternating(examples, units):
    """Inputs whose batch norm is -1, +1, -1, ... down every unit (0, 1, 0, ... normalized, up to eps)."""
    return torch.arange(float(examples)).remainder(2).unsqueeze(1).repeat(1, units)


def test_noisy_batch_norm_perturbs_every_activation_of_every_example_and_redraws():
    """Santurkar et al. 2.1: independent noise on each activation of each example, of non-zero mean and non-unit
    scale, from a distribution that changes at every step; off in eval mode."""
    torch.manual_seed(0)
    layer = NoisyBatchNorm1d(200, scale=2.0, shift=1.0, spread=0.5)
    x = alternating(4000, 200)
    first, second = layer(x).detach(), layer(x).detach()
    up, down = first[1::2], first[0::2]                   # BN(x) = +1: m + c; BN(x) = -1: -m + c
    s, b = (up.mean(0) - down.mean(0)) / 2, (up.mean(0) + down.mean(0)) / 2  # this step's centres s_j, b_j
    assert b.abs().max() < 1.05 and b.std() > 0.4        # b_j ~ U(-1, 1): non-zero means
    assert s.min() > 0.5 * 0.95 and s.max() < 2.0 * 1.05 and s.log().std() > 0.25  # log s_j ~ U(-log 2, log 2)
    expected_spread = (s ** 2 * 0.5 ** 2 / 3 + 0.5 ** 2 / 3).sqrt()  # var(m) = s^2 r^2 / 3, var(c) = r^2 / 3
    torch.testing.assert_close(up.std(0), expected_spread, rtol=0.1, atol=0)  # per example, not per batch
    assert not torch.allclose(first, second)
    layer.eval()
    assert torch.equal(layer(x), layer.norm.eval()(x))
    with pytest.raises(ValueError, match="scale >= 1"):
        NoisyBatchNorm1d(5, scale=0.5)
    with pytest.raises(ValueError, match="spread < 1"):
        NoisyBatchNorm1d(5, spread=1.5)


def test_noisy_batch_norm_with_no_spread_shares_its_noise_across_the_batch():
    torch.manual_seed(1)
    y = NoisyBatchNorm1d(20, spread=0.0)(alternating(64, 20)).detach()
    torch.testing.assert_close(y[1::2], y[1:2].expand(32, 20))
    assert not torch.allclose(y[1], y[0])


def test_noisy_batch_norm_ends_a_few_points_below_batch_norm_about_level_with_no_batch_norm(noisy):
    """Notebook: in our short runs noisy BN ends a few points below BN, about level with the plain network."""
    final = {v: noisy["test_accuracy"][k][-1] for k, v in enumerate(VARIANTS)}
    assert final["batch"] > 0.95
    assert final["batch"] - 0.06 < final["noisy batch"] < final["batch"]
    assert abs(final["noisy batch"] - final["none"]) < 0.03


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
    loss_range, change, per_distance, g_norm = probe_along_gradient(model, x, y, [0.1, 0.4])
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
    assert g_norm == pytest.approx(flat[0].norm().item(), rel=1e-5)
    assert per_distance == pytest.approx(max((flat[1] - flat[0]).norm().item() / (0.1 * g_norm),
                                             (flat[2] - flat[0]).norm().item() / (0.4 * g_norm)), rel=1e-4)


def test_gradient_shift_matches_a_direct_computation_and_leaves_the_model_untouched():
    """G'_i by hand: update layers 1..i-1 (Linear and BN) by -lr G, leave layers i.. at w_t, take layer i's
    weight gradient; compare with G_i as Santurkar et al. do (l2 and cosine)."""
    images, labels = mnist(train=True)
    x, y, lr = images[:60].double(), labels[:60], 0.3
    model = chapter_mlp("batch").double()
    train_mlp(model, images.double(), labels, [[torch.arange(60, 120)]], 0.1)  # one step: BN's gamma is not 1
    before = copy.deepcopy(model.state_dict())
    l2, cosine = gradient_shift(model, x, y, lr)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert len(l2) == len(cosine) == 3  # layers 2, 3, 4

    def weight_gradient(net, i):
        net.zero_grad()
        nn.functional.cross_entropy(net.train()(x), y).backward()
        return [m for m in net if isinstance(m, nn.Linear)][i].weight.grad.clone()

    g = [weight_gradient(copy.deepcopy(model), i) for i in range(4)]
    twin = copy.deepcopy(model)
    twin.zero_grad()
    nn.functional.cross_entropy(twin.train()(x), y).backward()
    steps = {name: -lr * p.grad.clone() for name, p in twin.named_parameters()}
    layer_of = {}
    for index, module in enumerate(model):  # parameter name -> its layer (a Linear and the BN after it)
        layer = sum(isinstance(m, nn.Linear) for m in model[:index + 1]) - 1
        for name, _ in module.named_parameters():
            layer_of[f"{index}.{name}"] = layer
    for i in (1, 2, 3):
        moved = copy.deepcopy(model)
        with torch.no_grad():
            for name, p in moved.named_parameters():
                if layer_of[name] < i:
                    p += steps[name]
        after = weight_gradient(moved, i)
        assert l2[i - 1] == pytest.approx((g[i] - after).norm().item(), rel=1e-9)
        assert cosine[i - 1] == pytest.approx(nn.functional.cosine_similarity(g[i].flatten(), after.flatten(),
                                                                              dim=0).item(), rel=1e-9)
    assert [len(layer) for layer in layer_parameters(model)] == [3, 3, 3, 2]  # W, gamma, beta; the output W, b


@pytest.fixture(scope="module")
def shift():
    result = internal_covariate_shift()
    none, bn = SHIFT_CONFIG.norms.index("none"), SHIFT_CONFIG.norms.index("batch")
    return ({key: np.median(result[key][none], axis=0) for key in ("cosine", "l2")},
            {key: np.median(result[key][bn], axis=0) for key in ("cosine", "l2")})


def test_batch_norm_does_not_reduce_the_gradient_based_internal_covariate_shift(shift):
    """Notebook: in the two hidden layers the gradient turns more with BN (lower median cosine between G and
    G'); in the output layer about the same. Santurkar et al. 2.2: similar or worse with BN."""
    none, bn = shift
    assert np.all(bn["cosine"][:2] < none["cosine"][:2] - 0.04)
    assert abs(bn["cosine"][2] - none["cosine"][2]) < 0.08
    assert np.all(bn["cosine"] < none["cosine"] + 0.08)


def test_the_l2_gradient_shift_is_mixed(shift):
    """Notebook: ||G - G'|| is larger with BN in layer 2 and smaller in the output layer."""
    none, bn = shift
    assert bn["l2"][0] > 1.3 * none["l2"][0]
    assert bn["l2"][2] < 0.7 * none["l2"][2]


def test_batch_norm_smooths_the_loss_landscape():
    """Notebook: over all checkpoints, the median loss range and gradient change along the gradient are several
    times smaller with BN; at the start the untrained plain network sits on a plateau, flatter than BN's."""
    result = loss_landscape()
    none, bn = LANDSCAPE_CONFIG.norms.index("none"), LANDSCAPE_CONFIG.norms.index("batch")
    loss_range = np.median(result["loss_range"], axis=1)
    change = np.median(result["gradient_change"], axis=1)
    assert loss_range[none] > 5 * loss_range[bn]
    assert change[none] > 2 * change[bn]
    assert result["checkpoints"][0] == 0
    assert result["loss_range"][none][0] < result["loss_range"][bn][0]
    assert result["gradient_change"][none][0] < result["gradient_change"][bn][0]


def test_the_probes_move_different_distances_and_per_distance_the_change_is_about_level():
    """Notebook: at step 0 BN's gradient change is tens of times the plain net's, mostly because its probes move
    about ten times farther (||g||); past the start the gradients have about the same size; per distance moved
    (effective beta-smoothness) the medians are about level, while without BN the change grows more with the step."""
    result = loss_landscape()
    none, bn = LANDSCAPE_CONFIG.norms.index("none"), LANDSCAPE_CONFIG.norms.index("batch")
    norm, change = np.array(result["gradient_norm"]), np.array(result["gradient_change"])
    smoothness = np.array(result["effective_smoothness"])
    assert change[bn][0] > 20 * change[none][0]
    assert 5 < norm[bn][0] / norm[none][0] < 20
    assert 2 / 3 < np.median(norm[bn][2:]) / np.median(norm[none][2:]) < 1.5
    assert 0.5 < np.median(smoothness[bn]) / np.median(smoothness[none]) < 2
    smallest = min(LANDSCAPE_CONFIG.step_multipliers) * LANDSCAPE_CONFIG.lr
    growth = change / (smoothness * smallest * norm)  # the largest change over the smallest step's, or less
    assert np.median(growth[none]) > 5 and np.median(growth[bn]) < 2.5   # at most 8: the step sizes span 8x


def test_figures_plot_the_measured_numbers(noisy):
    _, data = noisy_figure()
    np.testing.assert_array_equal(data["batch"]["test_accuracy"], noisy["test_accuracy"][1])
    _, data = landscape_figure()
    np.testing.assert_array_equal(data["loss_range"], loss_landscape()["loss_range"])
    _, data = shift_figure()
    result = internal_covariate_shift()
    np.testing.assert_allclose(data["with BN"]["cosine"], np.median(result["cosine"][1], axis=0))
    assert list(data["layers"]) == [2, 3, 4]


def test_bad_settings_are_refused_clearly():
    with pytest.raises(TypeError, match="learning_rate"):
        NOISY_CONFIG.replace(learning_rate=0.1)
    with pytest.raises(TypeError, match="ShiftRun"):
        internal_covariate_shift(LANDSCAPE_CONFIG)  # the landscape's settings are not the shift experiment's
    with pytest.raises(TypeError, match="LandscapeRun"):
        loss_landscape({"steps": 100})
    with pytest.raises(ValueError, match="eval_every must be between 1 and steps"):
        NOISY_CONFIG.replace(eval_every=0)
    with pytest.raises(ValueError, match="probe_every must be between 1 and steps"):
        ShiftRun(steps=10, probe_every=25)
    with pytest.raises(ValueError, match="probe_every must be between 1 and steps"):
        LandscapeRun(steps=40)


def test_in_train_mode_a_batch_norm_outputs_batch_mean_beta_and_std_gamma_by_construction():
    """Notebook: the movement statistic with BN only shows beta and gamma (in train mode the layer's output has
    batch mean beta and batch std |gamma|, up to eps); with noisy BN it shows the noise injected after it."""
    torch.manual_seed(0)
    layer = NoisyBatchNorm1d(20).train()
    with torch.no_grad():
        layer.norm.weight.copy_(torch.linspace(0.5, 2, 20))
        layer.norm.bias.copy_(torch.linspace(-1, 1, 20))
    x = 3 + 5 * torch.randn(60, 20)
    y = layer.norm(x).detach()
    torch.testing.assert_close(y.mean(0), layer.norm.bias.detach(), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.std(0, unbiased=False), layer.norm.weight.detach(), atol=1e-3, rtol=1e-3)
    assert (layer(x).detach().mean(0) - layer.norm.bias.detach()).abs().max() > 0.1  # the noise moves it
