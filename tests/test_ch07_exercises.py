"""The exercise checks of notebook 07 accept the solutions and refuse blanks and the usual mistakes with a hint."""

import numpy as np
import pytest
import torch
from exercise_checks import refused, stub

from bnlib.course.ch07 import exercises

EPS = 1e-5


def standardize(x, axes, ddof=0, eps=EPS):
    return (x - x.mean(axes, keepdims=True)) / np.sqrt(x.var(axes, keepdims=True, ddof=ddof) + eps)


def layer_norm_by_reshape(x):
    flat = x.reshape(len(x), -1)
    return ((flat - flat.mean(1, keepdims=True)) / np.sqrt(flat.var(1, keepdims=True) + EPS)).reshape(x.shape)


def layer_norm_in_torch(x):
    return torch.nn.functional.layer_norm(torch.from_numpy(x), x.shape[1:], eps=EPS)


def layer_norm_by_loop(x):
    return np.stack([(example - example.mean()) / np.sqrt(example.var() + EPS) for example in x])


@pytest.mark.parametrize("answer", [lambda x: standardize(x, (1, 2, 3)), layer_norm_by_reshape, layer_norm_in_torch,
                                    layer_norm_by_loop])
def test_layer_norm_images_accepts_every_correct_form(answer, capsys):
    assert exercises.check_layer_norm_images(answer) is None
    assert capsys.readouterr().out.startswith("Correct.")


def layer_norm_in_place(x):
    x -= x.mean((1, 2, 3), keepdims=True)
    x /= np.sqrt(x.var((1, 2, 3), keepdims=True) + EPS)
    return x


@pytest.mark.parametrize("answer, hint", [
    (lambda x: standardize(x, (0, 2, 3)), "batch norm"),
    (lambda x: standardize(x, (2, 3)), "InstanceNorm"),
    (lambda x: standardize(x, 1), "over the channels only"),
    (lambda x: standardize(x, (1, 2, 3), ddof=1), "biased variance"),
    (lambda x: standardize(x, (1, 2, 3), eps=0), "add eps"),
    (lambda x: standardize(x.astype(np.float32), (1, 2, 3)), "float32"),
    (None, "still None"),
    (stub, "not written yet"),
    (lambda x: None, "returned None"),
    (lambda x: x, "For each example"),
    (lambda x: np.zeros_like(x), "For each example"),
    (lambda x: standardize(x, (1, 2, 3)) * np.nan, "NaN"),
    (lambda x: standardize(x, (1, 2, 3))[:, 0], "input's shape"),
    (lambda x: standardize(x, (1, 2, 3, 4)), "raised AxisError"),
    (layer_norm_in_place, "changed its argument 1 (ndarray) in place"),
    (lambda x: "normalized", "return numbers"),
])
def test_layer_norm_images_refuses(answer, hint):
    refused(exercises.check_layer_norm_images, answer, hint)


def group_norm(x, groups, axes=(2, 3, 4), ddof=0):
    n, c, h, w = x.shape
    return standardize(x.reshape(n, groups, c // groups, h, w), axes, ddof).reshape(x.shape)


def group_norm_in_torch(x, groups):
    return torch.nn.functional.group_norm(torch.from_numpy(x), groups, eps=EPS)


def group_norm_by_loop(x, groups):
    size = x.shape[1] // groups
    parts = [standardize(x[:, g * size:(g + 1) * size], (1, 2, 3)) for g in range(groups)]
    return np.concatenate(parts, axis=1)


def group_norm_by_flattening(x, groups):
    flat = x.reshape(len(x), groups, -1)
    return ((flat - flat.mean(-1, keepdims=True)) / np.sqrt(flat.var(-1, keepdims=True) + EPS)).reshape(x.shape)


@pytest.mark.parametrize("answer", [group_norm, group_norm_in_torch, group_norm_by_loop, group_norm_by_flattening])
def test_group_norm_images_accepts_every_correct_form(answer, capsys):
    assert exercises.check_group_norm_images(answer) is None
    assert capsys.readouterr().out.startswith("Correct.")


def strided(x, g):
    return standardize(x.reshape(x.shape[0], x.shape[1] // g, g, *x.shape[2:]), (1, 3, 4)).reshape(x.shape)


@pytest.mark.parametrize("answer, hint", [
    (lambda x, g: group_norm(x, g, axes=2), "AND every pixel"),
    (strided, "consecutive channels"),
    (lambda x, g: standardize(x, (1, 2, 3)), "LayerNorm"),
    (lambda x, g: standardize(x, (2, 3)), "InstanceNorm"),
    (lambda x, g: standardize(x, (0, 2, 3)), "batch norm"),
    (lambda x, g: group_norm(x, g, ddof=1), "biased variance"),
    (lambda x, g: group_norm(x, 3), "groups=2"),
    (lambda x, g: group_norm(x.astype(np.float32), g), "float32"),
    (None, "still None"),
    (stub, "not written yet"),
    (lambda x, g: None, "returned None"),
    (lambda x, g: x, "Reshape to (N, G, C/G, H, W)"),
    (lambda x, g: np.ones_like(x), "Reshape to (N, G, C/G, H, W)"),
    (lambda x, g: group_norm(x, g) + np.inf, "NaN or inf"),
    (lambda x, g: group_norm(x, g)[..., 0], "input's shape"),
    (lambda x, g: group_norm(x, 4), "raised ValueError"),
    (lambda x, g: (x.fill(0.0), group_norm(x + 1, g))[1], "changed its argument 1 (ndarray) in place"),
])
def test_group_norm_images_refuses(answer, hint):
    refused(exercises.check_group_norm_images, answer, hint)


@pytest.mark.slow  # reads a briefly trained network's activations on MNIST (cached)
def test_batch_of_two(capsys):
    exercises.check_batch_of_two("+1 or -1")
    assert capsys.readouterr().out.startswith("Correct.")
    normalized = exercises.batch_of_two_values()
    assert np.mean(np.abs(normalized) > 0.9) > 0.96 and np.mean(normalized < 0) > 0.03  # both signs, with margin


@pytest.mark.slow
@pytest.mark.parametrize("answer, hint", [
    ("always +1", "explorer"), ("always -1", "explorer"), ("anywhere between -1 and +1", "explorer"),
    (None, "still None"), ("+1", "one of"), (1, "one of"), (float("nan"), "one of"), (np.float64(-1.0), "one of"),
])
def test_batch_of_two_refuses(answer, hint):
    refused(exercises.check_batch_of_two, answer, hint)
