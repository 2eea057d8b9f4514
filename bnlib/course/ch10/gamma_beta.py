"""Weight decay on gamma and beta, or not (Goyal et al. 2017, section 5.1; He et al. 2019, "no bias decay").

Gamma and beta are not scale-invariant: they set the scale and shift of BN's output, and decaying them pulls
that output towards 0. Common practice leaves them (and the biases) undecayed. A paired comparison on MNIST:
for each seed (the initial weights), one run without and one with weight decay on gamma, beta and the last
bias, from the same initial weights and on the same batches; the Linear weights decay in both.
"""

from dataclasses import dataclass

import numpy as np

from bnlib.course.cache import Config, experiment
from bnlib.course.ch10.batched import BatchedMLP, evaluate_runs
from bnlib.course.ch10.optimizer import Optimizer, steps_counter, train_runs
from bnlib.course.training import mnist, random_batches

TAIL = 200  # the training loss is averaged over the last TAIL steps


@dataclass(frozen=True)
class GammaBetaRun(Config):
    """Plain SGD at ``lr`` with weight decay ``wd`` on every Linear weight; per seed of ``seeds`` (the initial
    weights, N(0, ``init_std``^2)), gamma, beta and the last bias decay with 0 or with ``wd``. Every run sees
    the batches of ``batch_seed``."""

    lr: float = 0.1
    wd: float = 1e-2
    steps: int = 1200
    seeds: tuple = (0, 1, 2, 3)
    batch_size: int = 60
    init_std: float = 0.01
    batch_seed: int = 0

    def __post_init__(self):
        if len(self.seeds) < 2:
            raise ValueError(f"at least two seeds, to see the spread between them; got {self.seeds!r}")
        if self.steps <= TAIL:
            raise ValueError(f"steps must exceed the {TAIL} over which the training loss is averaged")


@experiment("ch10_gamma_beta", GammaBetaRun)
def run_gamma_beta(config, report=None, progress=True):
    """The paired runs (cached). Over (seed, [gamma and beta not decayed, decayed]): ``accuracy``, ``test_loss``,
    ``train_loss`` (the last TAIL steps' mean); ``gamma`` and ``beta`` (seed, 2, layer), the mean |gamma| and
    |beta| of each BN layer at the end."""
    images, labels = mnist(train=True)
    optimizers = [Optimizer(config.lr, config.wd, gamma_beta_wd=decay) for _ in config.seeds for decay in (0.0, config.wd)]
    model = BatchedMLP(len(optimizers)).init_normal([seed for seed in config.seeds for _ in (0, 1)], config.init_std)
    batches = [batch for (batch,) in random_batches(len(images), config.batch_size, config.steps, config.batch_seed)]
    with steps_counter(len(optimizers) * config.steps, "gamma and beta decayed or not", report, progress) as count:
        records = train_runs(model, images, labels, batches, optimizers, lambda n: count(n * len(optimizers)))
    accuracy, test_loss = evaluate_runs(model, *mnist(train=False))
    pairs = (len(config.seeds), 2)
    mean_abs = lambda name: np.stack([model.per_run(getattr(norm, name)).detach().abs().mean(1).double().numpy()  # noqa: E731
                                      for norm in model.norms], axis=-1).reshape(*pairs, -1)
    return {"accuracy": accuracy.reshape(pairs), "test_loss": test_loss.reshape(pairs),
            "train_loss": records["loss"][-TAIL:].mean(0).reshape(pairs), "gamma": mean_abs("weight"),
            "beta": mean_abs("bias"), "seeds": np.array(config.seeds)}


def paired_difference(result):
    """Per seed, the accuracy with gamma and beta decayed minus without (points of accuracy: x 100)."""
    return 100 * (result["accuracy"][:, 1] - result["accuracy"][:, 0])
