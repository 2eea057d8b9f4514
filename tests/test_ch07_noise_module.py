"""Chapter 07's check of Santurkar et al.'s noise module accepts correct modules, whatever the seeds and the
thread count, and names each structure a wrong one gets wrong: noise shared by examples or by units, drawn once,
centres drawn once, uniform instead of log-uniform, additive instead of multiplicative, the wrong spread, settings
ignored, numpy's generator."""

import numpy as np
import pytest
import torch
from exercise_checks import refused
from torch import nn

from bnlib.course.ch07 import exercises


def uniform(*shape):
    return 2 * torch.rand(*shape) - 1


class Noise(nn.Module):
    """The solution: per activation, centres redrawn at every call."""

    def __init__(self, scale=2.0, shift=1.0, spread=0.5):
        super().__init__()
        self.scale, self.shift, self.spread = scale, shift, spread

    def forward(self, x_hat):
        return self.noisy(x_hat) if self.training else x_hat

    def centres(self, units):
        return torch.exp(uniform(units) * np.log(self.scale)), uniform(units) * self.shift

    def noisy(self, x_hat):
        n, units = x_hat.shape
        s, b = self.centres(units)
        return s * (1 + self.spread * uniform(n, units)) * x_hat + b + self.spread * uniform(n, units)


class ByDistributions(Noise):
    """torch.distributions, offsets drawn before the multipliers, rand_like."""

    def noisy(self, x_hat):
        n, units = x_hat.shape
        log_scale = float(np.log(self.scale))
        b = torch.distributions.Uniform(-self.shift, self.shift).sample((units,))
        s = torch.distributions.Uniform(-log_scale, log_scale).sample((units,)).exp()
        c = b + (2 * torch.rand_like(x_hat) - 1) * self.spread
        m = s * torch.empty_like(x_hat).uniform_(1 - self.spread, 1 + self.spread)
        return x_hat * m + c


class InPlaceFree(Noise):
    """Written with torch.rand directly and a scale computed by pow."""

    def forward(self, x_hat):
        if not self.training:
            return x_hat
        n, c = x_hat.shape
        s = self.scale ** (2 * torch.rand(1, c) - 1)
        b = self.shift * (2 * torch.rand(1, c) - 1)
        m = s * (1 - self.spread + 2 * self.spread * torch.rand(n, c))
        return m * x_hat + (b - self.spread + 2 * self.spread * torch.rand(n, c))


@pytest.mark.parametrize("answer", [Noise, ByDistributions, InPlaceFree])
def test_noise_module_accepts_every_correct_form(answer, capsys):
    torch.manual_seed(0)  # the learner's generator as the check seeds its own draw: not a repeated draw
    exercises.check_noise_module(answer)
    assert capsys.readouterr().out.startswith("Correct.")


@pytest.mark.parametrize("answer", [Noise, ByDistributions])
def test_noise_module_accepts_a_correct_module_whatever_the_seeds_and_threads(answer, capsys):
    """The margins hold for other seeds and another thread count than the check's: it does not pass by luck."""
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        with pytest.MonkeyPatch.context() as patch:
            original = exercises._noise_draws
            patch.setattr(exercises, "_noise_draws", lambda module, x, seed=0: original(module, x, seed + 1000))
            exercises.check_noise_module(answer)
    finally:
        torch.set_num_threads(threads)
    assert capsys.readouterr().out.startswith("Correct.")


class SharedNoise(Noise):
    """One scale and shift per unit and step, shared by the batch."""

    def noisy(self, x_hat):
        s, b = self.centres(x_hat.shape[1])
        return s * x_hat + b


class SharedAcrossUnits(Noise):
    """Per-activation noise drawn once per example and shared by its units."""

    def noisy(self, x_hat):
        n, units = x_hat.shape
        s, b = self.centres(units)
        return s * (1 + self.spread * uniform(n, 1)) * x_hat + b + self.spread * uniform(n, 1)


class AlwaysOn(Noise):
    def forward(self, x_hat):
        return self.noisy(x_hat)


class DrawnOnce(Noise):
    def forward(self, x_hat):
        if not self.training:
            return x_hat
        if not hasattr(self, "fixed"):
            self.fixed = self.noisy(x_hat) - x_hat
        return x_hat + self.fixed


class CentresDrawnOnce(Noise):
    """The centres drawn when the module is made, the per-activation noise at every call."""

    def __init__(self, scale=2.0, shift=1.0, spread=0.5):
        super().__init__(scale, shift, spread)
        self.s, self.b = self.centres(200)

    def noisy(self, x_hat):
        n, units = x_hat.shape
        return self.s * (1 + self.spread * uniform(n, units)) * x_hat + self.b + self.spread * uniform(n, units)


class ZeroMean(Noise):
    def forward(self, x_hat):
        return x_hat * (1 + self.spread * uniform(*x_hat.shape)) if self.training else x_hat


class FixedCentres(Noise):
    def forward(self, x_hat):
        return x_hat + 0.1 + self.spread * uniform(*x_hat.shape) if self.training else x_hat


class ConstantCentres(Noise):
    def centres(self, units):
        return torch.full((units,), 1.5), torch.full((units,), 0.1)


class UnitScale(Noise):
    def centres(self, units):
        return torch.ones(units), uniform(units) * self.shift


class UniformScale(Noise):
    """s_j uniform between 1/scale and scale instead of log-uniform."""

    def centres(self, units):
        low = 1 / self.scale
        return low + (self.scale - low) * torch.rand(units), uniform(units) * self.shift


class ScaleBetweenZeroAndScale(Noise):
    def centres(self, units):
        return self.scale * torch.rand(units), uniform(units) * self.shift


class NormalShift(Noise):
    def centres(self, units):
        return torch.exp(uniform(units) * np.log(self.scale)), torch.randn(units) * self.shift


class AdditiveSpread(Noise):
    """m_ij = s_j + U(-r, r): the multipliers' spread added instead of multiplied."""

    def noisy(self, x_hat):
        n, units = x_hat.shape
        s, b = self.centres(units)
        return (s + self.spread * uniform(n, units)) * x_hat + b + self.spread * uniform(n, units)


class OnlyAdditive(Noise):
    """x_hat + s_j U(1 - r, 1 + r) + c_ij: the multiplier added instead of multiplied."""

    def noisy(self, x_hat):
        n, units = x_hat.shape
        s, b = self.centres(units)
        return x_hat + s * (1 + self.spread * uniform(n, units)) + b + self.spread * uniform(n, units)


class HalfSpread(Noise):
    def noisy(self, x_hat):
        n, units = x_hat.shape
        s, b = self.centres(units)
        return s * (1 + self.spread * uniform(n, units)) * x_hat + b + self.spread / 2 * uniform(n, units)


class NormalSpread(Noise):
    def noisy(self, x_hat):
        n, units = x_hat.shape
        s, b = self.centres(units)
        return s * (1 + self.spread * torch.randn(n, units)) * x_hat + b + self.spread * uniform(n, units)


class DefaultSettings(Noise):
    """Ignores its settings: the statement's defaults written into forward."""

    def noisy(self, x_hat):
        n, units = x_hat.shape
        s, b = torch.exp(uniform(units) * np.log(2.0)), uniform(units) * 1.0
        return s * (1 + 0.5 * uniform(n, units)) * x_hat + b + 0.5 * uniform(n, units)


class NumpyNoise(Noise):
    def noisy(self, x_hat):
        rng = np.random.default_rng()
        n, units = x_hat.shape
        s = np.exp(rng.uniform(-1, 1, units) * np.log(self.scale))
        m = s * rng.uniform(1 - self.spread, 1 + self.spread, (n, units))
        c = rng.uniform(-self.shift, self.shift, units) + rng.uniform(-self.spread, self.spread, (n, units))
        return x_hat * torch.as_tensor(m, dtype=x_hat.dtype) + torch.as_tensor(c, dtype=x_hat.dtype)


class Squared(Noise):
    def noisy(self, x_hat):
        return super().noisy(x_hat) * (1 + 0.1 * x_hat)


@pytest.mark.parametrize("wrong, hint", [
    (SharedNoise, "noise of its own"),
    (SharedAcrossUnits, "Each unit needs noise of its own"),
    (AlwaysOn, "eval mode"),
    (DrawnOnce, "every forward pass"),
    (CentresDrawnOnce, "Draw new centres"),
    (ZeroMean, "non-zero mean"),
    (FixedCentres, "multiplies x_hat too"),
    (ConstantCentres, "drawn per unit"),
    (UnitScale, "drawn per unit"),
    (UniformScale, "not uniform between 1/3 and 3"),
    (ScaleBetweenZeroAndScale, "log s_j uniform"),
    (NormalShift, "U(-shift, shift)"),
    (AdditiveSpread, "multiplicative"),
    (OnlyAdditive, "multiplies x_hat too"),
    (HalfSpread, "U(-0.3, 0.3) around"),
    (NormalSpread, "m_ij / s_j is uniform"),
    (DefaultSettings, "U(-0.5, 0.5)"),
    (NumpyNoise, "torch's random numbers"),
    (Squared, "m * x_hat + c"),
])
def test_noise_module_names_the_mistake(wrong, hint):
    refused(exercises.check_noise_module, wrong, hint)


class NotWritten(Noise):
    def forward(self, x_hat):
        raise NotImplementedError()


class Identity(Noise):
    def forward(self, x_hat):
        return x_hat


class Constant(Noise):
    def forward(self, x_hat):
        return torch.full_like(x_hat, 0.5) if self.training else x_hat


class WithNaN(Noise):
    def forward(self, x_hat):
        return self.noisy(x_hat) * float("nan") if self.training else x_hat


class Raising(Noise):
    def forward(self, x_hat):
        return x_hat @ x_hat if self.training else x_hat


class WrongShape(Noise):
    def forward(self, x_hat):
        return self.noisy(x_hat)[:, :1] if self.training else x_hat


class InPlace(Noise):
    def forward(self, x_hat):
        return x_hat.mul_(2).add_(1) if self.training else x_hat


class BadInit(nn.Module):
    def __init__(self, scale, shift):
        super().__init__()


@pytest.mark.parametrize("hostile, hint", [
    (None, "still None"),
    (NotWritten, "not written yet"),
    (Noise(), "class itself"),
    (lambda x: x, "class itself, a subclass"),
    (BadInit, "raised TypeError"),
    (Identity, "add the noise"),
    (Constant, "every forward pass"),
    (WithNaN, "NaN"),
    (Raising, "raised RuntimeError"),
    (WrongShape, "the input's shape"),
    (InPlace, "changed its argument 1 (Tensor) in place"),
])
def test_noise_module_refuses_hostile_answers(hostile, hint):
    refused(exercises.check_noise_module, hostile, hint)
