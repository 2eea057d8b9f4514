"""Argument checks shared by the numpy and the torch batch norm, so both speak with one voice.

Each check raises a ``TypeError`` (wrong kind of value) or ``ValueError`` (right kind, wrong value)
whose message names the problem and says how to fix it, instead of letting a bad argument turn into
NaNs or a traceback deep inside numpy or torch.
"""

import math
import numbers

import torch

EPS = 1e-5  # eps's default, torch's: keeps 1 / sqrt(var + eps) finite when a channel is constant
SINGLE_VALUE = "Expected more than 1 value per channel when training"
LOW_PRECISION = (torch.float16, torch.bfloat16)  # computed in float32, as torch's CPU kernels do


def _is_real(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_num_features(num_features):
    """``num_features`` is C, the number of channels: an int of at least 1."""
    if isinstance(num_features, bool) or not isinstance(num_features, numbers.Integral):
        raise TypeError(f"num_features must be an int, the number of channels C of an input of shape "
                        f"(N, C, ...); got {num_features!r}")
    if num_features < 1:
        raise ValueError(f"num_features must be at least 1: it is the number of channels C of an input "
                         f"of shape (N, C, ...); got {num_features}")
    return int(num_features)


def check_eps(eps, training=True):
    """``eps`` keeps ``1 / sqrt(var + eps)`` finite when a channel is constant: a small positive number.

    Normalizing with running statistics (``training=False``) also accepts 0, as torch does.
    """
    if type(eps) is float and 0 < eps < math.inf:  # the common case, checked at every step
        return eps
    if not _is_real(eps):
        raise TypeError(f"eps must be a float, a small positive number added to the variance "
                        f"(default {EPS}); got {eps!r}")
    if not (0 < eps if training else 0 <= eps) or eps == math.inf:
        rule = ("positive when normalizing with batch statistics (training)" if training else
                "non-negative when normalizing with running statistics")
        raise ValueError(f"eps must be {rule}: it is added to the variance, which is 0 for a channel whose "
                         f"values are all equal, so that 1 / sqrt(var + eps) stays finite; use a small "
                         f"number such as the default {EPS}; got {eps}")
    return float(eps)


def check_momentum(momentum, allow_none=True):
    """``momentum`` is the weight of the new batch in the running average: a float in [0, 1]."""
    if type(momentum) is float and 0 <= momentum <= 1:  # the common case, checked at every training step
        return momentum
    if momentum is None and allow_none:
        return None
    hint = ("momentum is the weight of the new batch in running = (1 - momentum) * running + "
            "momentum * batch (PyTorch convention, default 0.1); a Keras/TensorFlow decay of 0.99 is "
            "momentum 0.01, see keras_to_torch_momentum")
    if allow_none:
        hint += "; None means a cumulative average"
    if not _is_real(momentum):
        raise TypeError(f"momentum must be a float in [0, 1]{' or None' if allow_none else ''}; "
                        f"got {momentum!r}. {hint}")
    if not 0 <= momentum <= 1:
        raise ValueError(f"momentum must lie in [0, 1]; got {momentum}. {hint}")
    return float(momentum)


def _check_clip_bound(value, name, least, clipped, correction, final):
    """A Batch Renorm bound: a float of at least ``least`` (plain batch norm), the paper's ``final`` value."""
    if not _is_real(value):
        raise TypeError(f"{name} must be a float of at least {least:g} (the paper's final value is {final:g}); "
                        f"got {value!r}")
    if not value >= least:
        raise ValueError(f"{name} must be at least {least:g}: Batch Renorm clips {clipped}, a range that is empty "
                         f"below {least:g}. Use {least:g} to train as plain batch norm (no correction of the "
                         f"{correction}) and raise it as the running statistics settle (the paper goes to "
                         f"{final:g}); got {value}")
    return float(value)


def check_r_max(r_max):
    """Batch Renorm clips r = sigma_B / sigma to [1/r_max, r_max]: r_max is a float of at least 1."""
    return _check_clip_bound(r_max, "r_max", 1, "r = sigma_B / sigma to [1/r_max, r_max]", "scale", 3)


def check_d_max(d_max):
    """Batch Renorm clips d = (mu_B - mu) / sigma to [-d_max, d_max]: d_max is a float of at least 0."""
    return _check_clip_bound(d_max, "d_max", 0, "d = (mu_B - mu) / sigma to [-d_max, d_max]", "shift", 5)


def check_input_shape(shape, num_features=None, training=True, layer=None, ndims=None, layout=None,
                      empty_ok=False):
    """An input of shape (N, C, *spatial) with the expected channels and, in training, >1 value each.

    ``layer``, ``ndims`` and ``layout`` describe what a specific layer accepts, e.g. ``"BatchNorm2d"``,
    ``(4,)`` and ``"(N, C, H, W)"``. An empty batch passes with ``empty_ok`` (layers return an empty
    output, as torch's do); a function that returns batch statistics has none to return for it.
    """
    shape = tuple(shape)
    if ndims is not None and len(shape) not in ndims:
        wanted = " or ".join(f"{n}D" for n in ndims)
        family = layer[:-2] if layer[-2:] in ("1d", "2d") else "BatchNorm"  # BatchNorm, BatchRenorm
        raise ValueError(f"{layer} expects a {wanted} input {layout}, got a {len(shape)}D input of "
                         f"shape {shape}. Use {family}1d for (N, C) or (N, C, L) inputs and {family}2d "
                         f"for (N, C, H, W) images, or reshape the input.")
    if len(shape) < 2:
        raise ValueError(f"batch norm needs an input of shape (N, C) or (N, C, *spatial): the batch on "
                         f"axis 0, the channels on axis 1; got shape {shape}. For a single feature, "
                         f"reshape to (N, 1).")
    if num_features is not None and shape[1] != num_features:
        raise ValueError(f"expected {num_features} channels on axis 1 (num_features), got an input of "
                         f"shape {shape} with {shape[1]}. Make num_features match the input, or move "
                         f"the channels to axis 1 (channels-last data needs a permute).")
    values_per_channel = math.prod(shape) // shape[1] if shape[1] else 0
    if training and values_per_channel == 1:
        raise ValueError(f"{SINGLE_VALUE}, got input size {shape}: the variance of a single value is 0, "
                         f"so the batch statistics carry no information. Train on batches of at least 2, "
                         f"or switch to evaluation mode (running statistics) to process one sample.")
    if training and values_per_channel == 0 and not empty_ok:
        raise ValueError(f"batch statistics need at least 2 values per channel, got an empty input of "
                         f"size {shape}: the mean and variance of no values are undefined. Skip empty "
                         f"batches (the BatchNorm layers accept them and return an empty output).")


def check_layer_state(layer, num_features, **state):
    """A layer's parameters and running statistics, passed by name, hold one value per channel: shape
    (num_features,). A wrong size would otherwise fail deep inside torch, or, for size 1, broadcast into
    a wrong result."""
    for name, value in state.items():
        if value is not None and value.shape != (num_features,):
            raise ValueError(f"{layer}.{name} must have shape ({num_features},), one value per channel "
                             f"(num_features={num_features}); got shape {tuple(value.shape)}. Assign a "
                             f"tensor of that shape, or build the layer with num_features matching it.")


def check_dtype(input_dtype, layer_dtype, layer):
    """The input must have the floating-point type of the layer's parameters and buffers, except that a
    float32 layer also takes float16 and bfloat16 inputs (torch's mixed precision on the CPU)."""
    mixed = layer_dtype == torch.float32 and input_dtype in LOW_PRECISION
    if input_dtype != layer_dtype and not mixed:
        raise TypeError(f"{layer} holds {layer_dtype} parameters but got a {input_dtype} input; convert "
                        f"one of them, e.g. layer.to({input_dtype}) or x.to({layer_dtype}) (a float32 "
                        f"layer also takes float16 and bfloat16 inputs)")


def check_channel_vector(shape, name, num_channels):
    """gamma and beta hold one value per channel: shape (C,)."""
    if tuple(shape) != (num_channels,):
        raise ValueError(f"{name} must have shape ({num_channels},), one value per channel of x "
                         f"(axis 1); got shape {tuple(shape)}")
