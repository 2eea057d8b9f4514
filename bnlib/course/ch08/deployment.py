"""After training: fine-tuning with frozen batch norm, recalibrating statistics after a shift, and
dropout's variance shift.

The main shift: low-contrast digits on a grey background, ``contrast x + (1 - contrast)/2``, what a
different scanner or camera might give; for recalibration also noisy digits, ``x`` plus Gaussian noise. The pretrained net is the BN conv net of the learning-rate
sweep (rate 0.1).
"""

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from bnlib import BatchNorm1d
from bnlib.course.cache import Config, experiment
from bnlib.course.ch08.convnet import images_2d, lr_sweep, trained_net
from bnlib.course.training import accuracy, mnist, random_batches, small_model_settings, train_mlp
from bnlib.running_stats import batch_norm_layers, recompute_population_statistics

CONTRAST = 0.3
FINETUNE_VARIANTS = ("requires_grad=False", "BN in eval mode", "FrozenBatchNorm2d")  # see prepare, set_training_mode


@dataclass(frozen=True)
class FinetuneRun(Config):
    """The fine-tuning's settings: the pretrained net's classifier trained on digits of ``contrast``, once per
    way of freezing batch norm (``variants``), and tested on the first ``test_examples`` test digits."""

    contrast: float = CONTRAST
    steps: int = 300
    batch_size: int = 8
    lr: float = 0.05
    test_examples: int = 2_000
    seed: int = 0
    variants: tuple = FINETUNE_VARIANTS

    def __post_init__(self):
        if not 0 < self.contrast <= 1:
            raise ValueError(f"contrast must be in (0, 1], so that the shifted digits stay in [0, 1]; "
                             f"got {self.contrast}")
        unknown = [variant for variant in self.variants if variant not in FINETUNE_VARIANTS]
        if unknown:
            raise ValueError(f"unknown variant(s) {unknown}: the ways to freeze batch norm are {FINETUNE_VARIANTS}")


@dataclass(frozen=True)
class RecalibrationRun(Config):
    """The recalibration's settings: each of ``shifts`` ((kind, level), see ``shift``), recalibrated on each
    number of ``batches`` of ``batch_size`` shifted training digits, tested on the first ``test_examples``."""

    shifts: tuple = (("contrast", 1.0), ("contrast", 0.6), ("contrast", 0.3), ("contrast", 0.15),
                     ("noise", 0.25), ("noise", 0.5))
    batches: tuple = (0, 1, 2, 4, 8, 16, 32, 64, 128)
    batch_size: int = 64
    test_examples: int = 2_000
    seed: int = 0


@dataclass(frozen=True)
class DropoutRun(Config):
    """The variance-shift experiment's settings: the dropout MLP trained at each dropout rate of ``ps``."""

    ps: tuple = (0.0, 0.2, 0.5)
    steps: int = 600
    batch_size: int = 64
    lr: float = 0.1
    seed: int = 0

    def __post_init__(self):
        if not all(0 <= p < 1 for p in self.ps):
            raise ValueError(f"each dropout rate in ps must be in [0, 1) (at 1 nothing gets through); got {self.ps}")


FINETUNE = FinetuneRun()
RECALIBRATE = RecalibrationRun()
DROPOUT = DropoutRun()


def shifted(images, contrast):
    """Low-contrast digits on a grey background: ``contrast x + (1 - contrast) / 2``, still in [0, 1]."""
    return contrast * images + (1 - contrast) / 2


def shift(images, kind, level, seed=0):
    """``images`` shifted: ``("contrast", c)`` as ``shifted``; ``("noise", sigma)`` adds N(0, sigma^2) noise."""
    if kind == "contrast":
        return shifted(images, level)
    if kind == "noise":
        generator = torch.Generator().manual_seed(seed)
        return images + level * torch.randn(images.shape, generator=generator)
    raise ValueError(f"the shift is 'contrast' or 'noise', not {kind!r}")


def frozen(layer):
    """torchvision's ``FrozenBatchNorm2d`` holding ``layer``'s statistics and affine parameters as buffers."""
    from torchvision.ops.misc import FrozenBatchNorm2d  # imported here: torchvision takes a second to load

    fixed = FrozenBatchNorm2d(layer.num_features, eps=layer.eps)
    for name in ("weight", "bias", "running_mean", "running_var"):   # all buffers there: nothing learns
        getattr(fixed, name).copy_(getattr(layer, name).detach())
    return fixed


def prepare(net, variant):
    """The pretrained net set up for fine-tuning its last layer only, the ``variant`` way."""
    net = copy.deepcopy(net)
    for name, parameter in net.named_parameters():
        parameter.requires_grad_(name.startswith("fc"))      # only the classifier learns
    if variant == "FrozenBatchNorm2d":
        net.bn1, net.bn2 = frozen(net.bn1), frozen(net.bn2)
    return net


def set_training_mode(net, variant):
    """``net.train()`` before a fine-tuning step; for "BN in eval mode", its BN layers back in eval mode."""
    net.train()
    if variant == "BN in eval mode":
        for layer in batch_norm_layers(net):  # normalize with, and keep, the running statistics
            layer.eval()


@experiment("ch08_finetune", FinetuneRun)
def finetune(config):
    """Fine-tune the pretrained net's classifier on shifted digits, once per variant (cached): accuracy on
    shifted and original test images before and after, and how far the running means moved."""
    pretrained = trained_net(lr_sweep())
    images, labels = images_2d(True)
    images = shifted(images, config.contrast)
    test_images, test_labels = (t[:config.test_examples] for t in images_2d(False))
    shifted_test = shifted(test_images, config.contrast)
    batches = random_batches(len(labels), config.batch_size, config.steps, config.seed)
    before = [accuracy(pretrained, shifted_test, test_labels), accuracy(pretrained, test_images, test_labels)]
    rows, moved = [], []
    with small_model_settings():
        for variant in config.variants:
            net = prepare(pretrained, variant)
            optimizer = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=config.lr)
            means = [layer.running_mean.clone() for layer in (net.bn1, net.bn2)]
            for (batch,) in batches:
                set_training_mode(net, variant)
                loss = nn.functional.cross_entropy(net(images[batch]), labels[batch])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            moved.append(max((layer.running_mean - mean).abs().max().item()
                             for layer, mean in zip((net.bn1, net.bn2), means)))
            rows.append([accuracy(net, shifted_test, test_labels), accuracy(net, test_images, test_labels)])
    return {"before": np.array(before), "after": np.array(rows), "moved": np.array(moved)}


def recalibrate_with_update_bn(net, batches):
    """torch's own tool on our layers: ``torch.optim.swa_utils.update_bn`` (a copy of ``net``, in eval mode)."""
    net = copy.deepcopy(net)
    torch.optim.swa_utils.update_bn(batches, net)
    return net.eval()


@experiment("ch08_recalibration", RecalibrationRun)
def recalibration(config):
    """Test accuracy on shifted digits after recalibrating the pretrained net's statistics on k unlabeled
    batches of shifted training images, for each shift and k (k = 0: the stale statistics), and the plain
    net's accuracy on the same shifted digits, for comparison (cached)."""
    sweep = lr_sweep()
    pretrained, plain = trained_net(sweep), trained_net(sweep, batch_norm=False)
    images, _ = images_2d(True)
    test_images, test_labels = (t[:config.test_examples] for t in images_2d(False))
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(config.seed))
    grid, plain_accuracy = [], []
    for kind, level in config.shifts:
        test = shift(test_images, kind, level, config.seed + 1)
        plain_accuracy.append(accuracy(plain, test, test_labels))
        row = []
        for k in config.batches:
            net = copy.deepcopy(pretrained)
            if k:
                chosen = shift(images[order[:k * config.batch_size]], kind, level, config.seed)
                recompute_population_statistics(net, chosen.split(config.batch_size))
            row.append(accuracy(net, test, test_labels))
        grid.append(row)
    return {"accuracy": np.array(grid), "plain_accuracy": np.array(plain_accuracy)}


def dropout_mlp(p, seed=0):
    """784 -> 256 ReLU -> dropout(p) -> 128 (no bias) -> BN -> ReLU -> 10: dropout right before batch norm."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Dropout(p), nn.Linear(256, 128, bias=False),
                         BatchNorm1d(128), nn.ReLU(), nn.Linear(128, 10))


def bn_input_variance(model, images):
    """The variance of the BN layer's input over ``images``, per unit, in eval mode (dropout off)."""
    with torch.no_grad():
        return model.eval()[:4](images).var(0)


@experiment("ch08_variance_shift", DropoutRun)
def variance_shift(config):
    """For each dropout rate: the test images' BN-input variance over the running variance (per unit), and
    the test accuracy, as trained and after recomputing the statistics with dropout off (cached)."""
    images, labels = mnist(True)
    test_images, test_labels = mnist(False)
    batches = random_batches(len(labels), config.batch_size, config.steps, config.seed)
    ratio, fixed_ratio, acc, fixed_acc = [], [], [], []
    for p in config.ps:
        model = dropout_mlp(p, config.seed)
        train_mlp(model, images, labels, batches, config.lr)
        variance = bn_input_variance(model, test_images)
        ratio.append((variance / model[4].running_var).numpy())
        acc.append(accuracy(model, test_images, test_labels))
        recompute_population_statistics(model, images[:10_000].split(100))  # the rest in eval mode: no dropout
        fixed_ratio.append((variance / model[4].running_var).numpy())
        fixed_acc.append(accuracy(model, test_images, test_labels))
    return {"ratio": np.array(ratio), "fixed_ratio": np.array(fixed_ratio), "accuracy": np.array(acc),
            "fixed_accuracy": np.array(fixed_acc)}
