"""Folding eval-mode batch norm into the convolution before it.

In eval mode BN is a fixed per-channel affine map (Ioffe & Szegedy 2015, Algorithm 2, step 11), so a
conv followed by BN is one conv with scaled weights and a new bias. ``fold_bn_into_conv`` is the
notebook's code; ``folded_net`` applies it to both layers of a ``ConvNet``; ``inference_speedup`` times
the two versions against each other in the same run.
"""

import copy

import torch
from torch import nn

from bnlib.course.timing import median_ratio


def fold_bn_into_conv(conv, bn):
    """A conv that computes ``bn(conv(x))`` for eval-mode ``bn`` (affine, with running statistics)."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)   # k = gamma / sqrt(var + eps), per channel
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    folded = copy.deepcopy(conv)
    folded.bias = nn.Parameter(torch.empty_like(bn.running_mean))
    with torch.no_grad():
        folded.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))  # W' = k W (each output channel's filter)
        folded.bias.copy_((bias - bn.running_mean) * scale + bn.bias)  # b' = k (b - mu) + beta
    return folded


def folded_net(net, fold=fold_bn_into_conv):
    """A copy of a ``ConvNet`` with each BN folded into its conv (by ``fold``) and replaced by Identity."""
    folded = copy.deepcopy(net).eval()
    for conv, bn in (("conv1", "bn1"), ("conv2", "bn2")):
        setattr(folded, conv, fold(getattr(net, conv), getattr(net, bn)))
        setattr(folded, bn, nn.Identity())
    return folded


def folding_errors(net, images):
    """Largest |difference| of the logits in float64: ours folded vs the net, and ours vs torch's
    ``fuse_conv_bn_eval`` (weights and logits)."""
    net64 = copy.deepcopy(net).double().eval()
    x = images.double()
    ours, theirs = folded_net(net64), folded_net(net64, torch.nn.utils.fusion.fuse_conv_bn_eval)
    with torch.no_grad():
        reference = net64(x)
        return {"ours vs the net": (ours(x) - reference).abs().max().item(),
                "torch's fuse vs the net": (theirs(x) - reference).abs().max().item(),
                "ours vs torch's fuse, weights": max((a - b).abs().max().item() for a, b in
                                                     zip(ours.state_dict().values(), theirs.state_dict().values()))}


@torch.no_grad()
def inference_speedup(net, images, repeats=15, number=3):
    """Eval-mode time of the net over its folded copy on ``images`` (float32), measured in turns
    (``bnlib.course.timing.median_ratio``)."""
    net = net.eval()
    folded = folded_net(net)
    return median_ratio(lambda: net(images), lambda: folded(images), repeats, number)
