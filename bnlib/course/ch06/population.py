"""The paper's population statistics (Ioffe & Szegedy 2015, Algorithm 2) at checkpoints of the MNIST run.

Algorithm 2 (steps 8-11) freezes the trained network, runs it over training mini-batches of m examples,
every BN layer normalizing with its batch's statistics as in training, and averages: for each unit,
E[x] = E_B[mu_B] and Var[x] = m/(m-1) E_B[sigma_B^2]. Here that is ``bnlib.running_stats.
recompute_population_statistics`` on the BN network rebuilt from its weights at a checkpoint, over the
whole training set in batches of the run's size. The result is cached, keyed by the checkpoints' weights.
"""

import hashlib

import numpy as np
import torch

from bnlib.course.cache import cached
from bnlib.course.ch06.fast_trainer import to_torch_model
from bnlib.course.data import load_mnist
from bnlib.course.training import small_model_settings
from bnlib.running_stats import batch_norm_layers, recompute_population_statistics


def training_batches(batch_size, seed=0):
    """The 60,000 training images, shuffled with ``seed``, in batches of ``batch_size`` (the rest dropped)."""
    images, _ = load_mnist(train=True)
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
    return images[order[: len(order) - len(order) % batch_size]].split(batch_size)


def compute_population(parameters, batch_size, seed, progress=True):
    """Algorithm 2 for each row of ``parameters`` (K, P): ``population_mean``, ``population_var`` (K, 3, 100)."""
    from tqdm.auto import tqdm

    batches = training_batches(batch_size, seed)
    means, variances = [], []
    with small_model_settings():
        for flat in tqdm(torch.as_tensor(parameters), desc="Algorithm 2 over the training set, per checkpoint",
                         disable=not progress):
            model = recompute_population_statistics(to_torch_model(flat, batch_norm=True), batches)
            layers = batch_norm_layers(model)
            means.append(torch.stack([layer.running_mean for layer in layers]))
            variances.append(torch.stack([layer.running_var for layer in layers]))
    return {"population_mean": torch.stack(means).numpy(), "population_var": torch.stack(variances).numpy()}


def population_at_checkpoints(result, checkpoints, seed=0, progress=True):
    """Algorithm 2's mean and variance of every BN input at the run's ``checkpoints`` (indices), (K, 3, 100)
    each, with batches of the run's size. Cached: the key holds a digest of those checkpoints' weights."""
    parameters = np.ascontiguousarray(np.asarray(result["bn_parameters"])[np.asarray(checkpoints)])
    batch_size = int(result["batch_size"])
    config = {"weights_sha256": hashlib.sha256(parameters.tobytes()).hexdigest(), "dtype": str(parameters.dtype),
              "steps": np.asarray(result["steps"])[np.asarray(checkpoints)], "batch_size": batch_size,
              "order_seed": seed, "data": "MNIST train"}
    return cached("population_statistics", config,
                  lambda: compute_population(parameters, batch_size, seed, progress))
