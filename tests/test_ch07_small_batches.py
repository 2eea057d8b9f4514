"""Small batches (notebook 07): noise of batch statistics against batch size, accuracy at tiny batches."""

import numpy as np
import pytest

from bnlib.course.ch07.small_batches import (ACTIVATIONS_CONFIG, NOISE_BATCH_SIZES, SWEEP_CONFIG, SweepRun,
                                             activations_run, batch_size_sweep, batch_statistic_noise, loglog_slope,
                                             noise_figure, normalized_value_spread, sample_batches, sweep_figure,
                                             sweep_lr, theoretical_noise, unit_activations)

pytestmark = pytest.mark.slow  # computes experiments on real MNIST (cached afterwards)


@pytest.fixture(scope="module")
def noise():
    return batch_statistic_noise()


@pytest.fixture(scope="module")
def sweep():
    return batch_size_sweep()


def test_activations_are_a_real_hidden_layer():
    values = unit_activations()
    assert values.shape == (10_000, 100)
    assert np.all(values.std(0) > 0.05) and np.isfinite(values).all()


def test_theory_for_the_variance_matches_a_brute_force_estimate_on_a_skewed_sample():
    values = np.random.default_rng(0).exponential(size=(500, 1))
    batches = sample_batches(values, 5, 200_000, seed=1)
    mean_theory, var_theory = theoretical_noise(values, 5)
    assert batches.mean(1).std() == pytest.approx(mean_theory[0], rel=0.01)
    assert batches.var(1).std() == pytest.approx(var_theory[0], rel=0.02)


def test_measured_noise_matches_theory_within_five_percent_at_every_batch_size(noise):
    """Notebook: measured and theoretical std agree within a few percent from m = 2 to 256."""
    for stat in ("mean", "var"):
        ratio = noise[f"{stat}_std"].mean(1) / noise[f"{stat}_theory"].mean(1)
        assert np.all(np.abs(ratio - 1) < 0.05), (stat, ratio)


def test_batch_mean_noise_falls_like_one_over_sqrt_m(noise):
    """Notebook: slope of log std(mu_B) against log m is -1/2 (measured about -0.50)."""
    assert loglog_slope(noise["batch_sizes"], noise["mean_std"].mean(1)) == pytest.approx(-0.5, abs=0.03)
    var_slope = loglog_slope(noise["batch_sizes"], noise["var_std"].mean(1))
    assert -0.55 < var_slope < -0.35
    assert noise["mean_std"].mean(1)[0] / noise["mean_std"].mean(1)[-1] == pytest.approx(np.sqrt(128), rel=0.1)


def test_in_a_batch_of_two_every_normalized_value_is_plus_or_minus_one():
    """|x_hat| = (d/2) / sqrt((d/2)^2 + eps) for a partner at distance d: 1 unless d is about sqrt(eps)."""
    values = unit_activations()[:, 0].astype(np.float64)
    spread = np.abs(normalized_value_spread(values, float(values[7]), 2))
    assert np.all(spread <= 1)
    assert np.mean(spread > 0.99) > 0.95
    assert normalized_value_spread(values, float(values[7]), 256).std() < 0.2


def test_sample_batches_refuses_a_batch_of_one():
    with pytest.raises(ValueError, match="at least 2"):
        sample_batches(np.zeros((5, 1)), 1, 10)


def test_learning_rate_scales_with_the_batch():
    assert sweep_lr(32) == SWEEP_CONFIG.base_lr and sweep_lr(2) == SWEEP_CONFIG.base_lr / 16


def test_batch_norm_accuracy_collapses_at_batch_two(sweep):
    """Notebook: BN does well from batch 4 to 32 and collapses at batch 2."""
    bn = sweep["eval_accuracy"][SWEEP_CONFIG.norms.index("batch")]
    sizes = SWEEP_CONFIG.batch_sizes
    assert bn[sizes.index(32)] > 0.85 and bn[sizes.index(4)] > 0.8
    assert bn[sizes.index(2)] < 0.5 and bn[sizes.index(2)] < bn[sizes.index(32)] - 0.3
    assert bn[sizes.index(2)] < bn[sizes.index(4)] < bn[sizes.index(32)]


def test_at_batch_two_train_mode_does_no_better_than_eval_mode(sweep):
    """Notebook: on test batches of two, normalized exactly as in training, the network trained at batch 2 does
    no better than in eval mode: the collapse is not (only) a train/test mismatch."""
    at_two = SWEEP_CONFIG.batch_sizes.index(2)
    train_mode = sweep["train_mode_accuracy"][at_two]
    assert train_mode < 0.5
    assert train_mode < sweep["eval_accuracy"][SWEEP_CONFIG.norms.index("batch"), at_two] + 0.03


def test_layer_and_group_norm_do_not_care_about_the_batch_size(sweep):
    """Notebook: LayerNorm and GroupNorm each stay within a few points across batch sizes, and at batch 2 beat
    BN by far."""
    norms, sizes = SWEEP_CONFIG.norms, SWEEP_CONFIG.batch_sizes
    bn_at_2 = sweep["eval_accuracy"][norms.index("batch"), sizes.index(2)]
    for norm in ("layer", "group"):
        row = sweep["eval_accuracy"][norms.index(norm)]
        assert row.max() - row.min() < 0.07
        assert row[sizes.index(2)] > bn_at_2 + 0.3


def test_figures_plot_the_measured_numbers(noise, sweep):
    _, data = noise_figure()
    np.testing.assert_allclose(data["mean_std"], noise["mean_std"].mean(1))
    assert list(data["batch_sizes"]) == list(NOISE_BATCH_SIZES)
    _, data = sweep_figure()
    np.testing.assert_array_equal(data["eval_accuracy"], sweep["eval_accuracy"])


def test_bad_settings_are_refused_clearly():
    with pytest.raises(TypeError, match="batch_size"):
        SWEEP_CONFIG.replace(batch_size=8)  # the sweep has batch_sizes
    with pytest.raises(TypeError, match="ActivationsRun"):
        activations_run(SWEEP_CONFIG)
    with pytest.raises(TypeError, match="learning_rate"):
        ACTIVATIONS_CONFIG.replace(learning_rate=0.1)
    with pytest.raises(ValueError, match="no batch to train or test on"):
        SweepRun(batch_sizes=(2, 4096))
    with pytest.raises(ValueError, match="train_mode_test_examples"):
        SWEEP_CONFIG.replace(train_mode_test_examples=16)
