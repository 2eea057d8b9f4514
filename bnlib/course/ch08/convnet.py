"""A LeNet-style conv net on MNIST, with or without ``bnlib.BatchNorm2d``, and the learning-rate sweep.

``ConvNet`` names its layers (``conv1``, ``bn1``, ``conv2``, ``bn2``, ``fc``) so that the two versions
share parameter names: the net with BN gets exactly the plain net's initial weights. Without BN the convs
have a bias; with BN they do not (BN's beta does that job, notebook 04).

``lr_sweep`` trains both versions at each learning rate on the same batches from the same start, and
records the test accuracy along the way: the paper's claim that BN allows much higher learning rates
(Ioffe & Szegedy 2015, section 3.3), tried on convolutions.
"""

from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import torch
from torch import nn

from bnlib import BatchNorm2d
from bnlib.course.cache import Config, experiment
from bnlib.course.parallel import run_in_processes
from bnlib.course.training import accuracy, mnist, random_batches, train_mlp

class ConvNet(nn.Module):
    """conv 5x5 (8 channels) -> [BN] -> ReLU -> max-pool 2 -> conv 5x5 (16) -> [BN] -> ReLU -> max-pool 2 -> linear 10."""

    def __init__(self, batch_norm, channels=(8, 16)):
        super().__init__()
        c1, c2 = channels
        self.conv1 = nn.Conv2d(1, c1, 5, bias=not batch_norm)        # 28x28 -> 24x24
        self.bn1 = BatchNorm2d(c1) if batch_norm else nn.Identity()  # one mean and variance per channel
        self.conv2 = nn.Conv2d(c1, c2, 5, bias=not batch_norm)       # 12x12 -> 8x8
        self.bn2 = BatchNorm2d(c2) if batch_norm else nn.Identity()
        self.fc = nn.Linear(c2 * 4 * 4, 10)                          # 4x4 after the second pooling

    def forward(self, x):
        x = nn.functional.max_pool2d(torch.relu(self.bn1(self.conv1(x))), 2)
        x = nn.functional.max_pool2d(torch.relu(self.bn2(self.conv2(x))), 2)
        return self.fc(x.flatten(1))


@dataclass(frozen=True)
class LrSweepRun(Config):
    """The learning-rate sweep's settings: both nets trained at each of ``lrs`` on the same batches, tested on
    the first ``test_examples`` test digits every ``eval_every`` steps; ``sweep_table`` reports the first
    step at which each reached the accuracy ``target``."""

    lrs: tuple = (0.03, 0.1, 0.3, 1.0, 3.0)
    steps: int = 300
    batch_size: int = 64
    eval_every: int = 25
    test_examples: int = 2_000
    target: float = 0.9
    seed: int = 0

    def __post_init__(self):
        if not 1 <= self.eval_every <= self.steps:
            raise ValueError(f"eval_every must be between 1 and steps ({self.steps}), so that the nets are tested "
                             f"at least once; got {self.eval_every}")
        if not 0 < self.target <= 1:
            raise ValueError(f"target is a test accuracy, a fraction between 0 and 1 (0.9 for 90%); got {self.target}")


SWEEP = LrSweepRun()


def channel_statistics(net, images):
    """Per channel of the first conv's output: mean and standard deviation over N, H and W, before BN
    and after its normalization with the batch's own statistics (before gamma and beta)."""
    with torch.no_grad():
        z = net.conv1(images)                                        # (N, C, H, W)
        mean, var = z.mean((0, 2, 3)), z.var((0, 2, 3), unbiased=False)  # one value per channel
        z_hat = (z - mean.view(1, -1, 1, 1)) / torch.sqrt(var.view(1, -1, 1, 1) + net.bn1.eps)
    return {"mean before": mean.numpy(), "std before": var.sqrt().numpy(),
            "mean after": z_hat.mean((0, 2, 3)).numpy(), "std after": z_hat.std((0, 2, 3), unbiased=False).numpy()}


def conv_net(batch_norm, seed=0):
    """A ``ConvNet``; for the same seed, with and without BN the convs' weights and the linear layer are equal."""
    torch.manual_seed(seed)
    plain = ConvNet(batch_norm=False)
    if not batch_norm:
        return plain
    net = ConvNet(batch_norm=True)
    with torch.no_grad():
        for name, parameter in net.named_parameters():
            if name in dict(plain.named_parameters()) and not name.startswith("bn"):
                parameter.copy_(dict(plain.named_parameters())[name])
    return net


def images_2d(train):
    """MNIST images as (N, 1, 28, 28) in [0, 1], and labels."""
    images, labels = mnist(train)
    return images.view(-1, 1, 28, 28), labels


def train_conv(batch_norm, lr, config, report=None):
    """Train one net with plain SGD (``train_mlp``): the test accuracy every ``eval_every`` steps, whether the
    loss ever became infinite or NaN, and the final weights. ``report(n)``, if given, hears of every step."""
    images, labels = images_2d(True)
    test_images, test_labels = (t[:config.test_examples] for t in images_2d(False))
    net, accuracies = conv_net(batch_norm, config.seed), []

    def evaluate_now(step):  # a net whose outputs are NaN predicts class 0 everywhere: about 10% right
        accuracies.append(accuracy(net, test_images, test_labels))

    batches = random_batches(len(labels), config.batch_size, config.steps, config.seed)
    losses = train_mlp(net, images, labels, batches, lr, on_checkpoint=evaluate_now,
                       checkpoints=range(config.eval_every, config.steps + 1, config.eval_every),
                       progress=None if report is None else SimpleNamespace(update=report))
    return {"accuracy": np.array(accuracies), "diverged": not np.isfinite(losses).all(),
            "state": {k: v.clone() for k, v in net.state_dict().items()}}


def sweep_version(batch_norm, config, report=None):  # one process: the plain net's runs, or the BN net's
    """Every learning rate of the sweep for one version of the net."""
    return [train_conv(batch_norm, lr, config, report) for lr in config.lrs]


@experiment("ch08_lr_sweep", LrSweepRun)
def lr_sweep(config, progress=True):
    """Both nets at every learning rate, one process each (cached): ``accuracy`` (2, lrs, evals) for
    (plain, BN), ``diverged`` (2, lrs), ``steps`` (evals,), and each run's final weights
    (``plain_state_<lr>_<name>``, ``bn_state_<lr>_<name>``). ``config``: a ``LrSweepRun``, by default ``SWEEP``."""
    runs = run_in_processes([(sweep_version, (batch_norm, config)) for batch_norm in (False, True)],
                            total=2 * len(config.lrs) * config.steps, desc="learning-rate sweep",
                            progress=progress)
    result = {"steps": np.arange(1, config.steps // config.eval_every + 1) * config.eval_every,
              "lrs": np.array(config.lrs),
              "accuracy": np.array([[run["accuracy"] for run in version] for version in runs]),
              "diverged": np.array([[run["diverged"] for run in version] for version in runs])}
    for version, name in zip(runs, ("plain", "bn")):
        for lr, run in zip(config.lrs, version):
            for key, value in run["state"].items():
                result[f"{name}_state_{lr}_{key}"] = value.numpy()
    return result


def trained_net(sweep, batch_norm=True, lr=0.1):
    """The net the sweep trained at ``lr`` (in eval mode)."""
    net, prefix = conv_net(batch_norm), f"{'bn' if batch_norm else 'plain'}_state_{lr}_"
    net.load_state_dict({key[len(prefix):]: torch.from_numpy(value) for key, value in sweep.items()
                         if key.startswith(prefix)})
    return net.eval()


def steps_to(accuracy, steps, target):
    """The first evaluated step at which ``accuracy`` reaches ``target``, or None."""
    reached = np.flatnonzero(np.asarray(accuracy) >= target)
    return int(steps[reached[0]]) if len(reached) else None


def sweep_table(sweep, target=SWEEP.target):
    """Rows (lr, version, steps to target or None, final accuracy, diverged), for both versions at each lr."""
    return [(float(lr), version, steps_to(sweep["accuracy"][v, i], sweep["steps"], target),
             float(sweep["accuracy"][v, i, -1]), bool(sweep["diverged"][v, i]))
            for i, lr in enumerate(sweep["lrs"]) for v, version in enumerate(("plain", "BN"))]
