"""The recorded run of notebook 02: the paper's sigmoid MLP trained on MNIST, its hidden inputs measured.

We train ``paper_mlp`` (three hidden layers of 100 sigmoid units) with plain SGD and, every
``record_every`` steps, feed the same probe images (the first test images) through it and keep the
quantiles of what each hidden unit receives: ``measure`` is that recording step, the one the notebook
shows. The learning rate, 2, is four times that of the full 50,000-step reproduction
(``bnlib.course.ch06.paper``), so that 3,000 steps reach about 90% accuracy on the probe. The run is
cached; the notebook, its figures and its explorer read it from there.
"""

from dataclasses import dataclass

import numpy as np
import torch

from bnlib.course import drift
from bnlib.course.cache import Config, experiment
from bnlib.course.models import paper_mlp
from bnlib.course.training import accuracy, mnist, train_mlp



@dataclass(frozen=True)
class DriftRun(Config):
    """The recorded run's settings: SGD steps, batch size and learning rate, the initial weights' scale, the
    seed, how often the probe is measured, how many test images it has, and the steps whose inputs are kept."""

    steps: int = 3000
    batch_size: int = 60
    lr: float = 2.0
    init_std: float = 0.01
    seed: int = 0
    record_every: int = 25
    probe_size: int = 1000
    snapshots: tuple = (500, 1000, 2000, 3000)

    def __post_init__(self):
        if self.steps % self.record_every:
            raise ValueError(f"steps ({self.steps}) must be a multiple of record_every ({self.record_every}), "
                             f"so the last step is recorded")


LEVELS = np.arange(0, 101, 5)  # the quantiles recorded: the 0th (smallest), 5th, ..., 100th (largest) percentile
DRIFT_LEVELS = [int(np.flatnonzero(LEVELS == p)[0]) for p in drift.PERCENTILES]  # where the 15th, 50th, 85th are


def hidden_inputs(model, images):
    """The sigmoid inputs x^(k) of the hidden layers k = 1, 2, 3 for ``images``, and each layer's input u^(k-1)."""
    xs, us, u = [], [], images
    for linear, sigmoid in zip(model[0:-1:2], model[1::2]):  # (Linear, Sigmoid) pairs; the output layer is left out
        us.append(u)
        xs.append(linear(u))  # x^(k) = W^(k) u^(k-1) + b^(k)
        u = sigmoid(xs[-1])   # u^(k) = sigmoid(x^(k)), the next layer's input
    return xs, us


def measure(model, probe):
    """One recorded step: the quantiles (``LEVELS``) over the probe images of every hidden unit's sigmoid
    input, shape (3 layers, 21, 100 units), and of layer 3's inputs u^(2), shape (21, 100 units)."""
    with torch.no_grad():
        xs, us = hidden_inputs(model, probe)
    x_quantiles = np.stack([np.percentile(x.numpy(), LEVELS, axis=0) for x in xs])
    u_quantiles = np.percentile(us[2].numpy(), LEVELS, axis=0)
    return x_quantiles, u_quantiles


def train_and_record(config, progress=True):
    """SGD on MNIST's mean cross-entropy, calling ``measure`` every ``config.record_every`` steps (step 0 too);
    at the ``config.snapshots`` steps it also keeps layer 3's inputs u^(2) for every probe image."""
    from tqdm.auto import tqdm

    images, labels = mnist(train=True)
    test_images, test_labels = mnist(train=False)
    probe, probe_labels = test_images[:config.probe_size], test_labels[:config.probe_size]
    torch.manual_seed(config.seed)
    model = paper_mlp(init_std=config.init_std)
    order = torch.randint(len(images), (config.steps, config.batch_size),
                          generator=torch.Generator().manual_seed(config.seed))
    recorded, snapshots = range(0, config.steps + 1, config.record_every), config.snapshots
    record = {"steps": [], "x_quantiles": [], "u_quantiles": [], "accuracy": [], "u_snapshots": []}

    def on_checkpoint(step):
        if step in recorded:
            x_quantiles, u_quantiles = measure(model, probe)
            record["steps"].append(step)
            record["x_quantiles"].append(x_quantiles.astype(np.float32))
            record["u_quantiles"].append(u_quantiles.astype(np.float32))
            record["accuracy"].append(accuracy(model, probe, probe_labels))
        if step in snapshots:
            with torch.no_grad():
                record["u_snapshots"].append(hidden_inputs(model, probe)[1][2].numpy())

    with tqdm(total=config.steps, desc="training", unit="step", disable=not progress, mininterval=1.0) as bar:
        train_mlp(model, images, labels, [[batch] for batch in order], config.lr, on_checkpoint=on_checkpoint,
                  checkpoints={*recorded, *snapshots}, progress=bar)
    return {"snapshot_steps": np.array(snapshots), "levels": LEVELS,
            **{key: np.array(value) for key, value in record.items()}}


@experiment("hidden_input_drift", DriftRun)
def drift_run(config, progress=True):
    """The recorded run (cached; ``drift_run(DriftRun().replace(steps=...))`` for other settings): ``steps``
    (S,); ``x_quantiles`` (S, 3 layers, 21 levels, 100 units) of the hidden layers' sigmoid inputs and
    ``u_quantiles`` (S, 21, 100) of layer 3's inputs, at ``levels``; ``accuracy`` (S,) on the probe;
    ``u_snapshots`` (K, probe, 100) at ``snapshot_steps``."""
    return train_and_record(config, progress=progress)


def drift_percentiles(quantiles):
    """The 15th, 50th and 85th percentiles, (..., 3, units), out of recorded quantiles (..., 21, units)."""
    return np.asarray(quantiles)[..., DRIFT_LEVELS, :]
