"""The exercise checks of notebook 08 accept the solutions and refuse blanks and the usual mistakes with a hint."""

import pytest
import torch
from exercise_checks import refused, stub
from torch import nn

from bnlib.course.ch08 import exercises

pytestmark = pytest.mark.slow  # the checks read the chapter's cached runs


def fold(conv, bn, eps=None, with_bias=True):
    eps = bn.eps if eps is None else eps
    k = bn.weight / torch.sqrt(bn.running_var + eps)
    b = conv.bias if (conv.bias is not None and with_bias) else torch.zeros_like(bn.running_mean)
    folded = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, bias=True, dtype=conv.weight.dtype)
    with torch.no_grad():
        folded.weight.copy_(conv.weight * k.view(-1, 1, 1, 1))
        folded.bias.copy_(k * (b - bn.running_mean) + bn.bias)
    return folded


def test_fold_conv_bn(capsys):
    exercises.check_fold_conv_bn(fold)
    assert capsys.readouterr().out.startswith("Correct.")
    refused(exercises.check_fold_conv_bn, stub, "not written yet")
    refused(exercises.check_fold_conv_bn, lambda conv, bn: fold(conv, bn, eps=0.0), "eps is missing")
    refused(exercises.check_fold_conv_bn, lambda conv, bn: fold(conv, bn, with_bias=False), "own bias")


def recalibrate(model, batches, reset=True, momentum=None, train_mode=True):
    layers = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    model.eval()
    for layer in layers:
        if reset:
            layer.reset_running_stats()
        layer.momentum = momentum
        layer.train(train_mode)
    with torch.no_grad():
        for batch in batches:
            model(batch)
    model.eval()


def test_recalibrate(capsys):
    exercises.check_recalibrate(recalibrate)
    assert capsys.readouterr().out.startswith("Correct.")
    refused(exercises.check_recalibrate, None, "Fill in your answer")
    refused(exercises.check_recalibrate, stub, "not written yet")
    refused(exercises.check_recalibrate, lambda m, b: recalibrate(m, b, reset=False, momentum=0.1), "moving average")
    refused(exercises.check_recalibrate, lambda m, b: recalibrate(m, b, train_mode=False), "only in train mode")
    refused(exercises.check_recalibrate, lambda m, b: (recalibrate(m, b), m.train()), "eval mode")


def test_predictions(capsys):
    exercises.check_finetune_prediction("yes")
    exercises.check_high_rate_prediction("BN")
    assert capsys.readouterr().out.count("Correct.") == 2
    refused(exercises.check_finetune_prediction, "no", "train-mode forward pass")
    refused(exercises.check_high_rate_prediction, "maybe", "Answer with one of")
