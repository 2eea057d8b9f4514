"""The exponential moving average behind batch norm's running statistics, taken apart.

The update is PyTorch's (``bnlib.running_stats.ema_update``), with m = momentum::

    r_t = (1 - m) r_{t-1} + m b_t

Unrolled from the starting value r_0 over T batches::

    r_T = (1 - m)^T r_0  +  sum_{k=0}^{T-1} m (1 - m)^k b_{T-k}

so the batch k steps back gets weight m (1 - m)^k, the weights sum to 1 - (1 - m)^T, and the rest,
(1 - m)^T, still sits on r_0 (torch starts running_mean at 0 and running_var at 1: the initial bias).
This module computes those weights, the window and lag they imply, and a noisy drifting "batch
statistic" to watch the average track; the average itself is always ``replay_ema`` or a real layer.
"""

import math

import numpy as np
import torch

from bnlib.layers import BatchNorm1d
from bnlib.running_stats import replay_ema
from bnlib.validation import check_momentum


def ema_weights(momentum, steps):
    """The weight m (1 - m)^k of the batch k = 0, 1, ..., steps-1 steps back (k = 0 is the newest)."""
    m = check_momentum(momentum, allow_none=False)
    return m * (1 - m) ** np.arange(steps, dtype=np.float64)


def initial_weight(momentum, steps):
    """(1 - m)^steps: the share of the starting value still in the running value after ``steps`` batches."""
    m = check_momentum(momentum, allow_none=False)
    return (1 - m) ** steps


def effective_window(momentum):
    """About 1/m batches: the last 1/m batches carry 1 - (1 - m)^(1/m) ~ 1 - 1/e = 63% of the weight."""
    m = check_momentum(momentum, allow_none=False)
    return math.inf if m == 0 else 1 / m


def mean_age(momentum):
    """The average age of the batches in the EMA, sum_k k m (1 - m)^k = (1 - m)/m steps.

    It is also the lag behind a statistic drifting at a constant rate d per step: at steady state
    r_t = s_t - d (1 - m)/m, i.e. the EMA shows the value the statistic had (1 - m)/m steps ago.
    """
    m = check_momentum(momentum, allow_none=False)
    return math.inf if m == 0 else (1 - m) / m


def drifting_signal(steps=400, drift=0.01, noise=0.3, start=2.0, seed=0):
    """A batch statistic to track: ``(true, batch)``, each of shape (steps,).

    true_t = start + drift t (the population value, moving as the weights train) and
    batch_t = true_t + noise eps_t, eps_t ~ N(0, 1) (what one mini-batch measures).
    """
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    if noise < 0:
        raise ValueError(f"noise is a standard deviation and must be >= 0, got {noise}")
    true = start + drift * np.arange(steps, dtype=np.float64)
    batch = true + noise * np.random.default_rng(seed).standard_normal(steps)
    return true, batch


def settled_from(momentum, steps, tolerance=1e-3):
    """The first step at which the initial value's weight (1 - m)^t is below ``tolerance`` (capped at steps)."""
    m = check_momentum(momentum, allow_none=False)
    if m == 1:
        return 0
    if m == 0:
        return steps
    return min(steps, math.ceil(math.log(tolerance) / math.log(1 - m)))


def measured_lag(true, tracked, drift, start=0):
    """The lag in steps, mean((true - tracked)[start:]) / drift, of an EMA behind a linear drift."""
    if drift == 0:
        raise ValueError("the lag in steps is only defined for a drifting statistic (drift != 0)")
    return float(np.mean((np.asarray(true) - np.asarray(tracked))[start:]) / drift)


def rms_error(true, tracked, start=0):
    """Root mean square of tracked - true over steps ``start`` onwards."""
    return float(np.sqrt(np.mean((np.asarray(tracked) - np.asarray(true))[start:] ** 2)))


def track(momentum, steps=400, drift=0.01, noise=0.3, start=2.0, seed=0):
    """The EMA (from running_mean's 0) of a drifting noisy signal, with its lag and errors once settled.

    The EMA is linear, so EMA(batch) = EMA(true) + EMA(noise): its error splits into a lag part,
    EMA(true) - true, and a noise part, EMA(noise), whose RMS is noise sqrt(m / (2 - m)).
    Returns a dict: ``true``, ``batch``, ``ema`` (steps,), ``settled`` (first step where the start value
    weighs < 0.1%), ``lag`` (steps, measured on EMA(true)), ``lag_theory`` ((1 - m)/m), and the RMS
    errors ``rms`` (total), ``lag_error``, ``noise_error`` and ``rms_batch`` (of the raw batch statistic),
    all over the settled steps; NaN where there are none (and ``lag`` without drift).
    """
    true, batch = drifting_signal(steps, drift, noise, start, seed)
    ema, ema_of_true = replay_ema(batch, momentum, 0.0), replay_ema(true, momentum, 0.0)
    settled = settled_from(momentum, steps)
    has_settled = settled < steps
    nan = math.nan
    return {
        "true": true, "batch": batch, "ema": ema, "settled": settled,
        "lag": measured_lag(true, ema_of_true, drift, settled) if has_settled and drift != 0 else nan,
        "lag_theory": mean_age(momentum),
        "rms": rms_error(true, ema, settled) if has_settled else nan,
        "lag_error": rms_error(true, ema_of_true, settled) if has_settled else nan,
        "noise_error": rms_error(ema_of_true, ema, settled) if has_settled else nan,
        "rms_batch": rms_error(true, batch, settled) if has_settled else nan,
    }


def running_stats_error(momentum, steps=300, batch_size=16, channels=1000, mean=3.0, std=2.0, seed=0):
    """Feed a real ``BatchNorm1d`` ``steps`` batches of N(mean, std^2) data and measure its running stats.

    Every one of ``channels`` channels is an independent repeat of the experiment. Returns a dict of
    root-mean-square errors over channels: ``mean_error`` and ``var_error`` (running stats vs the true
    mean and variance), ``last_batch_gap`` (running_mean vs the last batch's own mean) and
    ``single_batch_error`` (one batch's mean vs the true mean, the noise an EMA is meant to average out).
    """
    generator = torch.Generator().manual_seed(seed)
    layer = BatchNorm1d(channels, momentum=momentum).double().train()
    with torch.no_grad():
        for _ in range(steps):
            x = mean + std * torch.randn(batch_size, channels, generator=generator, dtype=torch.float64)
            layer(x)
    last_mean = x.mean(dim=0)

    def rms(values):
        return float(values.square().mean().sqrt())

    return {
        "mean_error": rms(layer.running_mean - mean),
        "var_error": rms(layer.running_var - std ** 2),
        "last_batch_gap": rms(layer.running_mean - last_mean),
        "single_batch_error": rms(last_mean - mean),
    }


WEIGHT_MOMENTA = (0.3, 0.1, 0.03)


def ema_weights_and_lag(steps=120):
    """Three panels: the weights m (1 - m)^k, the initial bias from 0, the lag behind a drift."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8.4, 7), layout="constrained")
    grid = figure.add_gridspec(2, 2)
    weights_ax, bias_ax, lag_ax = (figure.add_subplot(grid[0, 0]), figure.add_subplot(grid[0, 1]),
                                   figure.add_subplot(grid[1, :]))
    data = {"weights": {}, "initial_bias": {}, "window_share": {}}
    ages = np.arange(steps)
    for momentum in WEIGHT_MOMENTA:
        weights = ema_weights(momentum, steps)
        window = effective_window(momentum)
        share = float(weights[: round(window)].sum())
        line, = weights_ax.plot(ages, weights, label=f"m = {momentum}: window {window:.0f}, holds {share:.0%}")
        weights_ax.axvline(window, color=line.get_color(), linestyle=":")
        # A constant statistic 1, running value starting at 0: r_t = 1 - (1 - m)^t.
        bias_ax.plot(np.arange(1, steps + 1), replay_ema(np.ones(steps), momentum, 0.0), color=line.get_color(),
                     label=f"m = {momentum}")
        data["weights"][str(momentum)] = weights
        data["window_share"][str(momentum)] = share
        data["initial_bias"][str(momentum)] = 1 - replay_ema(np.ones(steps), momentum, 0.0)
    weights_ax.set(xlabel="batches back, k", ylabel="weight m (1 - m)^k", title="(a) weight of past batches")
    weights_ax.legend()
    bias_ax.axhline(1, color="black", linewidth=1)
    bias_ax.set(xlabel="training step", ylabel="running mean", ylim=(0, 1.1),
                title="(b) initial bias:\ntrue mean 1, start 0")
    bias_ax.legend()
    result = track(0.1, steps=steps, drift=0.02, noise=0.0, start=1.0)
    lag_ax.plot(result["true"], color="black", label="population statistic (drift 0.02 / step)")
    lag_ax.plot(result["ema"], label="EMA, m = 0.1, from 0")
    at = steps - 20
    lag_ax.annotate("", xy=(at - result["lag"], result["ema"][at]), xytext=(at, result["ema"][at]),
                    arrowprops={"arrowstyle": "<->"})
    lag_ax.text(at - result["lag"] / 2, result["ema"][at] - 0.3, f"lag {result['lag']:.1f} steps", ha="center")
    lag_ax.set(xlabel="training step", ylabel="statistic", title="(c) lag (1 - m)/m behind a drift")
    lag_ax.legend(loc="lower right")
    data.update(lag_measured=result["lag"], lag_theory=result["lag_theory"], momenta=list(WEIGHT_MOMENTA))
    return figure, data


def keras_momentum_mistake(steps=1000, shown=200, noise=0.5, seed=0):
    """A stationary noisy batch mean tracked with torch momentum 0.01 (Keras 0.99 converted) and 0.99 (not).

    Runs ``steps`` steps and plots the last ``shown``, after the 0.01 average has forgotten its start.
    """
    from matplotlib.figure import Figure

    true, batch = drifting_signal(steps, drift=0.0, noise=noise, start=1.0, seed=seed)
    right = replay_ema(batch, 0.01, 0.0)
    wrong = replay_ema(batch, 0.99, 0.0)
    shown_steps = np.arange(steps - shown, steps)
    figure = Figure(figsize=(8, 3.8), layout="constrained")
    ax = figure.subplots()
    ax.plot(shown_steps, batch[-shown:], "o", color="0.6", markersize=3, label="batch mean")
    ax.plot(shown_steps, true[-shown:], color="black", label="population mean")
    ax.plot(shown_steps, wrong[-shown:], linewidth=1, label="momentum=0.99 passed to PyTorch (the bug)")
    ax.plot(shown_steps, right[-shown:], linewidth=2.5, label="momentum=0.01 = keras_to_torch_momentum(0.99)")
    ax.set(xlabel="training step", ylabel="running mean", title="Keras' 0.99 is PyTorch's 0.01")
    ax.set_ylim(batch[-shown:].min() - 0.2, batch[-shown:].max() + 1.0)
    ax.legend(fontsize=8, loc="upper left", ncols=2)
    settled = settled_from(0.01, steps)
    data = {"steps": shown_steps, "noise": noise, "batch": batch[-shown:], "momentum_0.01": right[-shown:],
            "momentum_0.99": wrong[-shown:],
            "rms_after_settling": {"momentum_0.01": rms_error(true, right, settled),
                                   "momentum_0.99": rms_error(true, wrong, settled),
                                   "batch": rms_error(true, batch, settled)}}
    return figure, data


FIGURES = {
    "ema_weights_and_lag": ema_weights_and_lag,
    "keras_momentum_mistake": keras_momentum_mistake,
}
