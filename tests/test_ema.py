"""The EMA behind running statistics: weights, window, lag, initial bias, conventions (notebook 05)."""

import math

import numpy as np
import pytest
import torch

import bnlib
from bnlib import exercises
from bnlib.ema import (drifting_signal, effective_window, ema_weights, initial_weight, mean_age, measured_lag,
                       running_stats_error, settled_from, track)
from bnlib.exercises import ch05
from bnlib.widgets import ema_explorer

MOMENTA = (1.0, 0.5, 0.1, 0.03, 0.01)


@pytest.mark.parametrize("momentum", MOMENTA + (0.0,))
def test_unrolled_weights_reproduce_the_update_rule(momentum):
    """r_T = (1 - m)^T r_0 + sum_k m (1 - m)^k b_{T-k}, against the recursion run by replay_ema."""
    steps, rng = 50, np.random.default_rng(1)
    batches, start = rng.normal(size=steps), rng.normal()
    unrolled = ema_weights(momentum, steps) @ batches[::-1] + initial_weight(momentum, steps) * start
    assert unrolled == pytest.approx(float(bnlib.replay_ema(batches, momentum, start)[-1]), rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("momentum", MOMENTA)
def test_weights_sum_to_one_minus_what_is_left_on_the_start(momentum):
    steps = 37
    assert ema_weights(momentum, steps).sum() == pytest.approx(1 - (1 - momentum) ** steps, abs=1e-12)


@pytest.mark.parametrize("momentum", (0.1, 0.03, 0.01, 0.001))
def test_the_last_one_over_m_batches_carry_about_63_percent(momentum):
    window = round(effective_window(momentum))
    share = ema_weights(momentum, 10 * window)[:window].sum()
    assert 1 - 1 / math.e <= share <= 0.66


@pytest.mark.parametrize("momentum", (0.5, 0.1, 0.03))
def test_mean_age_of_the_weights_is_one_minus_m_over_m(momentum):
    weights = ema_weights(momentum, 5000)
    assert (np.arange(5000) * weights).sum() == pytest.approx(mean_age(momentum), rel=1e-9)


@pytest.mark.parametrize("momentum", (0.5, 0.1, 0.03))
def test_lag_behind_a_linear_drift_is_one_minus_m_over_m_steps(momentum):
    result = track(momentum, steps=2000, drift=0.01, noise=0.0)
    assert measured_lag(result["true"], result["ema"], 0.01, start=1000) == pytest.approx((1 - momentum) / momentum,
                                                                                         rel=1e-9)
    assert result["lag"] == pytest.approx(result["lag_theory"], rel=1e-3)


def test_lag_with_noise_is_measured_near_theory():
    result = track(0.1, steps=4000, drift=0.01, noise=0.3, seed=3)
    assert abs(result["lag"] - 9) < 1.0


def test_averaging_trades_noise_for_lag():
    """On a noisy drift, the EMA's error is below a single batch's for a moderate momentum."""
    moderate, follow_all = track(0.1, steps=2000), track(1.0, steps=2000)
    assert moderate["rms"] < 0.5 * moderate["rms_batch"]
    assert follow_all["rms"] == pytest.approx(follow_all["rms_batch"])


def test_measured_lag_needs_a_drift():
    true, batch = drifting_signal(10, drift=0.0)
    with pytest.raises(ValueError, match="drift"):
        measured_lag(true, batch, 0.0)


def test_settled_from_is_where_the_start_weighs_under_a_thousandth():
    for momentum in (0.5, 0.1, 0.01):
        step = settled_from(momentum, 10**6)
        assert initial_weight(momentum, step) < 1e-3 <= initial_weight(momentum, step - 1)
    assert settled_from(0.001, 400) == 400


@pytest.mark.parametrize("momentum", (0.1, 0.3))
def test_a_fresh_layer_starts_at_zero_and_one_and_keeps_the_initial_bias(momentum):
    """After k steps on batches of mean 4 and variance 9, running = true + (start - true) (1 - m)^k."""
    layer = bnlib.BatchNorm1d(500, momentum=momentum).double()
    assert torch.all(layer.running_mean == 0) and torch.all(layer.running_var == 1)
    generator = torch.Generator().manual_seed(0)
    for k in range(1, 11):
        noise = torch.randn(64, 500, generator=generator, dtype=torch.float64)
        noise = (noise - noise.mean(0)) / noise.std(0)            # exact mean 0, unbiased variance 1
        layer(4.0 + 3.0 * noise)
        left = (1 - momentum) ** k
        torch.testing.assert_close(layer.running_mean, torch.full((500,), 4.0 * (1 - left), dtype=torch.float64))
        torch.testing.assert_close(layer.running_var, torch.full((500,), 9.0 + (1 - 9.0) * left, dtype=torch.float64))


def test_keras_momentum_converts_to_one_minus_it():
    assert bnlib.keras_to_torch_momentum(0.99) == pytest.approx(0.01)


def test_passing_the_keras_value_makes_running_stats_follow_the_last_batch():
    """EMA noise is the batch's times sqrt(m / (2 - m)): 0.995 of it with 0.99, 0.071 with 0.01."""
    mistake = running_stats_error(0.99, steps=1000)
    converted = running_stats_error(bnlib.keras_to_torch_momentum(0.99), steps=1000)
    single = mistake["single_batch_error"]
    assert mistake["last_batch_gap"] < 0.02 * single
    assert mistake["mean_error"] == pytest.approx(single * math.sqrt(0.99 / 1.01), rel=0.1)
    assert converted["mean_error"] == pytest.approx(converted["single_batch_error"] * math.sqrt(0.01 / 1.99), rel=0.1)
    assert mistake["mean_error"] > 10 * converted["mean_error"]
    assert mistake["var_error"] > 10 * converted["var_error"]


def test_running_var_holds_the_unbiased_variance_the_normalization_the_biased_one():
    x = torch.tensor([[1.0], [2.0], [3.0], [6.0]], dtype=torch.float64)
    layer = bnlib.BatchNorm1d(1, momentum=1.0, affine=False).double()
    out = layer(x)
    assert float(layer.running_var) == pytest.approx(14 / 3)                      # sum (x - 3)^2 / (4 - 1)
    assert float(out.square().mean()) == pytest.approx(3.5 / (3.5 + 1e-5))        # normalized by 14 / 4


def test_momentum_none_is_the_cumulative_average_of_the_batch_statistics():
    layer = bnlib.BatchNorm1d(3, momentum=None).double()
    generator = torch.Generator().manual_seed(0)
    batches = [5 + 2 * torch.randn(20, 3, generator=generator, dtype=torch.float64) for _ in range(7)]
    for batch in batches:
        layer(batch)
    means = np.stack([batch.mean(0).numpy() for batch in batches])
    biased = np.stack([batch.var(0, correction=0).numpy() for batch in batches])
    mean, var = bnlib.population_statistics(means, biased, 20)
    np.testing.assert_allclose(layer.running_mean.numpy(), mean, rtol=1e-12)
    np.testing.assert_allclose(layer.running_var.numpy(), var, rtol=1e-12)


def test_exercise_solutions_are_accepted(capsys):
    assert exercises.check_keras_conversion(bnlib.keras_to_torch_momentum(ch05.KERAS_DECAY))
    assert exercises.check_effective_window(effective_window(ch05.WINDOW_MOMENTUM))
    running = bnlib.replay_ema(np.full(ch05.BIAS_STEPS, ch05.BIAS_BATCH_MEAN), ch05.BIAS_MOMENTUM, 0.0)[-1]
    assert exercises.check_running_mean_after_steps(running)
    layer = bnlib.BatchNorm1d(1, momentum=ch05.VARIANCE_MOMENTUM).double()
    layer(torch.tensor(ch05.VARIANCE_BATCH, dtype=torch.float64).reshape(-1, 1))
    assert exercises.check_running_var_after_one_step(float(layer.running_var))
    assert capsys.readouterr().out.count("Correct.") == 4


@pytest.mark.parametrize("check, wrong", [
    ("check_keras_conversion", ch05.KERAS_DECAY),
    ("check_keras_conversion", None),
    ("check_effective_window", 19.0),
    ("check_effective_window", "twenty"),
    ("check_running_mean_after_steps", 5.0),
    ("check_running_mean_after_steps", 1.5),
    ("check_running_var_after_one_step", 1.25),
    ("check_running_var_after_one_step", 14 / 3),
    ("check_running_var_after_one_step", float("nan")),
])
def test_exercise_wrong_answers_get_a_hint_not_an_exception(check, wrong, capsys):
    assert getattr(exercises, check)(wrong) is False
    assert capsys.readouterr().out.startswith("Not yet.")


def test_explorer_updates_at_the_extremes():
    explorer = ema_explorer()
    assert explorer.error is None
    seen = {explorer.readout.value}
    for name, value in [("momentum", 0.001), ("momentum", 1.0), ("keras_mistake", True), ("momentum", 0.001),
                        ("drift", 0.0), ("noise", 0.0), ("drift", 0.05), ("noise", 1.0)]:
        explorer.controls[name].value = value
        assert explorer.error is None, explorer.readout.value
        seen.add(explorer.readout.value)
    assert len(seen) == 9


def test_explorer_readout_reports_the_keras_mistake():
    explorer = ema_explorer()
    explorer.controls["momentum"].value = 0.01
    explorer.controls["keras_mistake"].value = True
    assert "momentum used 0.99" in explorer.readout.value
    explorer.controls["momentum"].value = 1.0   # the mistake then uses momentum 0: the average never moves
    assert "momentum used 0" in explorer.readout.value and "never settles" in explorer.readout.value
