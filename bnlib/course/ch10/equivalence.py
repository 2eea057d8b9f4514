"""Only the product lr x wd matters for a scale-invariant weight: two runs that follow the same function.

Run A trains from hidden weights W_0 with (lr, wd). Run B starts from sqrt(c) W_0 and trains the hidden
weights with (c lr, wd / c); gamma, beta and the last Linear keep their own (lr, wd) in both runs. Since the
gradient at sqrt(c) W is g(W) / sqrt(c) (scale invariance),

    sqrt(c) W - c lr (g(W) / sqrt(c) + (wd / c) sqrt(c) W) = sqrt(c) (W - lr (g(W) + wd W)),

so B's hidden weights stay sqrt(c) times A's, step after step, and the two networks compute the same function.
``run_equivalence`` checks it on MNIST, on the same batches, in three settings: float64 with BN's eps ~ 0 (the
identity holds to rounding), float64 with torch's eps 1e-5 (eps breaks scale invariance a little), and float32
with eps ~ 0 (float32 rounding).
"""

import math
from dataclasses import dataclass

import numpy as np
import torch

from bnlib.course.cache import Config, experiment
from bnlib.course.ch10.batched import HIDDEN, BatchedMLP
from bnlib.course.ch10.optimizer import Optimizer, steps_counter, train_runs
from bnlib.course.training import mnist, random_batches
from bnlib.layers import BatchNorm1d

TINY_EPS = 1e-30  # BN's eps "0": torch and bnlib refuse 0 in training; 1e-30 is far below any variance's rounding
DTYPES = {"float64": torch.float64, "float32": torch.float32}


@dataclass(frozen=True)
class EquivalenceRun(Config):
    """Run A: (lr, wd) on the hidden weights from N(0, ``init_std``^2); run B for each c of a case's scales:
    (c lr, wd / c) from sqrt(c) times A's initial hidden weights. ``cases``: (dtype name, BN eps, scales).
    The last Linear's weight decays with wd in both; gamma, beta and the last bias do not decay."""

    lr: float = 0.1
    wd: float = 3e-3
    cases: tuple = (("float64", TINY_EPS, (3.0,)), ("float64", 1e-5, (3.0,)), ("float32", TINY_EPS, (3.0,)))
    steps: int = 500
    checkpoints: tuple = (1, 10, 30, 100, 300, 500)
    batch_size: int = 60
    init_std: float = 0.05
    seed: int = 0

    def __post_init__(self):
        for dtype, eps, scales in self.cases:
            if dtype not in DTYPES or not eps > 0 or not scales or min(scales) <= 0:
                raise ValueError(f"a case is (dtype in {sorted(DTYPES)}, eps > 0, positive scales), got "
                                 f"{(dtype, eps, scales)!r}")
        if max(self.checkpoints) > self.steps or min(self.checkpoints) < 1:
            raise ValueError(f"checkpoints must lie in 1..steps ({self.steps}), got {self.checkpoints}")


def equivalent_optimizer(lr, wd, c):
    """Run B's optimizer: (c lr, wd / c) on the hidden weights, gamma, beta and the last Linear on (lr, wd)."""
    return Optimizer(c * lr, wd / c, other_lr=lr, last_wd=wd)


def relative_difference(a, b):
    """||a - b|| / ||b||."""
    return ((a - b).norm() / b.norm()).item()


def compare_case(dtype, eps, scales, config, report):
    """One case: run A and a run B per scale c, trained together. Per c: the relative difference of
    W_B / sqrt(c) from W_A (the largest over the hidden layers) and of the last Linear's weights at each
    checkpoint; at the end, the test logits' largest difference (relative to A's largest logit), the share of
    test images both classify alike, the largest difference of the training losses, and A's test accuracy."""
    images, labels = mnist(train=True)
    model = BatchedMLP(1 + len(scales), eps=eps, dtype=DTYPES[dtype]).init_normal([config.seed] * (1 + len(scales)),
                                                                               config.init_std)
    with torch.no_grad():
        for run, c in enumerate(scales, start=1):
            for weight in model.weights[:HIDDEN]:
                weight[run] = weight[0] * math.sqrt(c)  # B starts at sqrt(c) W_0
    optimizers = [Optimizer(config.lr, config.wd)] + [equivalent_optimizer(config.lr, config.wd, c) for c in scales]
    hidden, last = np.zeros((len(scales), len(config.checkpoints))), np.zeros((len(scales), len(config.checkpoints)))

    def on_step(step):
        if step + 1 in config.checkpoints:
            k = config.checkpoints.index(step + 1)
            for j, c in enumerate(scales):
                hidden[j, k] = max(relative_difference(w[j + 1] / math.sqrt(c), w[0]) for w in model.weights[:HIDDEN])
                last[j, k] = relative_difference(model.weights[-1][j + 1], model.weights[-1][0])

    batches = [batch for (batch,) in random_batches(len(images), config.batch_size, config.steps, config.seed)]
    records = train_runs(model, images, labels, batches, optimizers, report, on_step)
    test_images, test_labels = mnist(train=False)
    with torch.no_grad():
        logits = model.eval()(test_images.to(DTYPES[dtype]))  # (runs, 10000, 10), running statistics
    scale = logits[0].abs().max()
    return {"hidden": hidden, "last": last,
            "logits": np.array([((logits[j] - logits[0]).abs().max() / scale).item() for j in range(1, len(logits))]),
            "agreement": np.array([(logits[j].argmax(1) == logits[0].argmax(1)).double().mean().item()
                                   for j in range(1, len(logits))]),
            "loss": np.abs(records["loss"][:, 1:] - records["loss"][:, :1]).max(0),
            "accuracy": (logits[0].argmax(1) == test_labels).double().mean().item()}


@experiment("ch10_equivalence", EquivalenceRun)
def run_equivalence(config, report=None, progress=True):
    """Every case of ``config`` (cached). Arrays over (case, scale), NaN where a case has fewer scales:
    ``hidden`` and ``last`` (case, scale, checkpoint), ``logits``, ``agreement``, ``loss``; ``accuracy`` (case,)."""
    width = max(len(scales) for _, _, scales in config.cases)
    total = config.steps * sum(1 + len(scales) for _, _, scales in config.cases)
    found = []
    with steps_counter(total, "equivalent runs", report, progress) as count:
        for dtype, eps, scales in config.cases:
            found.append(compare_case(dtype, eps, scales, config, lambda n, runs=1 + len(scales): count(n * runs)))

    def padded(key):
        rows = [np.asarray(case[key], dtype=np.float64) for case in found]
        return np.stack([np.pad(row, [(0, width - len(row))] + [(0, 0)] * (row.ndim - 1), constant_values=np.nan)
                         for row in rows])

    return {**{key: padded(key) for key in ("hidden", "last", "logits", "agreement", "loss")},
            "accuracy": np.array([case["accuracy"] for case in found]), "checkpoints": np.array(config.checkpoints)}


def parameter_groups(model, lr, wd, gamma_beta_wd=0.0):
    """Parameter groups for ``torch.optim.SGD`` on a network like ``BatchedMLP.network``'s: the weights of the
    Linear layers that feed batch norm (scale-invariant), then every other Linear weight, both with ``wd``;
    then gamma, beta and the biases, with ``gamma_beta_wd`` (none by default). All at learning rate ``lr``."""
    layers = list(model)
    feeds_bn = [layer.weight for layer, after in zip(layers, layers[1:] + [None])
                if isinstance(layer, torch.nn.Linear) and isinstance(after, BatchNorm1d)]
    chosen = {id(p) for p in feeds_bn}
    other_weights = [layer.weight for layer in layers if isinstance(layer, torch.nn.Linear) and id(layer.weight) not in chosen]
    chosen |= {id(p) for p in other_weights}
    rest = [p for p in model.parameters() if id(p) not in chosen]
    return [{"params": feeds_bn, "lr": lr, "weight_decay": wd}, {"params": other_weights, "lr": lr, "weight_decay": wd},
            {"params": rest, "lr": lr, "weight_decay": gamma_beta_wd}]
