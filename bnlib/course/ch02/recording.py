"""The recorded run of notebook 02: the paper's sigmoid MLP trained on MNIST, its hidden inputs measured.

We train ``paper_mlp`` (three hidden layers of 100 sigmoid units) with plain SGD and, every
``record_every`` steps, feed the same probe images (the first test images) through it and keep the
quantiles of what each hidden unit receives: ``measure`` is that recording step, the one the notebook
shows. The learning rate, 2, is four times that of the full 50,000-step reproduction
(``bnlib.course.ch06.paper``), so that 3,000 steps reach about 90% accuracy on the probe. The run is
cached; the notebook, its figures and its explorer read it from there.
"""

import numpy as np
import torch

from bnlib.course import drift
from bnlib.course.cache import cached
from bnlib.course.models import paper_mlp
from bnlib.course.training import accuracy, mnist, train_mlp

DRIFT_CONFIG = {"steps": 3000, "batch_size": 60, "lr": 2.0, "init_std": 0.01, "seed": 0, "record_every": 25,
                "probe_size": 1000, "snapshots": (500, 1000, 2000, 3000)}
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


def train_and_record(steps, batch_size, lr, init_std, seed, record_every, probe_size, snapshots, progress=True):
    """SGD on MNIST's mean cross-entropy, calling ``measure`` every ``record_every`` steps (step 0 too);
    at the ``snapshots`` steps it also keeps layer 3's inputs u^(2) for every probe image."""
    from tqdm.auto import tqdm

    images, labels = mnist(train=True)
    test_images, test_labels = mnist(train=False)
    probe, probe_labels = test_images[:probe_size], test_labels[:probe_size]
    torch.manual_seed(seed)
    model = paper_mlp(init_std=init_std)
    order = torch.randint(len(images), (steps, batch_size), generator=torch.Generator().manual_seed(seed))
    recorded = range(0, steps + 1, record_every)
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

    with tqdm(total=steps, desc="training", unit="step", disable=not progress, mininterval=1.0) as bar:
        train_mlp(model, images, labels, [[batch] for batch in order], lr, on_checkpoint=on_checkpoint,
                  checkpoints={*recorded, *snapshots}, progress=bar)
    return {"snapshot_steps": np.array(snapshots), "levels": LEVELS,
            **{key: np.array(value) for key, value in record.items()}}


def drift_run(progress=True, **overrides):
    """The recorded run (cached): ``steps`` (S,); ``x_quantiles`` (S, 3 layers, 21 levels, 100 units) of the
    hidden layers' sigmoid inputs and ``u_quantiles`` (S, 21, 100) of layer 3's inputs, at ``levels``;
    ``accuracy`` (S,) on the probe; ``u_snapshots`` (K, probe, 100) at ``snapshot_steps``."""
    unknown = set(overrides) - set(DRIFT_CONFIG)
    if unknown:
        raise TypeError(f"unknown setting(s) {sorted(unknown)}; drift_run accepts {sorted(DRIFT_CONFIG)}")
    config = {**DRIFT_CONFIG, **overrides}
    if config["steps"] % config["record_every"]:
        raise ValueError("steps must be a multiple of record_every, so the last step is recorded")
    return cached("hidden_input_drift", config, lambda: train_and_record(**config, progress=progress))


def drift_percentiles(quantiles):
    """The 15th, 50th and 85th percentiles, (..., 3, units), out of recorded quantiles (..., 21, units)."""
    return np.asarray(quantiles)[..., DRIFT_LEVELS, :]
