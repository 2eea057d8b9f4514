"""Running statistics: the update rule against torch's buffers, the Keras conversion, the vectorised
replay against a plain loop, and the paper's population statistics against the whole data."""

import numpy as np
import pytest
import torch

from bnlib import BatchNorm1d, ema_update, keras_to_torch_momentum, population_statistics, replay_ema
from bnlib.running_stats import replay_running_stats, unbiased_variance


@pytest.mark.parametrize("momentum", [0.1, 0.0, 1.0, 0.7])
def test_ema_update_is_what_torch_does_to_its_buffers(momentum):
    torch.manual_seed(0)
    layer = torch.nn.BatchNorm1d(3, momentum=momentum, dtype=torch.float64)
    running_mean, running_var = layer.running_mean.clone(), layer.running_var.clone()
    for n in (4, 10, 7):
        x = torch.randn(n, 3, dtype=torch.float64) * 2 + 1
        layer(x)
        running_mean = ema_update(running_mean, x.mean(0), momentum)
        running_var = ema_update(running_var, x.var(0, unbiased=True), momentum)
        torch.testing.assert_close(layer.running_mean, running_mean, rtol=0, atol=1e-14)
        torch.testing.assert_close(layer.running_var, running_var, rtol=0, atol=1e-14)


def test_ema_update_works_on_floats_and_arrays_as_on_torchs_buffers():
    """Floats and numpy arrays get what the tensors checked against torch's buffers above get."""
    running, batch = np.array([2.0, 0.0, -1.5]), np.array([4.0, 1.0, 3.0])
    for momentum in (0.25, 0.0, 1.0):
        on_tensors = ema_update(torch.tensor(running), torch.tensor(batch), momentum).numpy()
        np.testing.assert_allclose(ema_update(running, batch, momentum), on_tensors, rtol=0, atol=1e-15)
        assert ema_update(float(running[0]), float(batch[0]), momentum) == pytest.approx(on_tensors[0], abs=1e-15)
    np.testing.assert_array_equal(ema_update(running, batch, 1.0), batch)  # momentum 1: the last batch only
    np.testing.assert_array_equal(ema_update(running, batch, 0.0), running)  # momentum 0: frozen


def test_keras_decay_is_torch_momentum_one_minus_decay():
    rng = np.random.default_rng(1)
    batches, decay = rng.normal(size=(20, 3)), 0.99
    keras_moving = np.zeros(3)
    for b in batches:
        keras_moving = decay * keras_moving + (1 - decay) * b  # Keras / TensorFlow's rule
    torch_momentum = keras_to_torch_momentum(decay)
    assert torch_momentum == pytest.approx(0.01)
    np.testing.assert_allclose(replay_ema(batches, torch_momentum, 0.0)[-1], keras_moving, rtol=1e-12)
    # The bug this helper prevents: passing Keras' 0.99 to torch weights the NEW batch by 0.99.
    assert not np.allclose(replay_ema(batches, decay, 0.0)[-1], keras_moving, atol=1e-2)


def test_either_momentum_copied_to_the_other_library_follows_the_last_batch():
    """Keras' 0.99 in torch, and torch's 0.1 in Keras (which weights the new batch 1 - 0.1 = 0.9), both
    make the running average land near the last batch: neither makes it "barely move"."""
    batches = np.random.default_rng(5).normal(size=(50, 200))
    keras_moving = np.zeros(200)
    for b in batches:
        keras_moving = 0.1 * keras_moving + (1 - 0.1) * b  # torch's default 0.1 given to Keras
    torch_running = replay_ema(batches, 0.99, 0.0)[-1]  # Keras' default 0.99 given to torch
    for copied in (keras_moving, torch_running):
        assert np.abs(copied - batches[-1]).mean() < 0.15 * np.abs(batches[-1] - batches[-2]).mean()
    assert keras_to_torch_momentum(0.1) == pytest.approx(0.9)


@pytest.mark.parametrize("momentum", [0.1, 0.0, 1.0, 0.5, 1e-3])
@pytest.mark.parametrize("shape, initial", [((40,), 1.0), ((25, 3, 2), 0.0), ((30, 4), np.arange(4.0))])
def test_replay_ema_equals_a_loop_of_ema_update(momentum, shape, initial):
    values = np.random.default_rng(2).normal(size=shape) * 3 + 1
    running, expected = np.broadcast_to(initial, shape[1:]).astype(float), []
    for value in values:
        running = ema_update(running, value, momentum)
        expected.append(running)
    np.testing.assert_allclose(replay_ema(values, momentum, initial), np.array(expected), rtol=1e-12, atol=1e-12)


def test_replay_ema_with_momentum_none_matches_torch_cumulative_average():
    torch.manual_seed(3)
    layer = BatchNorm1d(2, momentum=None, affine=False, dtype=torch.float64)
    batches = [torch.randn(n, 2, dtype=torch.float64) * 2 - 1 for n in (3, 8, 5, 6)]
    trajectory = []
    for x in batches:
        layer(x)
        trajectory.append(layer.running_mean.clone().numpy())
    batch_means = np.stack([x.mean(0).numpy() for x in batches])
    np.testing.assert_allclose(replay_ema(batch_means, None, 0.0), np.array(trajectory), rtol=1e-12)


def test_replay_ema_handles_a_long_history_of_many_units():
    """50,000 steps of 300 units (a long training run): the last steps still equal the loop's."""
    values = np.random.default_rng(4).normal(size=(50_000, 300)).astype(np.float32)
    running = replay_ema(values, 0.1, 0.0)
    assert running.shape == values.shape and running.dtype == np.float32
    state = running[-11].astype(np.float64)
    for t in range(-10, 0):
        state = ema_update(state, values[t].astype(np.float64), 0.1)
        np.testing.assert_allclose(running[t], state, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("momentum", [0.0, 0.001, 0.1, 0.7, 1.0, None])
def test_replay_every_few_steps_equals_replaying_every_step(momentum):
    values = np.random.default_rng(0).normal(size=(60, 3, 4))
    every_step = replay_ema(values, momentum, 0.5)
    np.testing.assert_allclose(replay_ema(values, momentum, 0.5, every=15), every_step[14::15], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("momentum", [0.1, None])
def test_replayed_running_stats_are_a_batchnorm1d_buffers(momentum):
    torch.manual_seed(3)
    layer = BatchNorm1d(4, momentum=momentum, dtype=torch.float64)
    batches = [torch.randn(6, 4, dtype=torch.float64) * 3 + 2 for _ in range(8)]
    for x in batches:
        layer(x)
    means = np.stack([x.mean(0).numpy() for x in batches])
    biased = np.stack([x.var(0, correction=0).numpy() for x in batches])
    running_mean, running_var = replay_running_stats(means, biased, 6, momentum, every=4)
    assert running_mean.shape == running_var.shape == (3, 4)
    np.testing.assert_allclose(running_mean[0], 0.0)
    np.testing.assert_allclose(running_var[0], 1.0)
    np.testing.assert_allclose(running_mean[-1], layer.running_mean.numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(running_var[-1], layer.running_var.numpy(), rtol=1e-12)


def test_unbiased_variance_is_bessels_correction_and_refuses_one_value():
    x = np.random.default_rng(2).normal(size=(7, 3))
    np.testing.assert_allclose(unbiased_variance(x.var(axis=0), 7), x.var(axis=0, ddof=1), rtol=1e-14)
    with pytest.raises(ValueError, match="at least 2 values"):
        unbiased_variance(np.ones(3), 1)


def test_replay_ema_refuses_bad_arguments():
    with pytest.raises(ValueError, match=r"momentum must lie in \[0, 1\]"):
        replay_ema(np.ones(3), 1.5, 0.0)
    with pytest.raises(ValueError, match="batch_values must have shape"):
        replay_ema(np.ones(0), 0.1, 0.0)
    with pytest.raises(ValueError, match="divisor"):
        replay_ema(np.ones(10), 0.1, 0.0, every=3)
    with pytest.raises(ValueError, match=r"momentum must lie in \[0, 1\]"):
        keras_to_torch_momentum(99)


def test_population_statistics_recover_the_whole_data():
    """Equal batches: E[x] is exactly the data mean, and m/(m-1) E[var_B] is the average unbiased batch
    variance; both estimate the data's statistics, and without the m/(m-1) factor the variance is low."""
    rng = np.random.default_rng(5)
    m, batches = 4, 20_000
    data = rng.normal(3.0, 2.0, size=(batches, m, 3))
    means, variances = population_statistics(data.mean(axis=1), data.var(axis=1), m)
    np.testing.assert_allclose(means, data.reshape(-1, 3).mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(variances, data.var(axis=1, ddof=1).mean(axis=0), rtol=1e-12)
    whole = data.reshape(-1, 3).var(axis=0, ddof=1)
    np.testing.assert_allclose(variances, whole, rtol=0.03)
    assert np.all(np.abs(data.var(axis=1).mean(axis=0) / whole - (m - 1) / m) < 0.03)


def test_population_statistics_refuse_bad_arguments():
    with pytest.raises(ValueError, match="at least 2 values per channel"):
        population_statistics(np.zeros((3, 2)), np.ones((3, 2)), 1)
    with pytest.raises(ValueError, match="must both have shape"):
        population_statistics(np.zeros((3, 2)), np.ones((3, 3)), 8)
