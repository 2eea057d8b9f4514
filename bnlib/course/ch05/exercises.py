"""Checks for notebook 05, running statistics: PyTorch's update with the unbiased variance, a Keras layer
ported to PyTorch, and two predictions with the EMA explorer (the lag, the best momentum under more noise)."""

import math

import numpy as np
import torch

from bnlib.course.ch05.ema import track
from bnlib.course.checks import FLOAT32, PRECISION, call, check, check_choice, check_close, not_yet, passed

STEP_MOMENTA = (0.1, 0.3, 0.05)  # PyTorch's default first: an answer that ignores its momentum fails the others
KERAS_SETTINGS = {"momentum": 0.99, "epsilon": 1e-3}            # Keras' defaults
OTHER_KERAS_SETTINGS = {"momentum": 0.9, "epsilon": 1e-2}       # a layer built with others: read from the dict
LAG_MOMENTA = (0.1, 0.01)
LAG_CHOICES = {"shorter": 0.5, "about the same": 1.0, "about 10 times longer": 10.0, "about 100 times longer": 100.0}
EXPLORER = {"steps": 1000, "drift": 0.003, "noise": 0.3, "seed": 0}   # the EMA explorer's defaults
EXPLORER_MOMENTA = 10 ** np.arange(-3, 0.001, 0.05)                  # its momentum slider's positions


@check
def check_running_stats_step(running_stats_step):
    """``running_stats_step(running_mean, running_var, batch, momentum) -> (running_mean, running_var)``: one
    training step of a BN layer's running statistics (numpy, batch of shape (n, C)), as torch.nn.BatchNorm1d;
    three steps of a real layer, each with its own momentum."""
    __tracebackhide__ = True  # noqa: F841
    rng = np.random.default_rng(5)
    layer = torch.nn.BatchNorm1d(3, dtype=torch.float64)
    for n, m in zip((4, 8, 5), STEP_MOMENTA):
        mean, var = layer.running_mean.numpy().copy(), layer.running_var.numpy().copy()
        batch = rng.normal([2.0, -1.0, 0.0], [1.0, 3.0, 0.5], size=(n, 3))
        layer.momentum = m
        layer(torch.from_numpy(batch))
        answer = call(running_stats_step, mean, var, batch, m)
        if answer.shape != (2, 3):
            not_yet("Return a pair (running_mean, running_var), each with one value per channel (shape (3,)).")
        batch_mean, unbiased = batch.mean(axis=0), batch.var(axis=0, ddof=1)
        mean_mistakes = [
            (m * mean + (1 - m) * batch_mean, "The weights are the wrong way round: in PyTorch, momentum is the weight "
                                              "of the NEW batch, (1 - momentum) that of the running value."),
            (batch_mean, "running_mean must not jump to the batch's mean: it moves a fraction momentum of the way."),
            ((1 - STEP_MOMENTA[0]) * mean + STEP_MOMENTA[0] * batch_mean,
             f"With momentum = {m:g} your step moves as with 0.1: you ignored the momentum argument."),
            ((1 - m) * mean + m * batch.mean(axis=1).mean(), "Average each channel over the batch (axis 0), "
                                                             "one mean per channel."),
        ]
        check_close(answer[0], layer.running_mean.numpy(), None, "running_mean is wrong: blend the old running_mean "
                    "and the batch's mean per channel (axis 0).", mean_mistakes, rtol=1e-10, atol=1e-12)
        var_mistakes = [
            ((1 - m) * var + m * batch.var(axis=0), "running_mean is right. running_var is not: it stores the UNBIASED "
                                                    "batch variance, n/(n-1) times the one BN normalizes with "
                                                    "(np.var(..., ddof=1))."),
            (m * var + (1 - m) * unbiased, "running_mean is right, but running_var's weights are the wrong way round: "
                                           "momentum weighs the NEW batch."),
            ((1 - STEP_MOMENTA[0]) * var + STEP_MOMENTA[0] * unbiased,
             f"With momentum = {m:g} running_var moves as with 0.1: you ignored the momentum argument."),
        ]
        check_close(answer[1], layer.running_var.numpy(), None, "running_mean is right. running_var is not: the same "
                    "blend, applied to the batch's variance per channel (which variance does PyTorch store?).",
                    var_mistakes, rtol=1e-10, atol=1e-12)
    passed("Your update matches torch.nn.BatchNorm1d's running_mean and running_var, step after step.")


def keras_layer(seed=6, channels=4, settings=KERAS_SETTINGS):
    """A Keras BatchNormalization's settings and weights, as its get_config() and get_weights() give them:
    momentum, epsilon, gamma, beta, moving_mean, moving_variance (one channel with a small variance)."""
    rng = np.random.default_rng(seed)
    return {**settings, "gamma": rng.uniform(0.5, 2.0, channels), "beta": rng.normal(0.0, 1.0, channels),
            "moving_mean": rng.normal(0.0, 3.0, channels),
            "moving_variance": np.array([0.01, 1.0, 4.0, 25.0][:channels])}


def keras_inference(keras, x):
    """Keras' inference output: gamma (x - moving_mean) / sqrt(moving_variance + epsilon) + beta."""
    return (keras["gamma"] * (x - keras["moving_mean"]) / np.sqrt(keras["moving_variance"] + keras["epsilon"])
            + keras["beta"])


def _converted(keras_to_torch_batchnorm, keras):
    """The learner's layer for ``keras`` (run on a copy: an edit of the dict is refused), or a ``NotYet``."""
    __tracebackhide__ = True  # noqa: F841
    made = []

    def convert(settings):
        made.append(keras_to_torch_batchnorm(settings))
        return None if made[0] is None else 0.0

    call(convert, keras)
    layer = made[0]
    if not isinstance(layer, torch.nn.Module) or getattr(layer, "running_mean", None) is None:
        not_yet(f"Return a torch.nn.BatchNorm1d that tracks running statistics (got {type(layer).__name__}).")
    return layer


def _statistics(layer):
    return np.stack([layer.running_mean.double().numpy(), layer.running_var.double().numpy()])


@check
def check_keras_to_torch(keras_to_torch_batchnorm):
    """``keras_to_torch_batchnorm(keras) -> torch.nn.BatchNorm1d`` that predicts like the Keras layer and keeps
    its running statistics the way the Keras layer keeps its moving ones: with Keras' defaults and with other
    settings; predicting (eval mode) leaves the statistics as they are."""
    __tracebackhide__ = True  # noqa: F841
    if isinstance(keras_to_torch_batchnorm, torch.nn.Module):
        not_yet("Pass your function keras_to_torch_batchnorm itself, not a layer it returned.")
    if not callable(keras_to_torch_batchnorm):
        call(keras_to_torch_batchnorm)                    # the hint for a missing answer
    for settings in (KERAS_SETTINGS, OTHER_KERAS_SETTINGS):
        keras = keras_layer(settings=settings)
        layer = _converted(keras_to_torch_batchnorm, keras)
        _predicts_like_keras(layer, keras)
        _keeps_the_moving_mean(layer, keras)
    passed("Same predictions, and the running statistics move as the Keras layer's moving ones.")


def _predicts_like_keras(layer, keras):
    """The eval-mode output is Keras' inference output, and predicting leaves the running statistics alone."""
    __tracebackhide__ = True  # noqa: F841
    rng = np.random.default_rng(7)
    x = rng.normal(keras["moving_mean"], np.sqrt(keras["moving_variance"]), size=(6, 4))
    dtype = layer.running_mean.dtype
    tolerance = {"rtol": 1e-9, "atol": 1e-9} if dtype == torch.float64 else {"rtol": 1e-4, "atol": 1e-5}
    before = _statistics(layer)
    with torch.no_grad():
        out = call(layer.eval(), torch.as_tensor(x, dtype=dtype))
    if not np.array_equal(_statistics(layer), before):
        not_yet("Predicting changed the layer's running statistics: in eval mode a BN layer uses them and leaves "
                "them as they are (as the Keras layer keeps its moving ones at inference).")
    expected, eps = keras_inference(keras, x), keras["epsilon"]
    if not np.allclose(out, expected, **tolerance):
        if np.allclose(out, keras_inference({**keras, "epsilon": 1e-5}, x), **tolerance):
            not_yet(f"Close, but the epsilon is torch's default 1e-5: the Keras layer's epsilon is {eps:g} (read it "
                    f"from the settings).")
        if np.allclose(out, keras_inference({**keras, "epsilon": KERAS_SETTINGS["epsilon"]}, x), **tolerance):
            not_yet(f"Close, but this Keras layer's epsilon is {eps:g}, not Keras' default 1e-3: read it from "
                    "keras['epsilon'].")
        if np.allclose(out, keras_inference({**keras, "moving_mean": 0, "moving_variance": 1}, x), **tolerance):
            not_yet("The layer still holds a fresh layer's running statistics (0 and 1): copy moving_mean and "
                    "moving_variance into running_mean and running_var.")
        if np.allclose(out, keras_inference({**keras, "gamma": keras["beta"], "beta": keras["gamma"]}, x), **tolerance):
            not_yet("gamma and beta are swapped: gamma is the layer's weight, beta its bias.")
        if np.allclose(out, expected, rtol=FLOAT32["rtol"], atol=FLOAT32["atol"] * 10):
            not_yet(PRECISION)
        not_yet("In eval mode the layer must compute gamma (x - moving_mean) / sqrt(moving_variance + epsilon) + beta, "
                "as the Keras layer does: check which of the layer's parameters and buffers you set.")


def _keeps_the_moving_mean(layer, keras):
    """After one training step the running mean is Keras' moving mean after that step."""
    __tracebackhide__ = True  # noqa: F841
    batch = np.random.default_rng(8).normal(0.0, 1.0, size=(8, 4))
    dtype = layer.running_mean.dtype
    tolerance = {"rtol": 1e-9, "atol": 1e-9} if dtype == torch.float64 else {"rtol": 1e-4, "atol": 1e-5}
    before = layer.running_mean.double().numpy().copy()
    with torch.no_grad():
        layer.train()(torch.as_tensor(batch, dtype=dtype))
    decay = keras["momentum"]
    moved = layer.running_mean.double().numpy()
    keras_moving_mean = decay * before + (1 - decay) * batch.mean(axis=0)      # Keras' update of moving_mean
    if np.allclose(moved, (1 - decay) * before + decay * batch.mean(axis=0), **tolerance):
        not_yet(f"It predicts right, but training would break it: Keras' momentum {decay:g} is the weight of the OLD "
                "average, PyTorch's momentum the weight of the NEW batch.")
    default = 1 - KERAS_SETTINGS["momentum"]
    if decay != KERAS_SETTINGS["momentum"] and np.allclose(moved, (1 - default) * before + default * batch.mean(0),
                                                           **tolerance):
        not_yet(f"This Keras layer's momentum is {decay:g}, not the default 0.99: read it from keras['momentum'].")
    if not np.allclose(moved, keras_moving_mean, **tolerance):
        not_yet("It predicts right, but after a training step its running_mean moves differently from Keras' "
                "moving_mean = momentum * moving_mean + (1 - momentum) * batch mean: check the momentum you set.")


def explorer_lag(momentum):
    """The lag, in steps, that the EMA explorer measures at its default drift and noise."""
    return track(momentum, **EXPLORER)["lag"]


def check_lag(prediction):
    """``prediction``: how the EMA's lag behind a drift changes from momentum 0.1 to 0.01."""
    factor = explorer_lag(LAG_MOMENTA[1]) / explorer_lag(LAG_MOMENTA[0])
    expected = min(LAG_CHOICES, key=lambda choice: abs(math.log(LAG_CHOICES[choice] / factor)))
    check_choice(prediction, expected, list(LAG_CHOICES),
                 "The lag is the mean age (1 - m)/m of the averaged batches.",
                 "Set the momentum to 0.1 and then 0.01 in the explorer and compare the lag in the readout; "
                 "section 2 gives the formula.")


def best_momentum(noise):
    """The explorer's momentum (slider position) with the smallest RMS error at the given batch noise."""
    settings = {**EXPLORER, "noise": noise}
    errors = np.array([track(momentum, **settings)["rms"] for momentum in EXPLORER_MOMENTA])
    return float(EXPLORER_MOMENTA[np.nanargmin(errors)])


def check_best_momentum(prediction):
    """``prediction``: how the best momentum moves when the batch noise doubles from 0.3 to 0.6."""
    low, high = best_momentum(EXPLORER["noise"]), best_momentum(2 * EXPLORER["noise"])
    expected = "the same" if math.isclose(low, high) else ("smaller" if high < low else "larger")
    check_choice(prediction, expected, ["smaller", "larger", "the same"],
                 "More noise is worth more averaging: a smaller momentum, at the price of more lag.",
                 "Find the momentum with the smallest RMS error in the explorer at noise 0.3, then at 0.6. "
                 "Which part of the error grows with the noise, and which momentum shrinks it?")
