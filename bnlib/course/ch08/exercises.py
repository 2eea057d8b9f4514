"""Checks for notebook 08, conv nets and deployment: folding BN into a conv, recalibrating statistics, and
two predictions checked against the chapter's own runs."""

import copy

import numpy as np
import torch
from torch import nn

from bnlib import BatchNorm2d
from bnlib.course.ch08 import convnet, deployment
from bnlib.course.checks import UNANSWERED, call, check_choice, not_yet, passed
from bnlib.running_stats import batch_norm_layers, recompute_population_statistics

FOLD_EPS = 0.1  # large, so that a fold that forgets eps is caught


def fold_example(bias=True, seed=0):
    """A float64 conv (3 -> 4 channels, 3x3) and an eval-mode BatchNorm2d with random statistics, and inputs."""
    generator = torch.Generator().manual_seed(seed)
    conv = nn.Conv2d(3, 4, 3, bias=bias).double()
    bn = BatchNorm2d(4, eps=FOLD_EPS).double().eval()
    with torch.no_grad():
        for tensor in (conv.weight, *([conv.bias] if bias else []), bn.weight, bn.bias, bn.running_mean):
            tensor.copy_(torch.randn(tensor.shape, generator=generator, dtype=torch.float64))
        bn.running_var.copy_(torch.rand(4, generator=generator, dtype=torch.float64) + 0.2)
    return conv, bn, torch.randn(5, 3, 8, 8, generator=generator, dtype=torch.float64)


def conv_then_bn(x, conv, bn, eps, conv_bias):
    """bn(conv(x)) computed per output channel with the given ``eps``, with or without the conv's bias."""
    with torch.no_grad():
        z = nn.functional.conv2d(x, conv.weight, conv.bias if conv_bias else None)
        k = (bn.weight / torch.sqrt(bn.running_var + eps)).view(1, -1, 1, 1)
        return (k * (z - bn.running_mean.view(1, -1, 1, 1)) + bn.bias.view(1, -1, 1, 1)).numpy()


def check_fold_conv_bn(fold_conv_bn):
    """``fold_conv_bn(conv, bn) -> nn.Conv2d`` computing ``bn(conv(x))`` in eval mode, with and without conv's bias."""
    __tracebackhide__ = True  # noqa: F841
    if isinstance(fold_conv_bn, nn.Module):
        not_yet("Pass your function fold_conv_bn itself, not a layer it returned.")
    for bias in (True, False):
        conv, bn, x = fold_example(bias)
        with torch.no_grad():
            expected = bn(conv(x)).numpy()

        def output(conv, bn):
            folded = fold_conv_bn(copy.deepcopy(conv), copy.deepcopy(bn))
            if folded is None or not callable(folded):
                return folded
            with torch.no_grad():
                return folded(x)

        mine = call(output, conv, bn)
        if mine.shape != expected.shape:
            not_yet(f"The folded conv must give the conv's output shape {expected.shape}; yours gives {mine.shape}.")
        if np.allclose(mine, conv_then_bn(x, conv, bn, eps=0.0, conv_bias=bias)):
            not_yet("Close, but eps is missing: BN divides by sqrt(running_var + eps).")
        if bias and np.allclose(mine, conv_then_bn(x, conv, bn, eps=bn.eps, conv_bias=False)):
            not_yet("Almost: the conv's own bias b goes through BN too: b' = k (b - running_mean) + beta.")
        if not np.allclose(mine, expected, rtol=1e-10, atol=1e-10):
            not_yet(f"{'With' if bias else 'Without'} a conv bias, your conv's output differs from bn(conv(x)). "
                    "Each OUTPUT channel c has its own k_c = gamma_c / sqrt(var_c + eps): scale filter c "
                    "(weight[c]) by k_c, and set bias_c = k_c (b_c - mean_c) + beta_c"
                    + ("." if bias else ", with b_c = 0 when conv.bias is None."))
    passed("One conv computes conv then eval-mode BN, with or without a conv bias: W' = k W, b' = k (b - mu) + beta.")


def recalibration_case():
    """The pretrained conv net with its statistics spoilt, and 6 batches of 32 low-contrast training digits."""
    net = convnet.trained_net(convnet.lr_sweep(progress=False))
    images, _ = convnet.images_2d(True)
    batches = list(deployment.shifted(images[:192], deployment.CONTRAST).split(32))
    return net, batches


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
    if mine.training:
        not_yet("Leave the model in eval mode when you are done: it is about to make predictions.")
    for name in ("bn1", "bn2"):
        ours, theirs = getattr(mine, name), getattr(expected, name)
        untouched = (torch.equal(ours.running_mean, torch.zeros_like(ours.running_mean))
                     and torch.equal(ours.running_var, torch.ones_like(ours.running_var)))
        if untouched or torch.allclose(ours.running_mean, getattr(net, name).running_mean):
            not_yet(f"{name}'s running mean did not change: BN layers update their statistics only in train mode.")
        ema = copy.deepcopy(net)
        for layer in batch_norm_layers(ema):
            layer.train()
        with torch.no_grad():
            for batch in batches:
                ema(batch)
        if torch.allclose(ours.running_mean, getattr(ema, name).running_mean, atol=1e-6):
            not_yet("That is a momentum-0.1 moving average started from the old statistics: reset them "
                    "(reset_running_stats) and set momentum = None for an equal-weight average of the batches.")
        if not (torch.allclose(ours.running_mean, theirs.running_mean, atol=1e-5)
                and torch.allclose(ours.running_var, theirs.running_var, rtol=1e-4, atol=1e-6)):
            not_yet(f"{name}'s statistics are not the average over the batches. Reset each BN layer's statistics, "
                    "set momentum = None (the cumulative average), put only the BN layers in train mode, run "
                    "the batches through under torch.no_grad(), then model.eval().")
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
