"""The exercise checks of notebook 08 accept the solutions and refuse blanks and the usual mistakes with a hint."""

import copy

import numpy as np
import pytest
import torch
from exercise_checks import once, refused, stub
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from bnlib.course.ch08 import exercises
from bnlib.running_stats import recompute_population_statistics


@pytest.fixture(autouse=True, scope="module")
def runs_read_once():
    """The recalibration case and the chapter's runs are read from the disk cache once for the whole bank."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(exercises, "recalibration_case", once(exercises.recalibration_case))
        patch.setattr(exercises.deployment, "finetune", once(exercises.deployment.finetune))
        patch.setattr(exercises.convnet, "lr_sweep", once(exercises.convnet.lr_sweep))
        yield


def fold(conv, bn, eps=None, with_bias=True, gamma=True, beta=True, mean=True, axis=0, dtype=None, geometry=True,
         folded_bias=True):
    eps = bn.eps if eps is None else eps
    k = (bn.weight if gamma else 1.0) / torch.sqrt(bn.running_var + eps)
    b = conv.bias if (conv.bias is not None and with_bias) else torch.zeros_like(bn.running_mean)
    place = dict(stride=conv.stride, padding=conv.padding) if geometry else {}
    folded = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, bias=folded_bias,
                       dtype=dtype or conv.weight.dtype, **place)
    with torch.no_grad():
        folded.weight.copy_(conv.weight * (k.view(-1, 1, 1, 1) if axis == 0 else k.view(1, -1, 1, 1)))
        if folded_bias:
            folded.bias.copy_(k * (b - (bn.running_mean if mean else 0)) + (bn.bias if beta else 0))
    return folded


def fold_by_parameters(conv, bn):
    folded = copy.deepcopy(conv)
    k = bn.weight / (bn.running_var + bn.eps).sqrt()
    b = torch.zeros_like(k) if conv.bias is None else conv.bias
    folded.weight = nn.Parameter(conv.weight * k[:, None, None, None])
    folded.bias = nn.Parameter(bn.bias + k * (b - bn.running_mean))
    return folded


def fold_by_einsum(conv, bn):
    k = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
    folded = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding).double()
    with torch.no_grad():
        folded.weight.copy_(torch.einsum("o,oihw->oihw", k, conv.weight))
        folded.bias.copy_(bn.bias - k * bn.running_mean + (0 if conv.bias is None else k * conv.bias))
    return folded


@pytest.mark.parametrize("answer", [fold, fold_by_parameters, fold_by_einsum, fuse_conv_bn_eval])
def test_fold_conv_bn_accepts_every_correct_form(answer, capsys):
    assert exercises.check_fold_conv_bn(answer) is None
    assert capsys.readouterr().out.startswith("Correct.")


def fold_without_bias_check(conv, bn):
    k = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    folded = copy.deepcopy(conv)
    folded.weight = nn.Parameter(conv.weight * k.view(-1, 1, 1, 1))
    folded.bias = nn.Parameter(k * (conv.bias - bn.running_mean) + bn.bias)
    return folded


@pytest.mark.parametrize("wrong, hint", [
    (lambda conv, bn: fold(conv, bn, eps=0.0), "eps is missing"),
    (lambda conv, bn: fold(conv, bn, with_bias=False), "own bias"),
    (lambda conv, bn: fold(conv, bn, gamma=False), "gamma is missing"),
    (lambda conv, bn: fold(conv, bn, beta=False), "beta is missing"),
    (lambda conv, bn: fold(conv, bn, mean=False), "running_mean is missing"),
    (lambda conv, bn: fold(conv, bn, axis=1), "INPUT channels"),
    (lambda conv, bn: fold(conv, bn, geometry=False), "stride and padding"),
    (lambda conv, bn: fold(conv, bn, dtype=torch.float32), "float32"),
    (lambda conv, bn: fold(conv, bn, folded_bias=conv.bias is not None), "needs a bias"),
    (fold_without_bias_check, "its .bias is None"),
])
def test_fold_conv_bn_names_the_mistake(wrong, hint):
    refused(exercises.check_fold_conv_bn, wrong, hint)


def fold_in_place(conv, bn):
    with torch.no_grad():
        conv.weight.mul_((bn.weight / torch.sqrt(bn.running_var + bn.eps)).view(-1, 1, 1, 1))
    return fold(conv, bn)


@pytest.mark.parametrize("hostile, hint", [
    (None, "still None"),
    (stub, "not written yet"),
    (lambda conv, bn: None, "returned None"),
    (lambda conv, bn: nn.Sequential(conv, bn), "not Sequential"),
    (lambda conv, bn: lambda x: bn(conv(x)), "not function"),
    (lambda conv, bn: conv, "Each OUTPUT channel"),
    (lambda conv, bn: nn.Conv2d(4, 4, 3, padding=conv.padding).double(), "Each OUTPUT channel"),
    (lambda conv, bn: fold(conv, bn).apply(lambda m: nn.init.constant_(m.weight, float("nan"))
                                           if isinstance(m, nn.Conv2d) else None), "NaN"),
    (lambda conv, bn: 1 / 0, "raised ZeroDivisionError"),
    (lambda conv, bn: nn.Conv2d(4, 4, 5, padding=conv.padding).double(), "output shape"),
    (lambda conv, bn: nn.Conv2d(3, 4, 3).double(), "RuntimeError"),
    (fold_in_place, "changed its argument 1 (Conv2d) in place"),
    (lambda conv, bn: (bn.running_mean.zero_(), fold(conv, bn))[1], "changed its argument 2 (BatchNorm2d) in place"),
    (nn.Conv2d(4, 4, 3), "Pass your function itself"),
])
def test_fold_conv_bn_refuses_hostile_answers(hostile, hint):
    refused(exercises.check_fold_conv_bn, hostile, hint)


def test_the_fold_check_hands_over_eval_mode_layers_with_statistics_of_their_own():
    for bias in (True, False):
        conv, bn, _ = exercises.fold_example(bias)
        assert not conv.training and not bn.training and (conv.bias is not None) == bias
        assert not torch.equal(bn.running_mean, torch.zeros(4)) and not torch.equal(bn.running_var, torch.ones(4))


def recalibrate(model, batches, reset=True, momentum=None, train_mode=True, count=None, end_in_eval=True):
    layers = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    model.eval()
    for layer in layers:
        if reset:
            layer.reset_running_stats()
        layer.momentum = momentum
        layer.train(train_mode)
    with torch.no_grad():
        for batch in batches[:count]:
            model(batch)
    if end_in_eval:
        model.eval()


def recalibrate_whole_model_in_train_mode(model, batches):
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None
    model.train()
    with torch.no_grad():
        for batch in batches:
            model(batch)
    model.eval()


def recalibrate_by_bnlib(model, batches):
    recompute_population_statistics(model, batches)
    model.eval()


def recalibrate_by_hooks(model, batches):
    """Algorithm 2 by hand: each BN layer's input statistics per batch, averaged, the unbiased variance."""
    layers = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    seen = {layer: [] for layer in layers}
    hooks = [layer.register_forward_hook(lambda layer, inputs, out: seen[layer].append(inputs[0])) for layer in layers]
    model.eval()
    for layer in layers:  # the batch's own statistics feed the next layer, as in train mode
        layer.track_running_stats, layer.training = False, True
    with torch.no_grad():
        for batch in batches:
            model(batch)
    for hook in hooks:
        hook.remove()
    for layer in layers:
        layer.track_running_stats, layer.training = True, False
        means = torch.stack([z.mean((0, 2, 3)) for z in seen[layer]])
        variances = torch.stack([z.var((0, 2, 3), unbiased=True) for z in seen[layer]])
        layer.running_mean.copy_(means.mean(0))
        layer.running_var.copy_(variances.mean(0))
    model.eval()


@pytest.mark.slow  # the check reads the chapter's cached runs
@pytest.mark.parametrize("answer", [recalibrate, recalibrate_whole_model_in_train_mode, recalibrate_by_bnlib,
                                    recalibrate_by_hooks])
def test_recalibrate_accepts_every_correct_form(answer, capsys):
    assert exercises.check_recalibrate(answer) is None
    assert capsys.readouterr().out.startswith("Correct.")


def train_a_step(model, batches):
    recalibrate(model, batches)
    model.train()
    model(batches[0]).sum().backward()
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    model.eval()


def replace_the_layers(model, batches):
    for name, module in list(model.named_children()):
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            setattr(model, name, nn.Identity())
    model.eval()


def only_the_model_flag(model, batches):
    recalibrate(model, batches)
    model.training = False
    for layer in model.modules():
        if isinstance(layer, nn.modules.batchnorm._BatchNorm):
            layer.train()


@pytest.mark.slow
@pytest.mark.parametrize("wrong, hint", [
    (lambda m, b: recalibrate(m, b, reset=False, momentum=0.1), "moving average started from the old"),
    (lambda m, b: recalibrate(m, b, momentum=0.1), "started from 0 and 1"),
    (lambda m, b: recalibrate(m, b, reset=False), "reset_running_stats() first"),
    (lambda m, b: recalibrate(m, b, train_mode=False), "only in train mode"),
    (lambda m, b: recalibrate(m, b, end_in_eval=False), "eval mode"),
    (only_the_model_flag, "eval mode"),
    (lambda m, b: recalibrate(m, b, count=1), "not the average over the batches"),
    (train_a_step, "changed the weights"),
    (replace_the_layers, "no longer a batch norm layer"),
    (None, "Fill in your answer"),
    (stub, "not written yet"),
    (lambda m, b: 1 / 0, "raised ZeroDivisionError"),
    (lambda m, b: (recalibrate(m, b), b[0].mul_(0)), "changed its argument 2 (list) in place"),
    (lambda m, b: (recalibrate(m, b), m.bn1.running_mean.fill_(float("nan"))), "not the average"),
])
def test_recalibrate_names_the_mistake(wrong, hint):
    refused(exercises.check_recalibrate, wrong, hint)


@pytest.mark.slow
def test_predictions(capsys):
    exercises.check_finetune_prediction("yes")
    exercises.check_high_rate_prediction("BN")
    assert capsys.readouterr().out.count("Correct.") == 2


@pytest.mark.slow
@pytest.mark.parametrize("check, answer, hint", [
    (exercises.check_finetune_prediction, "no", "train-mode forward pass"),
    (exercises.check_finetune_prediction, None, "still None"),
    (exercises.check_finetune_prediction, True, "Answer with one of"),
    (exercises.check_finetune_prediction, "Yes", "Answer with one of"),
    (exercises.check_high_rate_prediction, "both", "sweep's table"),
    (exercises.check_high_rate_prediction, "plain", "sweep's table"),
    (exercises.check_high_rate_prediction, "neither", "sweep's table"),
    (exercises.check_high_rate_prediction, "maybe", "Answer with one of"),
    (exercises.check_high_rate_prediction, None, "still None"),
    (exercises.check_high_rate_prediction, float("nan"), "Answer with one of"),
    (exercises.check_high_rate_prediction, np.float64(1.0), "Answer with one of"),
])
def test_predictions_refuse(check, answer, hint):
    refused(check, answer, hint)
