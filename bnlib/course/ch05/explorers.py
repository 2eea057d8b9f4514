"""Explorer: the running mean (an EMA) tracking a noisy batch statistic that drifts as the weights train.

A large momentum follows every batch (noisy, little lag); a small one averages the noise away but
trails the drift by (1 - m)/m steps and takes about 1/m steps to forget its start at 0. The checkbox
makes the classic porting mistake: the Keras/TensorFlow value 1 - m passed as PyTorch's momentum.
"""

import math

import ipywidgets as widgets
import numpy as np
from matplotlib.figure import Figure

from bnlib.course.ch05.ema import effective_window, initial_weight, track
from bnlib.course.explorer import Explorer

FORGOTTEN = 1e-3  # the start value is forgotten once it weighs less than this (``ema.settled_from``)


def share(fraction, above=None):
    """A fraction as a percentage with two significant digits (37%, 0.24%), or as many more as it takes
    to show that it is ``above`` a threshold (0.1003% rather than 0.1%)."""
    for digits in range(2, 8):
        text = f"{100 * fraction:.{digits - 2}f}%" if fraction >= 0.1 else f"{100 * fraction:.{digits}g}%"
        if above is None or float(text[:-1]) > 100 * above:
            return text
    return text


def ema_readout(result, momentum, steps, drift, noise, keras_mistake=False):
    """One line, the error first: the RMS error split into lag and noise (or why there is none yet), then
    the momentum used, its window and lag, and what the drift and the noise cost.

    Behind a drift of d per step the EMA trails by d (1 - m)/m; of batch noise with std sigma it keeps
    std sigma sqrt(m / (2 - m)).
    """
    if math.isnan(result["rms"]):
        # track() finds no settled step: at the last step, steps - 1, the start still weighs over FORGOTTEN
        left = initial_weight(momentum, steps - 1)
        headline = (f"never settles: the start value 0 still weighs {share(left, above=FORGOTTEN)} "
                    f"(over {share(FORGOTTEN)}) at step {steps - 1}")
    else:
        headline = (f"RMS error {result['rms']:.3f} = lag {result['lag_error']:.3f} (+) noise {result['noise_error']:.3f} "
                    f"from step {result['settled']} (one batch alone: {result['rms_batch']:.3f})")
    lag = result["lag_theory"]
    mistake = ", the Keras value 1 - m by mistake" if keras_mistake else ""
    return "; ".join([
        headline,
        f"momentum used {momentum:.3g}{mistake}: window ~{effective_window(momentum):.3g} steps, lag {lag:.3g} steps",
        f"drift {drift:.3g}/step: trails by {drift * lag if drift else 0.0:.3g}",
        f"noise {noise:.3g}: averaged to {noise * math.sqrt(momentum / (2 - momentum)):.3g}"])


def ema_explorer(steps=1000, seed=0):
    """Sliders for the momentum (log scale, 0.001 to 1), the drift and the batch noise; a Keras-mistake toggle."""
    figure = Figure(figsize=(8.2, 3.6))
    ax = figure.subplots()
    figure.subplots_adjust(left=0.08, right=0.98, bottom=0.14, top=0.91)
    time = np.arange(steps)
    batch_dots, = ax.plot(time, np.zeros(steps), "o", color="0.65", markersize=1.5, label="batch statistic")
    true_line, = ax.plot(time, np.zeros(steps), color="black", label="population statistic")
    ema_line, = ax.plot(time, np.zeros(steps), color="C1", linewidth=2, label="running value (EMA from 0)")
    settled_line = ax.axvline(0, color="C1", linestyle=":", label=f"start forgotten (< {share(FORGOTTEN)} left)")
    ax.set(xlabel="training step", ylabel="statistic")

    def draw(momentum, drift, noise, keras_mistake):
        used = 1 - min(momentum, 1.0) if keras_mistake else min(momentum, 1.0)
        result = track(used, steps=steps, drift=drift, noise=noise, seed=seed)
        batch_dots.set_ydata(result["batch"])
        true_line.set_ydata(result["true"])
        ema_line.set_ydata(result["ema"])
        settled_line.set_xdata([result["settled"]] * 2)
        settled_line.set_visible(result["settled"] < steps)
        shown = [line for line in (batch_dots, true_line, ema_line, settled_line) if line.get_visible()]
        ax.legend(handles=shown, fontsize=8, loc="upper left")
        low = min(result["batch"].min(), 0.0)
        high = max(result["batch"].max(), result["true"].max())
        ax.set_ylim(low - 0.1, high + 0.25 * (high - low) + 0.1)
        mistake = " (Keras value 1 - m passed by mistake)" if keras_mistake else ""
        ax.set_title(f"PyTorch momentum {used:.3g}{mistake}", fontsize=10)
        return figure, ema_readout(result, used, steps, drift, noise, keras_mistake)

    controls = {
        "momentum": widgets.FloatLogSlider(value=0.1, base=10, min=-3, max=0, step=0.05, description="momentum",
                                           readout_format=".3g"),
        "drift": widgets.FloatSlider(value=0.003, min=0.0, max=0.02, step=0.001, description="drift / step",
                                     readout_format=".3f"),
        "noise": widgets.FloatSlider(value=0.3, min=0.0, max=1.0, step=0.05, description="batch noise"),
        "keras_mistake": widgets.Checkbox(value=False, description="pass 1 - momentum (Keras value)"),
    }
    return Explorer(controls, draw)
