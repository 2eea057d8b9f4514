"""The exercise checks of notebook 07 accept the solutions and refuse blanks and the usual mistakes with a hint."""

import numpy as np
import pytest
import torch
from exercise_checks import refused, stub
from torch import nn

from bnlib.course.ch07 import exercises

EPS = 1e-5


def standardize(x, axes, ddof=0, eps=EPS):
    return (x - x.mean(axes, keepdims=True)) / np.sqrt(x.var(axes, keepdims=True, ddof=ddof) + eps)


def test_layer_norm_images(capsys):
    exercises.check_layer_norm_images(lambda x: standardize(x, (1, 2, 3)))
    assert capsys.readouterr().out.startswith("Correct.")
    refused(exercises.check_layer_norm_images, None, "still None")
    refused(exercises.check_layer_norm_images, stub, "not written yet")
    refused(exercises.check_layer_norm_images, lambda x: standardize(x, (0, 2, 3)), "batch norm")
    refused(exercises.check_layer_norm_images, lambda x: standardize(x, (2, 3)), "InstanceNorm")
    refused(exercises.check_layer_norm_images, lambda x: standardize(x, 1), "over the channels only")
    refused(exercises.check_layer_norm_images, lambda x: standardize(x, (1, 2, 3), ddof=1), "biased variance")
    refused(exercises.check_layer_norm_images, lambda x: standardize(x, (1, 2, 3), eps=0), "add eps")
    refused(exercises.check_layer_norm_images, lambda x: standardize(x, (1, 2, 3))[:, 0], "input's shape")


def group_norm(x, groups, axes=(2, 3, 4), ddof=0):
    n, c, h, w = x.shape
    return standardize(x.reshape(n, groups, c // groups, h, w), axes, ddof).reshape(x.shape)


def test_group_norm_images(capsys):
    exercises.check_group_norm_images(group_norm)
    assert capsys.readouterr().out.startswith("Correct.")
    refused(exercises.check_group_norm_images, None, "still None")
    refused(exercises.check_group_norm_images, stub, "not written yet")
    refused(exercises.check_group_norm_images, lambda x, g: group_norm(x, g, axes=2), "AND every pixel")
    strided = lambda x, g: standardize(  # noqa: E731
        x.reshape(x.shape[0], x.shape[1] // g, g, *x.shape[2:]), (1, 3, 4)).reshape(x.shape)
    refused(exercises.check_group_norm_images, strided, "consecutive channels")
    refused(exercises.check_group_norm_images, lambda x, g: standardize(x, (1, 2, 3)), "LayerNorm")
    refused(exercises.check_group_norm_images, lambda x, g: standardize(x, (2, 3)), "InstanceNorm")
    refused(exercises.check_group_norm_images, lambda x, g: standardize(x, (0, 2, 3)), "batch norm")
    refused(exercises.check_group_norm_images, lambda x, g: group_norm(x, g, ddof=1), "biased variance")
    refused(exercises.check_group_norm_images, lambda x, g: group_norm(x, 3), "groups=2")


def uniform(*shape):
    return 2 * torch.rand(*shape) - 1


class Noise(nn.Module):
    """The solution: per activation, centres redrawn at every call."""

    def __init__(self, scale=2.0, shift=1.0, spread=0.5):
        super().__init__()
        self.scale, self.shift, self.spread = scale, shift, spread

    def forward(self, x_hat):
        return self.noisy(x_hat) if self.training else x_hat

    def noisy(self, x_hat):
        n, units = x_hat.shape
        s, b = torch.exp(uniform(units) * np.log(self.scale)), uniform(units) * self.shift
        return s * (1 + self.spread * uniform(n, units)) * x_hat + b + self.spread * uniform(n, units)


class SharedNoise(Noise):
    """One scale and shift per unit and step, shared by the batch."""

    def forward(self, x_hat):
        if not self.training:
            return x_hat
        units = x_hat.shape[1]
        return torch.exp(uniform(units) * np.log(self.scale)) * x_hat + uniform(units) * self.shift


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


class ZeroMean(Noise):
    def forward(self, x_hat):
        return x_hat * (1 + self.spread * uniform(*x_hat.shape)) if self.training else x_hat


class FixedCentres(Noise):
    def forward(self, x_hat):
        return x_hat + 0.1 + self.spread * uniform(*x_hat.shape) if self.training else x_hat


class UnitScale(Noise):
    def forward(self, x_hat):
        if not self.training:
            return x_hat
        return x_hat * (1 + self.spread * uniform(*x_hat.shape)) + uniform(x_hat.shape[1]) + self.spread * uniform(
            *x_hat.shape)


class NotWritten(Noise):
    def forward(self, x_hat):
        raise NotImplementedError()


def test_noise_module(capsys):
    torch.manual_seed(0)  # the learner's generator as the check seeds its own draw: not a repeated draw
    exercises.check_noise_module(Noise)
    assert capsys.readouterr().out.startswith("Correct.")
    refused(exercises.check_noise_module, None, "still None")
    refused(exercises.check_noise_module, NotWritten, "not written yet")
    refused(exercises.check_noise_module, Noise(), "class itself")
    refused(exercises.check_noise_module, SharedNoise, "noise of its own")
    refused(exercises.check_noise_module, AlwaysOn, "eval mode")
    refused(exercises.check_noise_module, DrawnOnce, "every forward pass")
    refused(exercises.check_noise_module, ZeroMean, "non-zero mean")
    refused(exercises.check_noise_module, FixedCentres, "U(-shift, shift)")
    refused(exercises.check_noise_module, UnitScale, "log scale")


@pytest.mark.slow  # reads a briefly trained network's activations on MNIST (cached)
def test_batch_of_two(capsys):
    exercises.check_batch_of_two("+1 or -1")
    assert capsys.readouterr().out.startswith("Correct.")
    refused(exercises.check_batch_of_two, None, "still None")
    refused(exercises.check_batch_of_two, "always +1", "explorer")
    refused(exercises.check_batch_of_two, "+1", "one of")
    normalized = exercises.batch_of_two_values()
    assert np.mean(np.abs(normalized) > 0.9) > 0.96 and np.mean(normalized < 0) > 0.03  # both signs, with margin
