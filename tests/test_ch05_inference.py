"""Batch norm at inference: train vs eval, the forgotten model.eval(), population statistics (notebook 05).

The MNIST tests use the cached run of ``bnlib.course.ch05.inference.mnist_run`` (computed on first use).
"""

import copy

import numpy as np
import pytest
import torch
from torch import nn

import bnlib
from bnlib.course.ch05.inference import (FORGOTTEN_EVAL_BATCH_SIZES, RUN, MnistRun, accuracy_by_statistics, mnist_run,
                                         model_from_run, probabilities_with_companions, replayed_running_statistics,
                                         statistics_gap)
from bnlib.course.data import load_mnist
from bnlib.course.training import accuracy, consecutive_batches, small_model_settings
from bnlib.running_stats import batch_norm_layers, recompute_population_statistics

pytestmark = pytest.mark.slow  # computes experiments on real MNIST (cached afterwards)


@pytest.fixture(autouse=True)
def small_model_settings_for_every_test():
    with small_model_settings():
        yield


def test_a_batch_of_one_cannot_be_normalized_in_training_but_can_in_eval():
    layer = bnlib.BatchNorm1d(3)
    with pytest.raises(ValueError, match="Expected more than 1 value per channel when training"):
        layer(torch.ones(1, 3))
    assert layer.eval()(torch.ones(1, 3)).shape == (1, 3)


def test_same_input_gives_different_outputs_in_train_and_eval_mode():
    layer = bnlib.BatchNorm1d(4)
    x = 3 + 2 * torch.randn(8, 4, generator=torch.Generator().manual_seed(0))
    train_out = layer.train()(x)
    eval_out = layer.eval()(x)           # running stats: 0.9 * (0, 1) + 0.1 * batch stats
    assert (train_out - eval_out).abs().max() > 1.0
    torch.testing.assert_close(eval_out, (x - layer.running_mean) / torch.sqrt(layer.running_var + layer.eps))


def small_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 6), bnlib.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 3),
                         nn.BatchNorm1d(3)).double()


def batch_statistics(x):
    return x.mean(axis=0), x.var(axis=0)   # biased variance, as the layer normalizes with


def test_recomputed_population_statistics_equal_a_direct_float64_computation():
    """Algorithm 2 over the batches, each layer seeing the previous layers in training mode."""
    model = small_model()
    data = torch.randn(200, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 3 + 1
    recompute_population_statistics(model.train(), data.split(20))
    assert model.training and model[1].momentum == 0.1 and model[4].momentum == 0.1
    first, second = model[0], model[3]
    w1, b1 = first.weight.detach().numpy(), first.bias.detach().numpy()
    w2, b2 = second.weight.detach().numpy(), second.bias.detach().numpy()
    gamma, beta = model[1].weight.detach().numpy(), model[1].bias.detach().numpy()
    stats1, stats2 = [], []
    for batch in data.numpy().reshape(10, 20, 5):
        h = batch @ w1.T + b1
        mean, var = batch_statistics(h)
        stats1.append((mean, var))
        h = np.maximum(gamma * (h - mean) / np.sqrt(var + 1e-5) + beta, 0) @ w2.T + b2
        stats2.append(batch_statistics(h))
    for layer, stats in ((model[1], stats1), (model[4], stats2)):
        mean, var = bnlib.population_statistics(*map(np.array, zip(*stats)), batch_size=20)
        np.testing.assert_allclose(layer.running_mean.numpy(), mean, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(layer.running_var.numpy(), var, rtol=1e-10)
    # The first layer sees its inputs unnormalized: its mean is the data's mean, exactly.
    np.testing.assert_allclose(model[1].running_mean.numpy(), (data.numpy() @ w1.T + b1).mean(axis=0), rtol=1e-10)


def test_recompute_leaves_weights_alone_and_ignores_old_statistics():
    model = small_model()
    data = torch.randn(100, 5, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    weights = copy.deepcopy(model.state_dict())
    recompute_population_statistics(model.eval(), data.split(10))
    once = copy.deepcopy(model.state_dict())
    model[1].running_mean.fill_(1e3)
    recompute_population_statistics(model, data.split(10))
    assert not model.training
    for name, value in model.state_dict().items():
        torch.testing.assert_close(value, once[name])
        if "running" not in name and "num_batches" not in name:
            torch.testing.assert_close(value, weights[name])


def test_recompute_refuses_models_without_batch_norm_and_empty_data():
    with pytest.raises(ValueError, match="no batch norm layer"):
        recompute_population_statistics(nn.Linear(3, 3), [torch.ones(4, 3)])
    with pytest.raises(ValueError, match="empty"):
        recompute_population_statistics(small_model(), [])


@pytest.fixture(scope="module")
def run():
    return mnist_run(progress=False)


@pytest.fixture(scope="module")
def mnist():
    return load_mnist(train=True), load_mnist(train=False)


def test_cached_run_holds_real_accuracies(run, mnist):
    _, (images, labels) = mnist
    model = model_from_run(run)
    assert accuracy(model, images, labels) == float(run["eval_accuracy"])
    assert accuracy(model, images, labels, consecutive_batches(len(images), 8)) == float(
        run["forgotten_accuracy"][FORGOTTEN_EVAL_BATCH_SIZES.index(8)])


def test_the_trained_network_works_in_eval_mode(run):
    assert float(run["eval_accuracy"]) > 0.94


def test_forgotten_eval_costs_most_at_small_test_batches(run):
    forgotten = dict(zip(run["forgotten_batch_sizes"].tolist(), run["forgotten_accuracy"].tolist()))
    evaluated = float(run["eval_accuracy"])
    assert forgotten[2] < evaluated - 0.3           # batches of two: every unit normalized to +-1
    assert forgotten[8] < evaluated - 0.03
    small = [forgotten[size] for size in (2, 4, 8, 16, 32)]
    assert small == sorted(small)
    assert abs(forgotten[1000] - evaluated) < 0.01


def test_forgotten_eval_pollutes_the_running_statistics(run, mnist):
    _, (images, labels) = mnist
    model = model_from_run(run).train()
    before = model[1].running_mean.clone()
    with torch.no_grad():                      # no_grad does not stop the running statistics' update
        model(images[:100])
    assert not torch.equal(model[1].running_mean, before)
    untouched = model_from_run(run)
    accuracy(untouched, images[:100], labels[:100], consecutive_batches(100, 10))
    assert torch.equal(untouched[1].running_mean, before) and not untouched.training


def test_an_example_depends_on_its_batch_only_in_train_mode(run, mnist):
    _, (images, _) = mnist
    train_probs, eval_probs = probabilities_with_companions(model_from_run(run), images, 0, companions=7, draws=12)
    np.testing.assert_allclose(eval_probs, np.broadcast_to(eval_probs[0], eval_probs.shape), atol=1e-6)
    assert np.ptp(train_probs, axis=0).max() > 0.1
    alone = model_from_run(run)(images[:1]).softmax(dim=1)[0].detach().numpy()
    np.testing.assert_allclose(eval_probs[0], alone, atol=1e-6)


def test_running_statistics_replay_from_the_recorded_batches(run):
    """Running stats never influence training, so any momentum can be replayed; 0.1 is what the model holds."""
    model = model_from_run(run)
    for layer, (mean, var) in zip(batch_norm_layers(model), replayed_running_statistics(run, 0.1)):
        np.testing.assert_allclose(layer.running_mean.numpy(), mean, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(layer.running_var.numpy(), var, rtol=1e-4, atol=1e-6)


def test_keras_value_as_momentum_leaves_the_last_batch_in_the_running_stats(run):
    size = int(run["batch_size"])
    last = [(run[f"batch_means.{i}"][-1], run[f"batch_vars.{i}"][-1] * size / (size - 1)) for i in range(3)]
    mistake, default = replayed_running_statistics(run, 0.99), replayed_running_statistics(run, 0.1)
    assert statistics_gap(mistake, last) < 0.02 * statistics_gap(default, last)


@pytest.fixture(scope="module")
def by_statistics(run, mnist):
    (train_images, _), (test_images, test_labels) = mnist
    return accuracy_by_statistics(run, train_images, test_images, test_labels)


def test_recomputed_population_statistics_are_the_best_choice(by_statistics):
    recomputed, gap = by_statistics["recomputed, weights frozen (Algorithm 2)"]
    assert gap == 0
    assert recomputed >= max(accuracy for accuracy, _ in by_statistics.values())


def test_default_ema_is_close_to_population_statistics_after_training(by_statistics):
    ema, gap = by_statistics["EMA, momentum 0.1"]
    assert by_statistics["recomputed, weights frozen (Algorithm 2)"][0] - ema < 0.005
    assert gap < 0.05


def test_averaging_over_stale_weights_hurts(by_statistics):
    """A long window or the cumulative average mixes statistics of weights long gone."""
    default = by_statistics["EMA, momentum 0.1"][0]
    assert by_statistics["EMA, momentum 0.001"][0] < default - 0.05
    assert by_statistics["cumulative over training (momentum=None)"][0] < default - 0.10
    gaps = [by_statistics[name][1] for name in ("EMA, momentum 0.1", "EMA, momentum 0.01", "EMA, momentum 0.001",
                                                "cumulative over training (momentum=None)")]
    assert gaps == sorted(gaps)


def test_the_keras_mistake_costs_accuracy(by_statistics):
    mistake, gap = by_statistics["EMA, momentum 0.99"]
    assert mistake < by_statistics["EMA, momentum 0.1"][0]
    assert gap > by_statistics["EMA, momentum 0.1"][1]


def test_bad_settings_are_refused_clearly():
    with pytest.raises(TypeError, match="learning_rate"):
        RUN.replace(learning_rate=0.1)
    with pytest.raises(TypeError, match="MnistRun"):
        mnist_run({"steps": 100})
    with pytest.raises(ValueError, match="at least 2"):
        RUN.replace(batch_size=1)
    with pytest.raises(ValueError, match="steps must be at least 1"):
        MnistRun(steps=0)
    with pytest.raises(ValueError, match="between 0 and 1"):
        RUN.replace(momentum=1.5)
    assert RUN.replace(momentum=None).momentum is None  # the cumulative average is a momentum too
