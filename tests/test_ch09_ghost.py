"""Chapter 9's building blocks that need no experiment: ghost batch norm, the shards, the cost model."""

import math

import pytest
import torch

from bnlib import BatchNorm1d
from bnlib.course.ch09 import cost, shards
from bnlib.course.ch09.ghost import GhostBatchNorm, with_ghost_batches
from bnlib.course.models import paper_mlp


def batch(seed=0, shape=(12, 3)):
    generator = torch.Generator().manual_seed(seed)
    return 3.0 + 2.0 * torch.randn(shape, generator=generator, dtype=torch.float64)


@pytest.mark.parametrize("shape", [(12, 3), (12, 3, 5)], ids=["(N, C)", "(N, C, L)"])
@pytest.mark.parametrize("ghost_size", [2, 3, 4, 12])
def test_ghost_batch_norm_is_batch_norm_on_each_ghost_batch_in_turn(ghost_size, shape):
    """Outputs, input and parameter gradients (random upstream gradient) and running statistics."""
    x, upstream = batch(0, shape), batch(1, shape)
    ghost, plain = GhostBatchNorm(3, ghost_size, dtype=torch.float64), BatchNorm1d(3, dtype=torch.float64)
    with torch.no_grad():
        for layer in (ghost, plain):
            layer.weight.copy_(torch.tensor([0.5, 1.5, -1.0]))
            layer.bias.copy_(torch.tensor([0.1, 0.0, 2.0]))
    xs = [x.clone().requires_grad_() for _ in range(2)]
    out = ghost(xs[0])
    expected = torch.cat([plain(part) for part in xs[1].split(ghost_size)])
    out.backward(upstream)
    expected.backward(upstream)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-14)
    torch.testing.assert_close(xs[0].grad, xs[1].grad, rtol=0, atol=1e-13)
    for name in ("weight", "bias"):
        torch.testing.assert_close(getattr(ghost, name).grad, getattr(plain, name).grad, rtol=0, atol=1e-13)
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        torch.testing.assert_close(getattr(ghost, name), getattr(plain, name), rtol=0, atol=1e-14)
    torch.testing.assert_close(ghost.eval()(x), plain.eval()(x), rtol=0, atol=1e-14)


def test_running_from_first_follows_the_first_ghost_batch_only():
    x = batch(2)
    x[4:] += 100.0  # the other ghost batches are far away: any step towards them would show
    ghost, first = GhostBatchNorm(3, 4, running_from="first", dtype=torch.float64), BatchNorm1d(3, dtype=torch.float64)
    ghost(x)
    first(x[:4])
    torch.testing.assert_close(ghost.running_mean, first.running_mean, rtol=0, atol=1e-14)
    torch.testing.assert_close(ghost.running_var, first.running_var, rtol=0, atol=1e-14)


def test_with_ghost_batches_swaps_every_batch_norm_and_keeps_its_tensors():
    model = paper_mlp(batch_norm=True)
    before = {key: value.clone() for key, value in model.state_dict().items()}
    with_ghost_batches(model, 15, running_from="first")
    layers = [m for m in model if isinstance(m, BatchNorm1d)]
    assert len(layers) == 3 and all(type(m) is GhostBatchNorm and m.ghost_size == 15 for m in layers)
    assert all(m.running_from == "first" for m in layers)
    after = model.state_dict()
    assert list(after) == list(before) and all(torch.equal(after[k], v) for k, v in before.items())


def test_bad_ghost_settings_say_what_to_do():
    with pytest.raises(ValueError, match="ghost_size must be an int of at least 2"):
        GhostBatchNorm(3, 1)
    with pytest.raises(ValueError, match="running_from must be 'all'"):
        GhostBatchNorm(3, 4, running_from="last")
    with pytest.raises(ValueError, match="multiple of ghost_size"):
        GhostBatchNorm(3, 4)(torch.randn(10, 3))


def test_every_split_of_a_step_holds_the_same_global_batch():
    """Sync batch norm and one process see the same batches whatever the devices and the skew."""
    labels = torch.arange(1000) % 10
    reference = shards.sharded_batches(labels, 1, 0.0, 60, 5, seed=3)
    for world_size in (2, 4, 10):
        for skew in (0.0, 0.5, 1.0):
            split = shards.sharded_batches(labels, world_size, skew, 60, 5, seed=3)
            assert split.shape == (5, world_size, 60 // world_size)
            for step in range(5):
                assert torch.equal(split[step].reshape(-1).sort().values, reference[step, 0].sort().values)


def test_skew_one_sorts_the_batch_by_class_and_skew_zero_does_not():
    labels = torch.arange(6000) % 10
    sorted_split = shards.sharded_batches(labels, 4, 1.0, 60, 20)
    for step in sorted_split:
        assert torch.all(labels[step.reshape(-1)].diff() >= 0)  # sorted: each device a few neighbouring classes
    assert shards.classes_per_device(labels, sorted_split) < 4
    assert shards.classes_per_device(labels, shards.sharded_batches(labels, 4, 0.0, 60, 20)) > 7


def test_bad_splits_say_what_to_do():
    labels = torch.arange(100) % 10
    with pytest.raises(ValueError, match="must split evenly"):
        shards.sharded_batches(labels, 7, 0.0, 60, 1)
    with pytest.raises(ValueError, match="skew is the fraction"):
        shards.sharded_batches(labels, 2, 1.5, 60, 1)
    with pytest.raises(ValueError, match="at least 2 examples"):
        shards.sharded_batches(labels, 60, 0.0, 60, 1)


def test_bytes_per_layer_follow_the_sync_module():
    table = cost.bytes_per_layer(channels=100, world_size=4)
    assert sum(sent for sent, _ in table.values()) == 16 + 24 * 100
    assert table["forward: mean, M2 (all_gather)"] == (1600, 6400)


def test_the_model_is_latency_bound_on_a_ring_and_a_tree_needs_log_p_rounds():
    """The alpha-beta model's claims in the notebook: a ring at 1,000 devices spends almost all its time on
    latency, tens of times the tree's; one device's message per round reproduces the formulas by hand."""
    alpha, beta = cost.ALPHA, cost.BETA
    assert cost.all_gather_seconds(2, 100, "ring") == pytest.approx(alpha + 100 * beta)
    assert cost.all_reduce_seconds(1024, 800, "tree") == pytest.approx(2 * 10 * (alpha + 800 * beta))
    assert cost.all_reduce_seconds(1000, 800, "ring") == pytest.approx(2 * 999 * (alpha + 0.8 * beta))
    rows = {row["devices"]: row for row in cost.model_table()}
    assert rows[1000]["ring_latency_share"] > 0.95
    assert rows[1000]["ring"] > 30 * rows[1000]["tree"]
    assert math.isclose(rows[2]["ring"], rows[2]["tree"], rel_tol=0.05)  # two devices: one message either way
    assert rows[1000]["received_bytes"] == 1000 * (16 + 1600) + 800


@pytest.mark.parametrize("k", [2, 4])
def test_a_random_shard_s_mean_differs_from_the_batch_mean_by_sigma_over_sqrt_b_times_sqrt_1_minus_1_over_k(k):
    """Notebook section 1: std(mu_r - mu) = sigma / sqrt(b) * sqrt(1 - 1/k) for random shards of b."""
    b, sigma = 16, 3.0
    x = sigma * torch.randn(200_000, k, b, generator=torch.Generator().manual_seed(k), dtype=torch.float64)
    shard_means = x.mean(2)
    spread = (shard_means - shard_means.mean(1, keepdim=True)).std().item()
    assert spread == pytest.approx(sigma / math.sqrt(b) * math.sqrt(1 - 1 / k), rel=0.02)
    assert spread < 0.9 * sigma / math.sqrt(b)                          # not chapter 07's sigma / sqrt(b)


def test_ghost_batches_of_10_take_40_ema_steps_per_step_and_keep_noisier_running_statistics():
    """Notebook section 5: at ghost size 10 a training step of 400 takes 40 EMA steps, each on 10 examples, so
    the running statistics are noisier than plain batch norm's."""
    from bnlib.course.ch09.ghost import GHOST_CONFIG
    assert GHOST_CONFIG.batch_size // min(GHOST_CONFIG.ghost_sizes) == 40
    generator = torch.Generator().manual_seed(0)
    spread = {}
    for ghost_size in (400, 10):
        layer = GhostBatchNorm(200, ghost_size) if ghost_size < 400 else BatchNorm1d(200)
        for _ in range(50):
            layer(torch.randn(400, 200, generator=generator))
        spread[ghost_size] = layer.running_mean.std().item()   # the true mean is 0 in every unit
    assert spread[10] > 3 * spread[400]
