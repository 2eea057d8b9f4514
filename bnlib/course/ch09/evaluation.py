"""The settings of chapter 9's MNIST runs, the network they start from, and what is measured at the end.

Every run trains the paper's network (784-100-100-100-10, sigmoid, batch norm) in float64, from the same
initial weights, on the same global batches (``shards.sharded_batches``). At the end we measure, on the
model as saved (rank 0's copy under DDP):

- test accuracy in eval mode, with the running statistics the model kept;
- test accuracy after replacing them by population statistics for the final weights (the paper's
  Algorithm 2, ``recompute_population_statistics``, over training batches): what is left when the
  running statistics are right;
- the normalization error of each unit: how far its normalized value at test time, with the running
  statistics (mu_r, s_r), is from the value with the population statistics (mu, s), as a root mean square
  over the population, x = mu + s z with z of mean 0 and variance 1:

      (x - mu_r)/s_r - (x - mu)/s = (mu - mu_r)/s_r + z (s/s_r - 1),
      error = sqrt(((mu - mu_r)/s_r)^2 + (s/s_r - 1)^2),      s = sqrt(var + eps).

  0 when the running statistics are the population's; 0.1 means the activations the next layer sees at
  test time are off by a tenth of their spread.
"""

import copy
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from bnlib.course.cache import Config
from bnlib.course.models import paper_mlp
from bnlib.course.training import accuracy, mnist, small_model_settings
from bnlib.running_stats import batch_norm_layers, recompute_population_statistics


@dataclass(frozen=True)
class TrainingRun(Config):
    """The training every MNIST run of the chapter shares: plain SGD on global batches of ``batch_size`` for
    ``steps``, from the initial weights and with the batches of ``seed``."""

    batch_size: int = 60
    steps: int = 500
    lr: float = 0.5
    seed: int = 0


RUN = TrainingRun()


@dataclass(frozen=True)
class Population(Config):
    """Algorithm 2's population statistics: recomputed over the first ``examples`` training images, in
    batches of ``batch_size``."""

    examples: int = 12_000
    batch_size: int = 600


POPULATION = Population()


def initial_model(seed=RUN.seed):
    """The paper's batch-norm MLP in float64, with the initial weights every run of the chapter starts from."""
    torch.manual_seed(seed)
    return paper_mlp(batch_norm=True).to(torch.float64)


@lru_cache(maxsize=1)
def training_data():
    """MNIST training images (float64) and labels, converted once per process (shared: read, never modify)."""
    images, labels = mnist(train=True)
    return images.to(torch.float64), labels


def normalization_error(running_mean, running_var, mean, var, eps):
    """Per unit: RMS difference of the normalized value with (running_mean, running_var) and with (mean, var)."""
    s_run, s = (torch.sqrt(v + eps) for v in (running_var, var))
    return torch.sqrt(((mean - running_mean) / s_run) ** 2 + (s / s_run - 1) ** 2)


@torch.no_grad()
def measure(model, population=POPULATION):
    """Eval-mode test accuracy with the model's running statistics and with population statistics, and the
    normalization error of each batch-norm layer (mean over its units)."""
    images, _ = training_data()
    test_images, test_labels = mnist(train=False)
    test_images = test_images.to(torch.float64)
    with small_model_settings():
        recomputed = recompute_population_statistics(copy.deepcopy(model),
                                                     images[:population.examples].split(population.batch_size))
        errors = [normalization_error(kept.running_mean, kept.running_var, right.running_mean, right.running_var,
                                      kept.eps).mean().item()
                  for kept, right in zip(batch_norm_layers(model), batch_norm_layers(recomputed))]
        return {"accuracy": accuracy(model, test_images, test_labels),
                "population_accuracy": accuracy(recomputed, test_images, test_labels),
                "error": np.array(errors)}


def flat_state(model):
    """Every parameter and running statistic of ``model``, in state_dict order, as one float64 vector."""
    return torch.cat([value.detach().reshape(-1).to(torch.float64) for value in model.state_dict().values()
                      if value.is_floating_point()]).numpy()
