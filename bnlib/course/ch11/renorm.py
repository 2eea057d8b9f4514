"""Where batch norm fails: small batches and class-sorted batches. Batch norm, Batch Renormalization, GroupNorm.

One run trains a 784-100-100-100-10 ReLU network (weights N(0, 0.05^2), no bias before a norm) with one kind
of normalization after each hidden Linear, with plain SGD for ``steps`` steps on batches of m examples,
composed one of two ways: ``"iid"`` (drawn at random) or ``"sorted"`` (one class per batch, the classes in
turn). Then two scores:

- *eval*: eval mode on the 10,000 test images (the running statistics; GroupNorm has none, it is the same
  function in both modes);
- *train mode*: train mode on the first ``train_mode_examples`` test images cut into batches of m composed
  as in training, as if ``model.eval()`` were forgotten. Train mode minus eval mode on those same images is
  the *train-eval gap*: how far what the network does with batch statistics differs from what it does at
  inference (0 for GroupNorm, and for Batch Renorm while its corrections are not clipped).

Batch Renorm (``bnlib.BatchRenorm1d``) uses the paper's rate alpha = 0.01 for its moving averages and the
shape of its schedule compressed to the run: plain batch norm (r_max = 1, d_max = 0) for the first 10% of the
steps, then d_max rising linearly to 5 by 35% and r_max to 3 by 50% (Ioffe 2017 relaxes them over 5k to 40k
steps of a run far longer than ours).

The learning rate follows the linear scaling rule from 0.5 at m = 32, capped at 0.1 (the rate of m = 60):
lr = min(0.1, 0.5 m / 32). Every run takes the same number of steps, so a larger batch sees more examples.
"""

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from bnlib import BatchNorm1d, BatchRenorm1d
from bnlib.course.cache import Config, experiment
from bnlib.course.models import mlp
from bnlib.course.training import consecutive_batches, evaluate, mnist, random_batches, train_mlp

NORMS = ("BN", "Batch Renorm", "GroupNorm")
COMPOSITIONS = ("iid", "sorted")
GROUPS = 10  # GroupNorm: 100 units in 10 groups of 10
INIT_STD = 0.05


def make_norm(norm, units, renorm_momentum=0.01):
    if norm == "BN":
        return BatchNorm1d(units)
    if norm == "Batch Renorm":
        return BatchRenorm1d(units, momentum=renorm_momentum, r_max=1.0, d_max=0.0)
    if norm == "GroupNorm":
        return nn.GroupNorm(GROUPS, units)
    raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")


def normalized_mlp(norm, seed=0, hidden=(100, 100, 100), renorm_momentum=0.01):
    """784 -> [Linear (no bias) -> ``norm`` -> ReLU] per hidden layer -> Linear(10); weights N(0, 0.05^2)."""
    torch.manual_seed(seed)
    return mlp(lambda units: make_norm(norm, units, renorm_momentum), nn.ReLU, hidden, INIT_STD)


def renorm_limits(step, steps, r_final=3.0, d_final=5.0, warmup=0.1, d_end=0.35, r_end=0.5):
    """(r_max, d_max) at ``step`` of ``steps``: 1 and 0 (batch norm) for the first ``warmup`` of the run, then
    linear ramps reaching ``d_final`` at ``d_end`` of the run and ``r_final`` at ``r_end``."""
    def ramp(start, final, end):
        return start + (final - start) * min(max((step / steps - warmup) / (end - warmup), 0.0), 1.0)
    return ramp(1.0, r_final, r_end), ramp(0.0, d_final, d_end)


def one_class_batches(labels, batch_size, steps, seed=0):
    """``steps`` batches of one class each, the classes in turn (0, 1, ..., 9, 0, ...), drawn with replacement."""
    generator = torch.Generator().manual_seed(seed)
    members = [torch.nonzero(labels == c).flatten() for c in range(10)]
    return [[members[step % 10][torch.randint(len(members[step % 10]), (batch_size,), generator=generator)]]
            for step in range(steps)]


def training_batches(labels, batch_size, steps, composition, seed=0):
    if composition == "iid":
        return random_batches(len(labels), batch_size, steps, seed)
    if composition == "sorted":
        return one_class_batches(labels, batch_size, steps, seed)
    raise ValueError(f"composition must be one of {COMPOSITIONS}, got {composition!r}")


def held_out_batches(labels, batch_size, composition):
    """The examples cut into batches of ``batch_size``: in order (iid), or one class each (sorted, each class's
    remainder dropped)."""
    if composition == "iid":
        return consecutive_batches(len(labels), batch_size)
    return [members[batch] for members in (torch.nonzero(labels == c).flatten() for c in range(10))
            for batch in consecutive_batches(len(members), batch_size)]


@dataclass(frozen=True)
class GridRun(Config):
    """The grid: every norm x composition x batch size, the same seed, batches and steps for all."""

    norms: tuple = NORMS
    compositions: tuple = COMPOSITIONS
    batch_sizes: tuple = (2, 4, 8, 16, 60)
    steps: int = 500
    lr_cap: float = 0.1
    renorm_momentum: float = 0.01
    train_mode_examples: int = 1000
    seed: int = 0

    def lr(self, batch_size):
        return min(self.lr_cap, 0.5 * batch_size / 32)


GRID = GridRun()


def train_one(norm, composition, batch_size, config):
    """One run of the grid: ``(losses, eval accuracy on every test image, eval and train-mode accuracy on the test
    batches composed as in training from the first train_mode_examples)``."""
    images, labels = mnist(train=True)
    test_images, test_labels = mnist(train=False)
    model = normalized_mlp(norm, config.seed, renorm_momentum=config.renorm_momentum)
    renorms = [layer for layer in model if isinstance(layer, BatchRenorm1d)]

    def set_limits(step):
        for layer in renorms:
            layer.r_max, layer.d_max = renorm_limits(step, config.steps)

    batches = training_batches(labels, batch_size, config.steps, composition, config.seed)
    losses = train_mlp(model, images, labels, batches, config.lr(batch_size), on_checkpoint=set_limits,
                       checkpoints=range(config.steps) if renorms else ())
    held_out = held_out_batches(test_labels[:config.train_mode_examples], batch_size, composition)
    seen = torch.cat(held_out)  # the test images the train-mode batches hold, for eval mode on the same ones
    eval_mode = evaluate(model, test_images, test_labels)[1]
    eval_seen = evaluate(model, test_images[seen], test_labels[seen])[1]
    return losses, eval_mode, eval_seen, evaluate(model, test_images, test_labels, held_out)[1]


@experiment("ch11_grid", GridRun)
def run_grid(config, report=None):
    """The grid (cached): ``eval`` (all test images), ``eval_some`` and ``train_mode`` (the test batches composed
    as in training), each (norms, compositions, batch sizes), and ``loss`` (..., steps)."""
    shape = (len(config.norms), len(config.compositions), len(config.batch_sizes))
    result = {key: np.empty(shape) for key in ("eval", "eval_some", "train_mode")}
    result["loss"] = np.empty(shape + (config.steps,))
    for i, norm in enumerate(config.norms):
        for j, composition in enumerate(config.compositions):
            for k, m in enumerate(config.batch_sizes):
                (result["loss"][i, j, k], result["eval"][i, j, k], result["eval_some"][i, j, k],
                 result["train_mode"][i, j, k]) = train_one(norm, composition, m, config)
                if report is not None:
                    report(config.steps)
    return result


def cell(result, norm, composition, batch_size, config=GRID):
    """One run's scores: eval accuracy (all test images), train-mode accuracy, and the train-eval gap, train mode
    - eval on the same test images (as fractions, not points)."""
    at = config.norms.index(norm), config.compositions.index(composition), config.batch_sizes.index(batch_size)
    return {"eval": float(result["eval"][at]), "train_mode": float(result["train_mode"][at]),
            "gap": float(result["train_mode"][at] - result["eval_some"][at])}
