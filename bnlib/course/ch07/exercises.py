"""Checks for notebook 07, the perils of batch norm: LayerNorm and GroupNorm for images, Santurkar et al.'s
noise as a module, and a prediction about batches of two checked against the explorer's own computation."""

import numpy as np
import torch
from torch import nn

from bnlib.course.ch07.small_batches import normalized_value_spread, unit_activations
from bnlib.course.checks import NotYet, call, check, check_choice, check_close, not_yet, passed, uniform_distance
from bnlib.normalization import EPS

IMAGE_SHAPE = (4, 6, 5, 5)   # (N, C, H, W)
GROUP_COUNTS = (3, 2)
NOISE_EXAMPLES, NOISE_UNITS = 4000, 200
NOISE_SETTINGS = {"scale": 3.0, "shift": 0.5, "spread": 0.3}  # not the defaults: an answer must use its settings
NOISE_SEEDS = 8
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
    """Raise ``NotYet`` (with the hint of a recognised mistake, or about float32's precision) unless ``answer``
    equals ``expected``."""
    __tracebackhide__ = True  # noqa: F841
    if answer.shape != expected.shape:
        not_yet(f"Return an array of the input's shape {expected.shape}; got {answer.shape}.")
    check_close(answer, expected, None, hint, mistakes, rtol=1e-7, atol=1e-9)


@check
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


@check
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


def _noise_module(noise_class):
    """``noise_class(**NOISE_SETTINGS)``, or a ``NotYet`` that says why it cannot be made."""
    __tracebackhide__ = True  # noqa: F841
    if isinstance(noise_class, nn.Module):
        not_yet("Pass the class itself, not a module made from it: check_noise_module(MyNoise), not MyNoise().")
    if not isinstance(noise_class, type) or not issubclass(noise_class, nn.Module):
        if noise_class is None:
            call(noise_class)  # the shared message when it is missing
        not_yet("Pass your class itself, a subclass of nn.Module (got an object of another kind).")
    try:
        return noise_class(**NOISE_SETTINGS)
    except NotImplementedError:
        not_yet("Your class is not written yet: replace `raise NotImplementedError()` by its code.")
    except Exception as err:  # the learner's code
        settings = ", ".join(f"{key}={value}" for key, value in NOISE_SETTINGS.items())
        raise NotYet(f"Not yet. Creating {noise_class.__name__}({settings}) raised {type(err).__name__}: "
                     f"{err}") from err


def _noise_parts(module, seed, verify=False):
    """(m, c), the multipliers and offsets of one forward pass: the same seeded draws on x_hat = 0 give c, on
    x_hat = 1 give m + c (torch's generator, seeded, draws the same numbers for inputs of one shape). With
    ``verify``, refused unless the pass is seeded by torch's generator and computes m x_hat + c."""
    __tracebackhide__ = True  # noqa: F841
    zeros = torch.zeros(NOISE_EXAMPLES, NOISE_UNITS)
    at = {value: _noise_draws(module, zeros + value, seed) for value in ((0.0, 1.0, 2.0) if verify else (0.0, 1.0))}
    if not verify:
        return at[1.0] - at[0.0], at[0.0]
    if not np.array_equal(_noise_draws(module, zeros + 1.0, seed), at[1.0]):
        not_yet("Draw the noise with torch's random numbers (torch.rand), which the check seeds: two passes from the "
                "same seed gave different noise.")
    if not np.allclose(at[2.0] - at[1.0], at[1.0] - at[0.0], rtol=1e-4, atol=1e-4):
        not_yet("The noise is m * x_hat + c per activation: multiply x_hat by m_ij and add c_ij, nothing else.")
    return at[1.0] - at[0.0], at[0.0]


def _correlated(a, b):
    """Whether two sets of per-unit centres go together (a correlation above 0.5; for independent draws of 200
    units it is about N(0, 0.07^2): 0.5 is 7 standard deviations away)."""
    return np.std(a) > 0 and np.std(b) > 0 and np.corrcoef(a, b)[0, 1] > 0.5


def _shared_by_units(residual):
    """Whether the per-activation noise (centres removed) of one example goes together across its units: the
    mean over 200 independent units varies 200 times less than one unit, shared noise as much."""
    return residual.mean(1).var() > 10 * residual.var() / residual.shape[1]


@check
def check_noise_module(noise_class):
    """``noise_class(scale, shift, spread)``: Santurkar et al.'s noise on a BN output, as an ``nn.Module``. Each
    structure the statement names is measured: noise per activation (not shared by examples or units), centres
    per unit redrawn at every pass, s_j log-uniform, b_j uniform, the spread multiplicative for m and additive
    for c. Every test compares statistics of ``NOISE_SEEDS`` seeded passes with margins at which a correct
    module fails with a probability below 1e-6 (the bounds are given where they are used), whatever the
    machine; the seeds make the verdict reproducible."""
    __tracebackhide__ = True  # noqa: F841
    module = _noise_module(noise_class)
    scale, shift, spread = (NOISE_SETTINGS[key] for key in ("scale", "shift", "spread"))
    x = torch.ones(NOISE_EXAMPLES, NOISE_UNITS)
    y = _noise_draws(module, x)
    if y.shape != tuple(x.shape):
        not_yet(f"Return one value per activation, the input's shape {tuple(x.shape)}; got {y.shape}.")
    if not np.array_equal(call(module.eval(), x), x.numpy()):
        not_yet("In eval mode (module.eval(), at test time) the noise is off: return x unchanged.")
    m, c = _noise_parts(module, 0, verify=True)
    if np.allclose(m, 1.0) and np.allclose(c, 0.0):
        not_yet("In training mode (self.training), add the noise: the output equals the input.")
    if np.array_equal(_noise_draws(module, x, seed=1), y):  # another seed: a module that draws must differ
        not_yet("Draw new noise at every forward pass: two calls gave the same output.")
    if np.allclose(m, 1.0):
        not_yet("The noise multiplies x_hat too: m_ij x_hat + c_ij with m_ij = s_j U(1 - spread, 1 + spread); yours "
                "only adds to it.")
    if np.abs(c).max() < 1e-6:
        not_yet("Add an offset c_ij = b_j + U(-spread, spread) after scaling: the noise needs a non-zero mean.")
    s, b = m.mean(0), c.mean(0)  # the centres s_j, b_j, to +-0.5% (the mean of 4,000 draws of sd s_j spread/sqrt 3)
    if c.std(0).min() < 0.05 or (m / s).std(0).min() < 0.05:
        not_yet("Each example needs noise of its own (i.i.d. per activation); the values of a unit are shared by "
                "the whole batch.")
    if _shared_by_units(c - b) or _shared_by_units(m / s):
        not_yet("Each unit needs noise of its own (i.i.d. per activation): one example's m_ij (or c_ij) are the "
                "same for all its units.")
    log_s = np.log(np.clip(s, 1e-12, None))
    if b.std() < 0.2 * shift or log_s.std() < 0.2 * np.log(scale):
        not_yet(f"The centres are drawn per unit: b_j from U(-shift, shift), log s_j from U(-log scale, log scale) "
                f"(s_j between 1/{scale:g} and {scale:g}), so that the noise changes each unit's mean and variance.")
    centres = [(s, b)] + [(part[0].mean(0), part[1].mean(0)) for part in map(lambda seed: _noise_parts(module, seed),
                                                                          range(1, NOISE_SEEDS))]
    if _correlated(b, centres[1][1]) or _correlated(log_s, np.log(np.clip(centres[1][0], 1e-12, None))):
        not_yet("Draw new centres s_j and b_j at every forward pass (the statement's 'at every call'): yours stay "
                "with each unit from one pass to the next.")
    _centres_distributed(np.concatenate([c_s for c_s, _ in centres]), np.concatenate([c_b for _, c_b in centres]))
    _spread_distributed(m, c, s, b)
    passed("Noise of non-zero mean and non-unit scale on every activation of every example, redrawn at every "
           "step, and off at test time.")


def _centres_distributed(s, b):
    """The pooled centres of ``NOISE_SEEDS`` passes (1,600 per kind) against their distributions. A correct module
    is refused only if a Kolmogorov-Smirnov distance exceeds 0.1: the centres' estimates are off by at most 0.5%
    (0.01 of distance), and by the DKW inequality 1,600 draws stray 0.09 with probability 2 exp(-2 1600 0.09^2)
    < 1e-11. Uniform s_j (between 1/2 and 2) are at distance 0.17 from log-uniform."""
    __tracebackhide__ = True  # noqa: F841
    scale, shift = NOISE_SETTINGS["scale"], NOISE_SETTINGS["shift"]
    if uniform_distance(b, -shift, shift) > 0.1:
        not_yet(f"The offsets' centre b_j should be drawn per unit from U(-shift, shift), here U(-{shift:g}, "
                f"{shift:g}), at each forward pass.")
    if uniform_distance(np.log(np.clip(s, 1e-12, None)), -np.log(scale), np.log(scale)) > 0.1:
        if uniform_distance(s, 1 / scale, scale) < 0.1:
            not_yet(f"s_j is log-uniform: exp(U(-log scale, log scale)), not uniform between 1/{scale:g} and "
                    f"{scale:g} (which makes s_j > 1 more likely than s_j < 1).")
        not_yet(f"The multipliers' centre s_j should be drawn per unit as exp(U(-log scale, log scale)): between "
                f"1/{scale:g} and {scale:g}, with log s_j uniform.")


def _spread_distributed(m, c, s, b):
    """Per activation, m_ij / s_j ~ U(1 - r, 1 + r) and c_ij - b_j ~ U(-r, r), r = spread. Both pooled over the
    800,000 activations of one pass, against U(-1, 1) after scaling: the centres' errors move the distance by
    about 0.005, and the DKW bound for a distance of 0.025 is 2 exp(-2 8e5 0.025^2), nil; a refusal needs 0.03.
    m_ij = s_j + U(-r, r) (an additive spread) instead: the spread of m_ij does not grow with s_j (the slope of
    log sd(m_ij) on log s_j is 0, not 1; estimated to +-0.02)."""
    __tracebackhide__ = True  # noqa: F841
    r = NOISE_SETTINGS["spread"]
    slope = np.polyfit(np.log(s), np.log(m.std(0)), 1)[0]
    if slope < 0.5:
        not_yet("The multipliers' spread is multiplicative: m_ij = s_j U(1 - spread, 1 + spread), so that a unit "
                "with a larger s_j gets a wider spread; yours is s_j plus a spread of its own.")
    if uniform_distance((m / s - 1) / r, -1, 1) > 0.03:
        not_yet(f"Around its centre, m_ij = s_j U(1 - spread, 1 + spread): with spread {r:g}, m_ij / s_j is uniform "
                f"between {1 - r:g} and {1 + r:g}.")
    if uniform_distance((c - b) / r, -1, 1) > 0.03:
        not_yet(f"The offsets of one unit should spread as b_j + U(-spread, spread), here U(-{r:g}, {r:g}) around "
                "b_j.")


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
