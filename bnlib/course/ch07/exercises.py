"""Checks for notebook 07, the perils of batch norm: LayerNorm and GroupNorm for images, Santurkar et al.'s
noise as a module, and a prediction about batches of two checked against the explorer's own computation."""

import numpy as np
import torch
from torch import nn

from bnlib.course.ch07.small_batches import normalized_value_spread, unit_activations
from bnlib.course.checks import NotYet, call, check_choice, not_yet, passed
from bnlib.normalization import EPS

IMAGE_SHAPE = (4, 6, 5, 5)   # (N, C, H, W)
GROUP_COUNTS = (3, 2)
NOISE_EXAMPLES, NOISE_UNITS = 4000, 200
NOISE_SETTINGS = {"scale": 2.0, "shift": 1.0, "spread": 0.5}
TWO_CHOICES = ("always +1", "always -1", "+1 or -1", "anywhere between -1 and +1")


def image_batch(seed=7):
    """The activations of the image exercises: (N, C, H, W), channels with different means and spreads."""
    rng = np.random.default_rng(seed)
    n, c, h, w = IMAGE_SHAPE
    return rng.normal(rng.uniform(-3, 3, (1, c, 1, 1)), rng.uniform(0.5, 3, (1, c, 1, 1)), size=(n, c, h, w))


def _standardize(x, axes, ddof=0):
    mean, var = x.mean(axes, keepdims=True), x.var(axes, keepdims=True, ddof=ddof)
    return (x - mean) / np.sqrt(var + EPS)


def _grouped(x, groups, axes, ddof=0):
    """Standardize ``x`` (N, C, H, W) seen as (N, G, C/G, H, W) over ``axes`` of that view."""
    n, c, h, w = x.shape
    return _standardize(x.reshape(n, groups, c // groups, h, w), axes, ddof).reshape(x.shape)


def _refuse_unless_close(answer, expected, mistakes, hint):
    """Raise ``NotYet`` (with the hint of a recognised mistake) unless ``answer`` equals ``expected``."""
    __tracebackhide__ = True  # noqa: F841
    if answer.shape != expected.shape:
        not_yet(f"Return an array of the input's shape {expected.shape}; got {answer.shape}.")
    if not np.allclose(answer, expected, rtol=1e-7, atol=1e-9):
        not_yet(next((text for value, text in mistakes if np.allclose(answer, value, rtol=1e-7, atol=1e-9)), hint))


def check_layer_norm_images(layer_norm_images):
    """``layer_norm_images(x)``: LayerNorm without scale and shift for (N, C, H, W) activations."""
    __tracebackhide__ = True  # noqa: F841
    x = image_batch()
    answer = call(layer_norm_images, x.copy())
    layer = nn.LayerNorm(x.shape[1:], eps=EPS, elementwise_affine=False, dtype=torch.float64)
    expected = layer(torch.as_tensor(x)).detach().numpy()
    mistakes = [
        (_standardize(x, (0, 2, 3)), "That is batch norm: one mean per channel over (N, H, W). LayerNorm takes one "
                                     "mean per example, over its (C, H, W)."),
        (_standardize(x, 1), "That normalizes each pixel over the channels only; LayerNorm's statistics cover all "
                             "of an example's values, axes (C, H, W)."),
        (_standardize(x, (2, 3)), "That is one mean per example and channel (InstanceNorm); LayerNorm pools all the "
                                  "channels of an example too: axes (1, 2, 3)."),
        (_standardize(x, (1, 2, 3), ddof=1), "Use the biased variance (divide by the count, not count - 1), as every "
                                             "normalization layer does."),
        ((x - x.mean((1, 2, 3), keepdims=True)) / x.std((1, 2, 3), keepdims=True),
         "Close: add eps (1e-5) to the variance inside the square root."),
    ]
    _refuse_unless_close(answer, expected, mistakes, "For each example, subtract the mean of all its values "
                                                     "(axes 1, 2, 3) and divide by sqrt(var + eps).")
    passed("One mean and variance per example, over axes (1, 2, 3): no other example enters them.")


def check_group_norm_images(group_norm_images):
    """``group_norm_images(x, groups)``: GroupNorm without scale and shift for (N, C, H, W) activations."""
    __tracebackhide__ = True  # noqa: F841
    x = image_batch()
    for groups in GROUP_COUNTS:
        answer = call(group_norm_images, x.copy(), groups)
        layer = nn.GroupNorm(groups, x.shape[1], eps=EPS, affine=False, dtype=torch.float64)
        expected = layer(torch.as_tensor(x)).detach().numpy()
        n, c, h, w = x.shape
        strided = _standardize(x.reshape(n, c // groups, groups, h, w), (1, 3, 4)).reshape(x.shape)
        mistakes = [
            (_grouped(x, groups, 2), "The group's statistics cover its channels AND every pixel of them: average "
                                     "over (channels of the group, H, W), axes (2, 3, 4) of (N, G, C/G, H, W)."),
            (strided, f"Group g holds consecutive channels, g*C/G to (g+1)*C/G - 1 (reshape to (N, G, C/G, H, W)); "
                      f"you took every {groups}th channel."),
            (_standardize(x, (1, 2, 3)), "That is LayerNorm, a single group; split the channels into `groups`."),
            (_standardize(x, (2, 3)), "That is one group per channel (InstanceNorm); split the channels into `groups`."),
            (_standardize(x, (0, 2, 3)), "That is batch norm, over the examples; GroupNorm never looks across them."),
            (_grouped(x, groups, (2, 3, 4), ddof=1), "Use the biased variance (divide by the count, not count - 1)."),
        ]
        try:
            _refuse_unless_close(answer, expected, mistakes, "Reshape to (N, G, C/G, H, W), standardize over axes "
                                                             "(2, 3, 4) with sqrt(var + eps), and reshape back.")
        except NotYet as wrong:
            raise NotYet(f"{wrong} (with groups={groups})") from None
    passed("Per example and group of consecutive channels, over the group's channels and pixels; "
           "groups = C would be InstanceNorm, groups = 1 LayerNorm.")


def _noise_draws(module, x, seed=0):
    """``module(x)`` in training mode, from torch's generator seeded with ``seed`` (the caller's random state
    left as it was), as float64."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return call(module.train(), x)


def check_noise_module(noise_class):
    """``noise_class(scale, shift, spread)``: Santurkar et al.'s noise on a BN output, as an ``nn.Module``."""
    __tracebackhide__ = True  # noqa: F841
    if isinstance(noise_class, nn.Module):
        not_yet("Pass the class itself, not a module made from it: check_noise_module(MyNoise), not MyNoise().")
    if not isinstance(noise_class, type) or not issubclass(noise_class, nn.Module):
        call(noise_class)  # the shared message when it is missing
        not_yet("Pass your class itself, a subclass of nn.Module (got an object of another kind).")
    try:
        module = noise_class(**NOISE_SETTINGS)
    except NotImplementedError:
        not_yet("Your class is not written yet: replace `raise NotImplementedError()` by its code.")
    except Exception as err:  # the learner's code
        raise NotYet(f"Not yet. Creating {noise_class.__name__}(scale=2.0, shift=1.0, spread=0.5) raised "
                     f"{type(err).__name__}: {err}") from err
    half = NOISE_EXAMPLES // 2
    x = torch.cat([torch.zeros(half, NOISE_UNITS), torch.ones(half, NOISE_UNITS)])  # BN outputs 0, then 1
    y = _noise_draws(module, x)
    if y.shape != tuple(x.shape):
        not_yet(f"Return one value per activation, the input's shape {tuple(x.shape)}; got {y.shape}.")
    if not np.array_equal(call(module.eval(), x), x.numpy()):
        not_yet("In eval mode (module.eval(), at test time) the noise is off: return x unchanged.")
    if np.allclose(y, x.numpy()):
        not_yet("In training mode (self.training), add the noise: the output equals the input.")
    if np.allclose(_noise_draws(module, x, seed=1), y):  # another seed: a module that draws must differ
        not_yet("Draw new noise at every forward pass: two calls gave the same output.")
    offsets, outputs_at_one = y[:half], y[half:]  # BN output 0: the offset c_ij; BN output 1: m_ij + c_ij
    if np.abs(offsets).max() < 1e-6:
        not_yet("Add an offset c_ij = b_j + U(-spread, spread) after scaling: the noise needs a non-zero mean.")
    if offsets.std(0).min() < 0.05:
        not_yet("Each example needs noise of its own (i.i.d. per activation); the values of a unit are shared by "
                "the whole batch.")
    shift_centres, scale_centres = offsets.mean(0), outputs_at_one.mean(0) - offsets.mean(0)
    if np.abs(shift_centres).max() > 1.2 or shift_centres.std() < 0.3:
        not_yet("The offsets' centre b_j should be drawn per unit from U(-shift, shift) at each forward pass, "
                "so that the noise has a non-zero mean.")
    if scale_centres.min() < 0.4 or scale_centres.max() > 2.4 or np.log(scale_centres).std() < 0.25:
        not_yet("The multipliers' centre s_j should be drawn per unit as exp(U(-log scale, log scale)): between "
                "1/2 and 2 for scale 2, so that the noise changes each unit's variance.")
    spread = offsets.std(0).mean()
    if not 0.7 * 0.5 / np.sqrt(3) < spread < 1.3 * 0.5 / np.sqrt(3):
        not_yet(f"The offsets of one unit should spread as b_j + U(-spread, spread), a standard deviation of "
                f"spread/sqrt(3) = {0.5 / np.sqrt(3):.2f}; yours spread by {spread:.2f}.")
    passed("Noise of non-zero mean and non-unit scale on every activation of every example, redrawn at every "
           "step, and off at test time.")


def batch_of_two_values(unit=0):
    """The explorer's right panel at batch 2: the normalized values of the unit's 90th-percentile example."""
    values = unit_activations()[:, unit].astype(np.float64)
    return normalized_value_spread(values, float(np.quantile(values, 0.9)), 2, draws=1000)


def check_batch_of_two(prediction):
    """``prediction``: where the fixed example's normalized value lands at batch 2, one of ``TWO_CHOICES``."""
    __tracebackhide__ = True  # noqa: F841
    normalized = batch_of_two_values()
    at_one = np.mean(np.abs(normalized) > 0.9) > 0.95  # eps keeps |x_hat| a hair below 1 for a close partner
    positive, negative = np.any(normalized > 0.9), np.any(normalized < -0.9)
    expected = TWO_CHOICES[3] if not at_one else TWO_CHOICES[2] if positive and negative else \
        TWO_CHOICES[0] if positive else TWO_CHOICES[1]
    check_choice(prediction, expected, TWO_CHOICES,
                 "With one partner, (x - mu_B) / sigma_B is +1 when the example is the larger of the two and -1 "
                 "when it is the smaller: only the order survives.",
                 "Work out BN on two values a < b by hand (mean midway, biased variance ((b - a)/2)^2), then set the "
                 "explorer to batch 2 and look at the right panel.")
