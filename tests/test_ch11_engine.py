"""Chapter 11's engine: the residual blocks compute what their kind says, the Batch Renorm schedule and the
batches are what the chapter describes, the runs split over two processes. Fast: random data, no training."""

import math

import pytest
import torch

from bnlib import BatchRenorm1d
from bnlib.course.ch11 import runs
from bnlib.course.ch11.renorm import GRID, held_out_batches, normalized_mlp, one_class_batches, renorm_limits
from bnlib.course.ch11.residual import KINDS, Block, ResMLP, zero_init_last_bn
from bnlib.course.ch11.sweep import SWEEP, sweep_net
from bnlib.course.parallel import split_by_cost
from bnlib.course.training import train_mlp


@pytest.mark.parametrize("kind", KINDS)
def test_a_block_is_its_kinds_formula(kind):
    torch.manual_seed(0)
    block, x = Block(6, kind).train(), torch.randn(20, 6)
    if kind == "skipinit":
        assert torch.equal(block(x), x)  # alpha = 0: the identity at first
        with torch.no_grad():
            block.alpha.fill_(0.5)
    f = block.branch(x)
    expected = {"branch": x + f, "post": torch.relu(x + f), "none": x + f, "skipinit": x + f,
                "after": torch.relu(torch.nn.functional.batch_norm(x + f, None, None, training=True))}[kind]
    assert torch.allclose(block(x), expected, atol=1e-6)
    if kind == "skipinit":
        plain = Block(6, "none")
        plain.load_state_dict({k: v for k, v in block.state_dict().items() if k != "alpha"})
        assert torch.allclose(f, 0.5 * plain.branch(x))


def test_he_init_keeps_a_plain_branchs_variance_and_bn_makes_it_one():
    x = torch.randn(4000, 100)
    assert abs(Block(100, "branch").train().branch(x).var(0).mean().item() - 1) < 0.01
    torch.manual_seed(1)
    layer = Block(100, "none").linear1
    assert abs(layer(torch.randn(4000, 100)).var(0).mean().item() - 2) < 0.2  # N(0, 2 / fan_in): twice the input


def test_zero_init_gamma_makes_every_block_the_identity_and_only_touches_the_last_bn():
    model, fresh = zero_init_last_bn(ResMLP(3, "branch", width=8)), ResMLP(3, "branch", width=8)
    x = torch.randn(10, 8)
    for block, old in zip(model.blocks, fresh.blocks):
        assert torch.equal(block.train()(x), x) and (block.norm2.weight == 0).all()
        assert torch.equal(block.norm1.weight, old.norm1.weight) and torch.equal(block.linear2.weight, old.linear2.weight)
    assert [sweep_net(v, SWEEP.replace(depth=2)).blocks[0].kind for v in SWEEP.variants] == \
        ["branch", "branch", "skipinit", "none"]


def test_a_diverging_run_stops_at_its_first_non_finite_loss():
    model = ResMLP(2, "none", width=8)
    images, labels = torch.randn(40, 784), torch.randint(10, (40,))
    losses = train_mlp(model, images, labels, [[torch.arange(20)]] * 30, 1e6, stop_if_diverged=True)
    first = next(i for i, v in enumerate(losses) if not math.isfinite(v))
    assert 0 < first < 30 and all(math.isnan(v) for v in losses[first:])


def test_the_renorm_schedule_starts_as_batch_norm_and_ramps_to_3_and_5():
    steps = GRID.steps
    assert renorm_limits(0, steps) == (1.0, 0.0) and renorm_limits(steps // 10, steps) == (1.0, 0.0)
    assert renorm_limits(int(0.35 * steps), steps)[1] == pytest.approx(5.0)
    assert renorm_limits(steps // 2, steps) == pytest.approx((3.0, 5.0)) == renorm_limits(steps - 1, steps)
    r, d = zip(*(renorm_limits(step, steps) for step in range(steps)))
    assert list(r) == sorted(r) and list(d) == sorted(d)
    model = normalized_mlp("Batch Renorm")
    assert all(layer.momentum == 0.01 for layer in model if isinstance(layer, BatchRenorm1d))


def test_class_sorted_batches_hold_one_class_in_turn_and_test_batches_too():
    labels = torch.arange(1000) % 10
    for step, (batch,) in enumerate(one_class_batches(labels, 4, 25, seed=2)):
        assert (labels[batch] == step % 10).all()
    sorted_batches = held_out_batches(labels, 8, "sorted")
    assert all(len(set(labels[b].tolist())) == 1 for b in sorted_batches) and len(sorted_batches) == 10 * (100 // 8)
    assert torch.equal(torch.cat(held_out_batches(labels, 8, "iid")), torch.arange(1000 - 1000 % 8))


def test_the_runs_split_over_two_processes_by_cost():
    parts = split_by_cost({name: cost for name, (_, _, _, cost) in runs.EXPERIMENTS.items()})
    assert len(parts) == 2 and sorted(sum(parts, [])) == sorted(runs.EXPERIMENTS)
    assert GRID.lr(2) == pytest.approx(1 / 32) and GRID.lr(60) == 0.1


@pytest.mark.parametrize("layer", [lambda: torch.nn.BatchNorm1d(5, dtype=torch.float64),
                                   lambda: BatchRenorm1d(5, r_max=3.0, d_max=5.0).double()], ids=["BN", "BRN"])
def test_a_batch_of_two_passes_down_almost_no_gradient(layer):
    """Notebook 11, section 4: in a batch of two x_hat is +-1 whatever x is, so the gradient below a batch norm or
    a Batch Renorm layer is zero but for what eps leaves, against a batch of four's."""
    norms = {}
    for m in (2, 4):
        generator = torch.Generator().manual_seed(m)
        x = (torch.randn(m, 5, generator=generator, dtype=torch.float64) * 3).requires_grad_()
        layer()(x).mul(torch.randn(m, 5, generator=generator, dtype=torch.float64)).sum().backward()
        norms[m] = x.grad.norm().item()
    assert norms[2] < 1e-3 * norms[4], norms
