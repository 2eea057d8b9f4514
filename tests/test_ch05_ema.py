"""The EMA behind running statistics: weights, window, lag, initial bias, conventions (notebook 05)."""

import math

import numpy as np
import pytest
import torch
from explorer_checks import assert_control_changes_readout_and_plot

import bnlib
from bnlib.course.ch05.ema import (drifting_signal, effective_window, ema_weights, initial_weight, mean_age,
                                   measured_lag, running_stats_error, settled_from, track)
from bnlib.course.ch05.explorers import ema_explorer

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


def test_error_splits_into_lag_and_noise():
    """EMA(batch) = EMA(true) + EMA(noise); the noise part keeps sqrt(m / (2 - m)) of the batch noise."""
    result = track(0.1, steps=4000, drift=0.003, noise=0.3, seed=3)
    assert result["lag"] == pytest.approx(9.0, rel=1e-3)
    assert result["lag_error"] == pytest.approx(0.003 * 9.0, rel=1e-3)
    assert result["noise_error"] == pytest.approx(0.3 * math.sqrt(0.1 / 1.9), rel=0.1)
    assert result["rms"] ** 2 == pytest.approx(result["lag_error"] ** 2 + result["noise_error"] ** 2, rel=0.1)


def test_averaging_trades_noise_for_lag():
    """With the explorer's defaults (drift 0.003, noise 0.3) the default momentum 0.1 beats 0.3 and 0.03."""
    errors = {m: track(m, steps=4000, drift=0.003, noise=0.3)["rms"] for m in (0.3, 0.1, 0.03, 1.0)}
    assert errors[0.1] < min(errors[0.3], errors[0.03])
    assert errors[0.1] < 0.3 * errors[1.0]


def test_more_noise_wants_a_smaller_momentum_more_drift_a_larger_one():
    grid = np.geomspace(0.005, 1, 60)

    def best(drift, noise):
        return grid[np.argmin([track(m, steps=4000, drift=drift, noise=noise)["rms"] for m in grid])]

    assert best(0.003, 0.6) < best(0.003, 0.3) < best(0.02, 0.3)


def test_measured_lag_needs_a_drift():
    true, batch = drifting_signal(10, drift=0.0)
    with pytest.raises(ValueError, match="drift"):
        measured_lag(true, batch, 0.0)


def test_bad_signal_settings_are_refused_clearly():
    with pytest.raises(ValueError, match="noise is a standard deviation"):
        drifting_signal(10, noise=-1.0)
    with pytest.raises(ValueError, match="steps must be at least 1"):
        drifting_signal(0)
    with pytest.raises(ValueError, match="momentum must lie in"):
        ema_weights(1.5, 10)


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


def test_a_batch_variance_underestimates_the_population_variance_by_m_minus_1_over_m():
    """E[var_B] = (m - 1)/m Var[x]: 0.75 for batches of 4, which m/(m - 1) corrects."""
    batches = np.random.default_rng(0).normal(size=(200_000, 4))
    assert batches.var(axis=1).mean() == pytest.approx(0.75, abs=0.005)
    assert batches.var(axis=1, ddof=1).mean() == pytest.approx(1.0, abs=0.006)


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


def test_explorer_updates_at_the_extremes():
    explorer = ema_explorer()
    controls = explorer.controls
    for name in ("momentum", "drift", "noise"):
        low, high = (0.001, 1.0) if name == "momentum" else (controls[name].min, controls[name].max)
        for value in (low, high):
            before = explorer.image.value
            controls[name].value = value
            assert explorer.error is None, explorer.text
            assert explorer.image.value != before
    controls["keras_mistake"].value = True        # momentum slider at 1: the mistake uses momentum 0
    assert explorer.error is None, explorer.text
    assert "momentum used 0, the Keras value" in explorer.text


def test_explorer_readout_reports_the_keras_mistake():
    explorer = ema_explorer()
    explorer.controls["momentum"].value = 0.01
    explorer.controls["keras_mistake"].value = True
    assert "momentum used 0.99, the Keras value 1 - m by mistake" in explorer.text
    explorer.controls["momentum"].value = 1.0   # the mistake then uses momentum 0: the average never moves
    assert explorer.text.startswith("never settles: the start value 0 still weighs 100% (over 0.1%) at step 999")
    assert "momentum used 0, the Keras value" in explorer.text


@pytest.mark.parametrize("start, name, value", [
    ({}, "momentum", 0.02), ({}, "drift", 0.01), ({}, "noise", 0.6), ({}, "keras_mistake", True),
    ({"momentum": 0.001}, "drift", 0.01),  # the average never settles: the readout still states the drift
    ({"momentum": 0.001}, "noise", 0.6),   # and the noise
    ({"momentum": 0.5}, "keras_mistake", True),  # 1 - m is about m: the readout still names the mistake
])
def test_every_control_changes_the_readout_and_the_plot(start, name, value):
    explorer = ema_explorer()
    for setting, setting_value in start.items():
        explorer.controls[setting].value = setting_value
    assert_control_changes_readout_and_plot(explorer, name, value)


def test_readout_states_what_the_drift_and_the_noise_cost():
    """Behind a drift d the EMA trails by d (1 - m)/m; it keeps noise std sigma sqrt(m / (2 - m))."""
    explorer = ema_explorer()
    explorer.controls["drift"].value = 0.01
    explorer.controls["noise"].value = 0.5
    m = explorer.controls["momentum"].value
    assert f"trails by {0.01 * (1 - m) / m:.3g}" in explorer.text
    assert f"averaged to {0.5 * np.sqrt(m / (2 - m)):.3g}" in explorer.text


def test_readout_leads_with_the_error_once_settled():
    explorer = ema_explorer()
    result = track(0.1, steps=1000, drift=0.003, noise=0.3, seed=0)
    assert explorer.text.startswith(f"RMS error {result['rms']:.3f} = lag {result['lag_error']:.3f} (+) noise "
                                    f"{result['noise_error']:.3f} from step {result['settled']}")


@pytest.mark.parametrize("momentum", np.linspace(0.0050, 0.0075, 26))
def test_never_settles_only_while_the_start_weighs_over_a_thousandth(momentum):
    """Around momentum 0.006 the start still weighs a few tenths of a percent at the last step: the readout
    says so with digits that show it is over 0.1% (never "0%"), and otherwise gives the error."""
    explorer = ema_explorer()
    explorer.controls["momentum"].value = momentum
    left = initial_weight(momentum, 999)
    if explorer.text.startswith("never settles"):
        shown = float(explorer.text.split("weighs ")[1].split("%")[0])
        assert shown > 0.1 and shown == pytest.approx(100 * left, rel=0.05)
    else:
        assert explorer.text.startswith("RMS error") and left <= 1e-3


def test_legend_lists_only_the_lines_shown():
    explorer = ema_explorer()
    labels = lambda: [text.get_text() for text in explorer.draw(**explorer.values())[0].axes[0].get_legend().get_texts()]
    assert any(label.startswith("start forgotten") for label in labels())
    explorer.controls["momentum"].value = 0.001  # the start is never forgotten within 1000 steps
    assert not any(label.startswith("start forgotten") for label in labels())


def test_porting_torch_s_0_1_to_keras_unchanged_also_follows_the_last_batch():
    """Notebook 05, section 3: Keras' momentum weighs the old average, so torch's 0.1 copied into Keras gives
    the new batch 0.9 and the statistics follow the last batch, as 0.99 copied into torch does."""
    from bnlib.running_stats import keras_to_torch_momentum
    assert keras_to_torch_momentum(0.1) == pytest.approx(0.9)
    batch_means = torch.randn(1000, 500, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    keras_moving, torch_running = torch.zeros(500, dtype=torch.float64), torch.zeros(500, dtype=torch.float64)
    for mean in batch_means:
        keras_moving = 0.1 * keras_moving + (1 - 0.1) * mean       # Keras: decay * moving + (1 - decay) * batch
        torch_running = (1 - 0.99) * torch_running + 0.99 * mean  # torch with Keras' 0.99 copied unchanged
    noise = batch_means.std().item()
    assert (keras_moving - batch_means[-1]).pow(2).mean().sqrt() < 0.15 * noise
    assert (torch_running - batch_means[-1]).pow(2).mean().sqrt() < 0.02 * noise


def test_a_batch_of_two_normalizes_to_plus_minus_one_up_to_eps():
    """Notebook 05, the forgotten model.eval(): with two values a unit normalizes to +-1 / sqrt(1 + eps / v),
    v the pair's biased variance: +-1 up to eps, not exactly."""
    layer = bnlib.BatchNorm1d(3, affine=False).train()
    x = torch.tensor([[0.0, 1.0, 5.0], [0.01, 3.0, -5.0]], dtype=torch.float64)
    layer = layer.double()
    y = layer(x)
    v = ((x[0] - x[1]) / 2) ** 2
    torch.testing.assert_close(y.abs(), (1 / torch.sqrt(1 + layer.eps / v)).expand(2, 3))
    assert y.abs().max() < 1 and y[:, 0].abs().max() < 0.99     # a close pair lands visibly inside
    torch.testing.assert_close(y[:, 2].abs(), torch.ones(2, dtype=torch.float64), atol=1e-6, rtol=0)
