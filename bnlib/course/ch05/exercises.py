"""Checks for notebook 05, running statistics: PyTorch's update with the unbiased variance, a Keras layer
ported to PyTorch, and two predictions with the EMA explorer (the lag, the best momentum under more noise)."""

import math

import numpy as np
import torch

from bnlib.course.ch05.ema import track
from bnlib.course.checks import call, check_choice, not_yet, passed, verdict

STEP_MOMENTUM = 0.1
KERAS_SETTINGS = {"momentum": 0.99, "epsilon": 1e-3}            # Keras' defaults
LAG_MOMENTA = (0.1, 0.01)
LAG_CHOICES = {"shorter": 0.5, "about the same": 1.0, "about 10 times longer": 10.0, "about 100 times longer": 100.0}
EXPLORER = {"steps": 1000, "drift": 0.003, "noise": 0.3, "seed": 0}   # the EMA explorer's defaults
EXPLORER_MOMENTA = 10 ** np.arange(-3, 0.001, 0.05)                  # its momentum slider's positions


def check_running_stats_step(running_stats_step):
    """``running_stats_step(running_mean, running_var, batch, momentum) -> (running_mean, running_var)``: one
    training step of a BN layer's running statistics (numpy, batch of shape (n, C)), as torch.nn.BatchNorm1d."""
    rng = np.random.default_rng(5)
    layer = torch.nn.BatchNorm1d(3, momentum=STEP_MOMENTUM, dtype=torch.float64)
    m = STEP_MOMENTUM
    for n in (4, 8, 5):
        mean, var = layer.running_mean.numpy().copy(), layer.running_var.numpy().copy()
        batch = rng.normal([2.0, -1.0, 0.0], [1.0, 3.0, 0.5], size=(n, 3))
        layer(torch.from_numpy(batch))
        answer = call(running_stats_step, mean.copy(), var.copy(), batch.copy(), m)
        if answer.shape != (2, 3):
            not_yet("Return a pair (running_mean, running_var), each with one value per channel (shape (3,)).")
        new_mean, new_var = answer
        if not np.allclose(new_mean, layer.running_mean.numpy(), rtol=1e-10, atol=1e-12):
            if np.allclose(new_mean, m * mean + (1 - m) * batch.mean(axis=0)):
                not_yet("The weights are the wrong way round: in PyTorch, momentum is the weight of the NEW "
                        "batch, (1 - momentum) that of the running value.")
            if np.allclose(new_mean, batch.mean(axis=0)):
                not_yet("running_mean must not jump to the batch's mean: it moves a fraction momentum of the way.")
            not_yet("running_mean is wrong: blend the old running_mean and the batch's mean per channel (axis 0).")
        if np.allclose(new_var, (1 - m) * var + m * batch.var(axis=0)):
            not_yet("running_mean is right. running_var is not: it stores the UNBIASED batch variance, "
                    "n/(n-1) times the one BN normalizes with (np.var(..., ddof=1)).")
        if not np.allclose(new_var, layer.running_var.numpy(), rtol=1e-10, atol=1e-12):
            not_yet("running_mean is right. running_var is not: the same blend, applied to the batch's variance "
                    "per channel (which variance does PyTorch store?).")
    passed("Your update matches torch.nn.BatchNorm1d's running_mean and running_var, step after step.")


def keras_layer(seed=6, channels=4):
    """A Keras BatchNormalization's settings and weights, as its get_config() and get_weights() give them:
    momentum, epsilon, gamma, beta, moving_mean, moving_variance (one channel with a small variance)."""
    rng = np.random.default_rng(seed)
    return {**KERAS_SETTINGS, "gamma": rng.uniform(0.5, 2.0, channels), "beta": rng.normal(0.0, 1.0, channels),
            "moving_mean": rng.normal(0.0, 3.0, channels),
            "moving_variance": np.array([0.01, 1.0, 4.0, 25.0][:channels])}


def keras_inference(keras, x):
    """Keras' inference output: gamma (x - moving_mean) / sqrt(moving_variance + epsilon) + beta."""
    return (keras["gamma"] * (x - keras["moving_mean"]) / np.sqrt(keras["moving_variance"] + keras["epsilon"])
            + keras["beta"])


def check_keras_to_torch(keras_to_torch_batchnorm):
    """``keras_to_torch_batchnorm(keras) -> torch.nn.BatchNorm1d`` that predicts like the Keras layer and keeps
    its running statistics the way the Keras layer keeps its moving ones."""
    if isinstance(keras_to_torch_batchnorm, torch.nn.Module):
        not_yet("Pass your function keras_to_torch_batchnorm itself, not a layer it returned.")
    if not callable(keras_to_torch_batchnorm):
        call(keras_to_torch_batchnorm)                    # the hint for a missing answer
    keras = keras_layer()
    made = []

    def convert(settings):
        made.append(keras_to_torch_batchnorm(settings))
        return None if made[0] is None else 0.0

    call(convert, {name: np.copy(value) if isinstance(value, np.ndarray) else value for name, value in keras.items()})
    layer = made[0]
    if not isinstance(layer, torch.nn.Module) or not hasattr(layer, "running_mean"):
        not_yet(f"Return a torch.nn.BatchNorm1d (got {type(layer).__name__}).")
    rng = np.random.default_rng(7)
    x = rng.normal(keras["moving_mean"], np.sqrt(keras["moving_variance"]), size=(6, 4))
    dtype = layer.running_mean.dtype
    tolerance = {"rtol": 1e-9, "atol": 1e-9} if dtype == torch.float64 else {"rtol": 1e-4, "atol": 1e-5}
    with torch.no_grad():
        out = layer.eval()(torch.as_tensor(x, dtype=dtype)).double().numpy()
    expected = keras_inference(keras, x)
    if not np.allclose(out, expected, **tolerance):
        if np.allclose(out, keras_inference({**keras, "epsilon": 1e-5}, x), **tolerance):
            not_yet("Close, but the epsilon is torch's default 1e-5: Keras' default epsilon is 1e-3 (read it from "
                    "the settings).")
        if np.allclose(out, keras_inference({**keras, "moving_mean": 0, "moving_variance": 1}, x), **tolerance):
            not_yet("The layer still holds a fresh layer's running statistics (0 and 1): copy moving_mean and "
                    "moving_variance into running_mean and running_var.")
        if np.allclose(out, keras_inference({**keras, "gamma": keras["beta"], "beta": keras["gamma"]}, x), **tolerance):
            not_yet("gamma and beta are swapped: gamma is the layer's weight, beta its bias.")
        not_yet("In eval mode the layer must compute gamma (x - moving_mean) / sqrt(moving_variance + epsilon) + beta, "
                "as the Keras layer does: check which of the layer's parameters and buffers you set.")
    batch = rng.normal(0.0, 1.0, size=(8, 4))
    before = layer.running_mean.double().numpy().copy()
    with torch.no_grad():
        layer.train()(torch.as_tensor(batch, dtype=dtype))
    decay = keras["momentum"]
    keras_moving_mean = decay * before + (1 - decay) * batch.mean(axis=0)      # Keras' update of moving_mean
    if np.allclose(layer.running_mean.double().numpy(), (1 - decay) * before + decay * batch.mean(axis=0), **tolerance):
        not_yet("It predicts right, but training would break it: Keras' momentum 0.99 is the weight of the OLD "
                "average, PyTorch's momentum the weight of the NEW batch.")
    verdict(np.allclose(layer.running_mean.double().numpy(), keras_moving_mean, **tolerance),
            "Same predictions, and the running statistics move as the Keras layer's moving ones.",
            "It predicts right, but after a training step its running_mean moves differently from Keras' "
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
