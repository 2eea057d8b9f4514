"""Checks for notebook 08, conv nets and deployment: folding BN into a conv, recalibrating statistics, and
two predictions checked against the chapter's own runs."""

import copy

import torch
from torch import nn

from bnlib import BatchNorm2d
from bnlib.course.ch08 import convnet, deployment
from bnlib.course.checks import (UNANSWERED, call, check, check_choice, check_close, folded_layer, layer_output,
                                 not_yet, passed)
from bnlib.running_stats import batch_norm_layers, recompute_population_statistics

FOLD_EPS = 0.1  # large, so that a fold that forgets eps is caught


def fold_example(bias=True, seed=0, padding=0):
    """A float64 conv (4 -> 4 channels, 3x3) and a BatchNorm2d with random statistics, both in eval mode (as
    torch's ``fuse_conv_bn_eval`` requires), and inputs."""
    generator = torch.Generator().manual_seed(seed)
    conv = nn.Conv2d(4, 4, 3, padding=padding, bias=bias).double().eval()
    bn = BatchNorm2d(4, eps=FOLD_EPS).double().eval()
    with torch.no_grad():
        for tensor in (conv.weight, *([conv.bias] if bias else []), bn.weight, bn.bias, bn.running_mean):
            tensor.copy_(torch.randn(tensor.shape, generator=generator, dtype=torch.float64))
        bn.running_var.copy_(torch.rand(4, generator=generator, dtype=torch.float64) + 0.2)
    return conv, bn, torch.randn(5, 4, 8, 8, generator=generator, dtype=torch.float64)


def conv_then_bn(x, conv, bn, eps=None, conv_bias=True, gamma=True, beta=True, mean=True, root=True, axis=0,
                 padding=None):
    """bn(conv(x)) computed per output channel, or a mistake's version: another eps, the conv's bias, gamma, beta
    or the mean left out, the variance not square-rooted, k applied to the input channels (``axis`` 1), the conv's
    padding left out."""
    eps = bn.eps if eps is None else eps
    channel = (1, -1, 1, 1)
    with torch.no_grad():
        k = (bn.weight if gamma else 1.0) / (torch.sqrt(bn.running_var + eps) if root else bn.running_var + eps)
        weight = conv.weight * k.view(-1, 1, 1, 1) if axis == 0 else conv.weight * k.view(1, -1, 1, 1)
        bias = conv.bias if conv_bias and conv.bias is not None else torch.zeros_like(bn.running_mean)
        folded_bias = k * (bias - (bn.running_mean if mean else 0.0)) + (bn.bias if beta else 0.0)
        z = nn.functional.conv2d(x, weight, None, conv.stride, conv.padding if padding is None else padding)
        return (z + folded_bias.view(channel)).numpy()


def _fold_mistakes(x, conv, bn):
    """(what a common fold mistake computes; its hint)."""
    mistakes = [
        (dict(eps=0.0), "Close, but eps is missing: BN divides by sqrt(running_var + eps)."),
        (dict(conv_bias=False), "Almost: the conv's own bias b goes through BN too: b' = k (b - running_mean) + beta."),
        (dict(gamma=False), "gamma is missing: k_c = gamma_c / sqrt(var_c + eps)."),
        (dict(beta=False), "beta is missing from the folded bias: b' = k (b - running_mean) + beta."),
        (dict(mean=False), "running_mean is missing from the folded bias: b' = k (b - running_mean) + beta."),
        (dict(root=False), "That divides by the variance: k_c = gamma_c / sqrt(var_c + eps)."),
        (dict(axis=1), "You scaled the filters' INPUT channels: k_c belongs to OUTPUT channel c, weight[c] (the "
                       "first axis of conv.weight)."),
    ]
    return [(conv_then_bn(x, conv, bn, **mistake), hint) for mistake, hint in mistakes]


@check
def check_fold_conv_bn(fold_conv_bn):
    """``fold_conv_bn(conv, bn) -> nn.Conv2d`` computing ``bn(conv(x))`` in eval mode, with and without conv's bias
    (with a padded conv too); torch's own ``fuse_conv_bn_eval`` passes."""
    __tracebackhide__ = True  # noqa: F841
    if not callable(fold_conv_bn):
        call(fold_conv_bn)  # the hint for a missing answer or a result passed instead of the function
    for bias, padding in ((True, 0), (False, 0), (True, 1)):
        conv, bn, x = fold_example(bias, padding=padding)
        folded = folded_layer(fold_conv_bn, conv, bn, nn.Conv2d, "the folded conv, one nn.Conv2d")
        if folded.bias is None:
            not_yet("The folded conv needs a bias (bias=True), even when conv has none: beta - k running_mean ends "
                    "up there.")
        with torch.no_grad():
            expected = bn(conv(x)).numpy()
        mine = layer_output(folded, x)
        if mine.shape != expected.shape:
            not_yet(f"The folded conv must give the conv's output shape {expected.shape}; yours gives {mine.shape}: "
                    "give it the conv's kernel_size, stride and padding.")
        mistakes = _fold_mistakes(x, conv, bn)
        check_close(mine, expected, None,
                    f"{'With' if bias else 'Without'} a conv bias, your conv's output differs from bn(conv(x)). "
                    "Each OUTPUT channel c has its own k_c = gamma_c / sqrt(var_c + eps): scale filter c "
                    "(weight[c]) by k_c, and set bias_c = k_c (b_c - mean_c) + beta_c"
                    + ("." if bias else ", with b_c = 0 when conv.bias is None."), mistakes, rtol=1e-10, atol=1e-10)
    passed("One conv computes conv then eval-mode BN, with or without a conv bias: W' = k W, b' = k (b - mu) + beta.")


def recalibration_case():
    """The pretrained conv net with its statistics spoilt, and 6 batches of 32 low-contrast training digits."""
    net = convnet.trained_net(convnet.lr_sweep(progress=False))
    images, _ = convnet.images_2d(True)
    batches = list(deployment.shifted(images[:192], deployment.CONTRAST).split(32))
    return net, batches


def _updated(net, batches, reset, momentum):
    """A copy of ``net`` whose BN layers (only they in train mode) saw ``batches``, reset first or not, with
    ``momentum``: what a recalibration with one of the two settings forgotten computes."""
    model = copy.deepcopy(net).eval()
    for layer in batch_norm_layers(model):
        if reset:
            layer.reset_running_stats()
        layer.momentum = momentum
        layer.train()
    with torch.no_grad():
        for batch in batches:
            model(batch)
    return model


def _recalibration_mistakes(net, batches):
    """(the model a recalibration that forgot one setting leaves; its hint)."""
    return [
        (_updated(net, batches, reset=False, momentum=0.1),
         "That is a momentum-0.1 moving average started from the old statistics: reset them (reset_running_stats) "
         "and set momentum = None for an equal-weight average of the batches."),
        (_updated(net, batches, reset=True, momentum=0.1),
         "That is a momentum-0.1 moving average started from 0 and 1: set momentum = None, the cumulative average "
         "that weighs every batch alike."),
        (_updated(net, batches, reset=False, momentum=None),
         "With momentum = None the layer averages over every batch it has counted, the old training ones too: "
         "reset_running_stats() first (it zeroes the count)."),
    ]


@check
def check_recalibrate(recalibrate):
    """``recalibrate(model, batches)``: every BN layer's running statistics become the average of the batch
    statistics over ``batches`` (Algorithm 2 on a model), the weights untouched; the model is left in eval mode."""
    __tracebackhide__ = True  # noqa: F841
    net, batches = recalibration_case()
    expected = copy.deepcopy(net)
    recompute_population_statistics(expected, batches)
    mine = copy.deepcopy(net)
    weights = {name: p.detach().clone() for name, p in mine.named_parameters()}
    if recalibrate is None:
        not_yet(UNANSWERED)
    def recalibrated(model, data):  # what it returns does not matter: the model's buffers do
        recalibrate(model, data)
        return 0

    call(recalibrated, mine, batches, may_change=(0,))
    if any(not torch.equal(p, weights[name]) for name, p in mine.named_parameters()):
        not_yet("Your function changed the weights: recalibration only runs forward passes, under torch.no_grad().")
    if any(module.training for module in mine.modules()):
        not_yet("Leave the model in eval mode when you are done (every layer: model.eval()): it is about to make "
                "predictions.")
    mistakes = []
    for name in ("bn1", "bn2"):
        ours, theirs = getattr(mine, name, None), getattr(expected, name)
        if not isinstance(ours, torch.nn.modules.batchnorm._BatchNorm) or ours.running_mean is None:
            not_yet(f"{name} is no longer a batch norm layer with running statistics (it is {type(ours).__name__}): "
                    "keep the layers and the model as they are, and change only their running statistics.")
        untouched = (torch.equal(ours.running_mean, torch.zeros_like(ours.running_mean))
                     and torch.equal(ours.running_var, torch.ones_like(ours.running_var)))
        if untouched or torch.allclose(ours.running_mean, getattr(net, name).running_mean):
            not_yet(f"{name}'s running mean did not change: BN layers update their statistics only in train mode.")
        if (torch.allclose(ours.running_mean, theirs.running_mean, atol=1e-5)
                and torch.allclose(ours.running_var, theirs.running_var, rtol=1e-4, atol=1e-6)):
            continue
        mistakes = mistakes or _recalibration_mistakes(net, batches)  # made only for a wrong answer: 3 passes
        for model, hint in mistakes:
            if torch.allclose(ours.running_mean, getattr(model, name).running_mean, atol=1e-6):
                not_yet(hint)
        not_yet(f"{name}'s statistics are not the average over the batches. Reset each BN layer's statistics, "
                "set momentum = None (the cumulative average), put only the BN layers in train mode, run the "
                "batches through under torch.no_grad(), then model.eval().")
    passed("Every BN layer now holds the average statistics of the new batches, weights untouched.")


def check_finetune_prediction(answer):
    """After fine-tuning only the classifier with requires_grad=False on the rest, did BN's running means move?"""
    __tracebackhide__ = True  # noqa: F841
    moved = deployment.finetune()["moved"][0]
    check_choice(answer, "yes" if moved > 1e-3 else "no", ("yes", "no"),
                 f"They moved (by up to {moved:.2f}): requires_grad=False stops gradients, not the running "
                 "statistics, which every train-mode forward pass updates.",
                 "requires_grad decides what the optimizer changes. What else changes in a BN layer during a "
                 "train-mode forward pass?")


def check_high_rate_prediction(answer):
    """At the sweep's learning rate 1.0, which of the two nets ends above 50% test accuracy?"""
    __tracebackhide__ = True  # noqa: F841
    sweep = convnet.lr_sweep(progress=False)
    index = list(sweep["lrs"]).index(1.0)
    plain, bn = (sweep["accuracy"][v, index, -1] > 0.5 for v in (0, 1))
    expected = {(True, True): "both", (False, True): "BN", (True, False): "plain", (False, False): "neither"}[plain, bn]
    check_choice(answer, expected, ("both", "BN", "plain", "neither"),
                 f"At rate 1.0 the plain net ends at {sweep['accuracy'][0, index, -1]:.0%}, the BN net at "
                 f"{sweep['accuracy'][1, index, -1]:.0%}.",
                 "Look at the sweep's table: the final accuracy of each net at learning rate 1.0.")
