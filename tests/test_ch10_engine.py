"""Chapter 10's engine: the batched model trains like separate plain networks, the recorded angle is the angle,
the formulas and settings refuse nonsense. Fast: random data, a few steps."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from bnlib.course.ch10 import runs
from bnlib.course.ch10.batched import BatchedMLP, evaluate_runs
from bnlib.course.ch10.dynamics import GridRun, momentum_candidates, trailing_rms
from bnlib.course.ch10.equivalence import TINY_EPS, EquivalenceRun, parameter_groups
from bnlib.course.ch10.geometry import chapter_network, linear_layers, scale_table
from bnlib.course.ch10.initialization import InitSweep, initial_stds
from bnlib.course.parallel import split_by_cost
from bnlib.course.training import small_model_settings
from bnlib.course.ch10.optimizer import (Optimizer, equilibrium_angle, equilibrium_steps, predicted_norm2, rms,
                                         step_records, train_runs, update_direction)


def random_data(n=240, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(n, 784, generator=generator, dtype=torch.float64), torch.randint(10, (n,), generator=generator)


def test_the_batched_model_trains_each_run_as_its_own_plain_network():
    """Three runs with different settings (one with momentum, one with its own lr for gamma, beta and the last
    layer) against torch.optim.SGD on each run's plain network: the same weights after 8 steps, in float64."""
    images, labels = random_data()
    optimizers = [Optimizer(0.1, 1e-2), Optimizer(0.2, 3e-3, momentum=0.9), Optimizer(0.4, 0.0, other_lr=0.05)]
    with small_model_settings():
        trained_alike(images, labels, optimizers)


def trained_alike(images, labels, optimizers):
    model = BatchedMLP(3, dtype=torch.float64).init_normal([0, 1, 2], 0.05)
    networks = [model.network(run) for run in range(3)]
    batches = [torch.arange(i * 30, i * 30 + 30) for i in range(8)]
    train_runs(model, images, labels, batches, optimizers)
    for run, (network, settings) in enumerate(zip(networks, optimizers)):
        other = settings.other_lr or settings.lr
        groups = parameter_groups(network, settings.lr, settings.wd)
        groups[1]["lr"] = groups[2]["lr"] = other
        optimizer = torch.optim.SGD(groups, lr=settings.lr, momentum=settings.momentum)
        for batch in batches:
            optimizer.zero_grad()
            nn.functional.cross_entropy(network(images[batch]), labels[batch]).backward()
            optimizer.step()
        mine = model.network(run)
        for ours, theirs in zip(mine.state_dict().values(), network.state_dict().values()):
            assert torch.allclose(ours.double(), theirs.double(), rtol=1e-10, atol=1e-12)


def test_evaluation_is_each_runs_own_and_leaves_the_mode():
    images, labels = random_data(100)
    model = BatchedMLP(2, dtype=torch.float64).init_normal([0, 1], 0.05)
    accuracy, loss = evaluate_runs(model, images, labels, chunk=30)
    for run in range(2):
        with torch.no_grad():
            logits = model.network(run).eval()(images)
        assert accuracy[run] == pytest.approx((logits.argmax(1) == labels).double().mean().item())
        assert loss[run] == pytest.approx(nn.functional.cross_entropy(logits, labels).item())
    assert model.training


def test_the_recorded_angle_is_the_angle_between_the_weights_before_and_after_the_step():
    generator = torch.Generator().manual_seed(0)
    w, g = (torch.randn(3, 500, generator=generator, dtype=torch.float64) for _ in range(2))
    lr, wd = torch.tensor([0.1, 0.4, 2.0], dtype=torch.float64).view(3, 1), torch.tensor([0.0, 1e-2, 0.5],
                                                                                          dtype=torch.float64).view(3, 1)
    u = update_direction(w, g, wd)
    plain = step_records(w, g, lr, wd)
    given = step_records(w, g, lr, wd, u)  # the momentum path, handed the same direction
    after = w - lr * u
    cosine = (w * after).sum(1) / (w.norm(dim=1) * after.norm(dim=1))
    for records in (plain, given):
        assert torch.allclose(records[3], torch.arccos(cosine), rtol=1e-9)
        assert torch.allclose(records[0], (w * w).sum(1)) and torch.allclose(records[1], (g * g).sum(1))
        assert torch.allclose(records[2], (w * g).sum(1) / (w.norm(dim=1) * g.norm(dim=1)))


def test_momentum_direction_is_torchs_velocity():
    w, g = torch.ones(1, 4), torch.full((1, 4), 2.0)
    velocity = torch.zeros(1, 4)
    first = update_direction(w, g, 0.5, 0.9, velocity).clone()  # v = g + wd w
    second = update_direction(w, g, 0.5, 0.9, velocity)         # v = 0.9 v + g + wd w
    assert torch.equal(first, torch.full((1, 4), 2.5)) and torch.allclose(second, torch.full((1, 4), 4.75))


def test_the_formulas():
    norm2, grad2 = np.array([1.0, 1.0, 1.0, 1.0]), np.array([1.0, 2.0, 3.0, 4.0])
    assert np.allclose(predicted_norm2(norm2, grad2, 0.5), [1.0, 1.25, 1.75, 2.5])  # the step's own gradient comes after
    assert equilibrium_angle(0.2, 0.01) == pytest.approx(0.06324555)
    assert equilibrium_angle(0.02, 0.01, 0.9) == pytest.approx(math.sqrt(0.0004 / 1.9))
    assert equilibrium_steps(0.1, 1e-2) == pytest.approx(500) and equilibrium_steps(0.02, 1e-2, 0.9) == pytest.approx(250)
    assert rms(np.array([3.0, 4.0])) == pytest.approx(math.sqrt(12.5))
    guesses = momentum_candidates(0.02, 1e-2, 0.9)
    assert guesses["sqrt(2 lr wd)"] < guesses["sqrt(2 lr wd / (1 - mu))"]
    assert guesses["sqrt(2 lr wd / (1 + mu))"] < guesses["sqrt(2 lr wd)"]
    angles = np.array([1.0, 1.0, 2.0, 2.0])
    assert np.isnan(trailing_rms(angles, 2)[0]) and trailing_rms(angles, 2)[2] == pytest.approx(math.sqrt(2.5))


def test_settings_refuse_nonsense_with_the_fix():
    with pytest.raises(ValueError, match="positive learning rate"):
        Optimizer(0.0)
    with pytest.raises(ValueError, match="momentum must be in"):
        Optimizer(0.1, momentum=1.0)
    with pytest.raises(ValueError, match="weight decay of 0 or more"):
        Optimizer(0.1, wd=-1e-3)
    with pytest.raises(ValueError, match="must exceed"):
        GridRun(steps=400)
    with pytest.raises(ValueError, match="two orders of magnitude"):
        InitSweep(scales=(0.5, 1.0, 2.0, 4.0))
    with pytest.raises(ValueError, match="a case is"):
        EquivalenceRun(cases=(("float16", 1e-5, (3.0,)),))
    with pytest.raises(ValueError, match="one Optimizer per run"):
        train_runs(BatchedMLP(2), torch.zeros(4, 784), torch.zeros(4, dtype=torch.int64), [], [Optimizer(0.1)])
    with pytest.raises(ValueError, match="positive number of networks"):
        BatchedMLP(0)


def test_parameter_groups_put_each_parameter_once_the_weights_feeding_bn_first():
    model = chapter_network()
    groups = parameter_groups(model, 0.1, 3e-3)
    assert [p is model[i].weight for p, i in zip(groups[0]["params"], (0, 3, 6))] == [True] * 3
    assert groups[1]["params"] == [model[9].weight] and groups[2]["weight_decay"] == 0.0
    listed = [id(p) for group in groups for p in group["params"]]
    assert sorted(listed) == sorted(id(p) for p in model.parameters())


def test_scale_invariance_holds_to_rounding_for_the_hidden_weights_only():
    images, labels = random_data(60)
    rows = scale_table(chapter_network(TINY_EPS), images, labels, factors=(0.5, 3.0))
    assert [row[0] for row in rows] == linear_layers(chapter_network())
    for layer, cosine, changes in rows[:-1]:
        assert abs(cosine) < 1e-12 and all(loss < 1e-12 and gradient < 1e-12 for _, loss, gradient in changes)
    _, cosine, changes = rows[-1]
    assert abs(cosine) > 1e-3 and all(loss > 1e-4 and gradient > 0.1 for _, loss, gradient in changes)


def test_he_multiples_and_the_processes_shares():
    stds = initial_stds("BN, last at He", (0.1, 10.0))
    assert stds[0, 0] == pytest.approx(0.1 * math.sqrt(2 / 784)) and stds[1, 3] == pytest.approx(math.sqrt(2 / 100))
    assert initial_stds("BN", (10.0,))[0, 3] == pytest.approx(10 * math.sqrt(2 / 100))
    parts = split_by_cost({name: steps for name, (_, _, steps) in runs.EXPERIMENTS.items()})
    assert sorted(sum(parts, [])) == sorted(runs.EXPERIMENTS) and len(parts) == 2
    costs = [sum(runs.EXPERIMENTS[name][2] for name in part) for part in parts]
    assert max(costs) < 1.5 * min(costs)
