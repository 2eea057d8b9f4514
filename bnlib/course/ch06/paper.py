"""The paper's MNIST experiment (Ioffe & Szegedy 2015, section 4.1 and Figure 1), run and measured.

``run_paper_experiment()`` trains the baseline and the BN network with ``bnlib.course.ch06.fast_trainer``, in
two processes (one per core; 1 to 3 minutes for the paper's 50,000 steps, depending on the CPU; a short run
trains in this one, see ``TWO_PROCESSES_FROM``), then evaluates each at every checkpoint in inference mode,
on all 10,000 test images: the test accuracy, and the 15th, 50th and 85th percentiles of each
last-hidden-layer unit's sigmoid INPUT (Figure 1b, c plot the input, not the sigmoid's output). Results are
cached by their full configuration.

The paper leaves some choices open. Ours:

- initial weights N(0, 0.01^2), biases 0, ``gamma`` 1, ``beta`` 0 ("small random Gaussian values"). With
  this scale the baseline starts with tiny pre-activations and has to grow its weights, so its sigmoid
  inputs move a lot early in training, as in the paper's Figure 1b. With N(0, 0.1^2) both networks
  still train well, but the baseline's inputs move about half as far in the first 10,000 steps and
  BN's lead at step 10,000 almost vanishes.
- plain SGD with learning rate 0.5 on the batch's mean cross-entropy; no momentum, no weight decay.
  Both networks train with it; the baseline does not diverge and the BN network does not stall.
- both networks start from the same weights and see the same mini-batches in the same order.
- test accuracy and the sigmoid inputs are measured at evenly spaced checkpoints, in inference mode.

Inference mode: the BN network normalizes with running statistics, PyTorch's convention and default
momentum 0.1, ``running = (1 - momentum) running + momentum batch`` with the unbiased batch variance.
They are not kept during training: the trainer records every step's batch mean and variance, and
``running_statistics`` replays the running averages afterwards, for any momentum.
"""

import time
from dataclasses import dataclass

import numpy as np
import torch

from bnlib.course import drift
from bnlib.course.cache import Config, experiment
from bnlib.course.ch06.fast_trainer import NETWORKS, WIDTHS, parameter_views, train_network
from bnlib.course.data import load_mnist
from bnlib.course.parallel import process_context, run_in_processes
from bnlib.course.training import small_model_settings
from bnlib.normalization import EPS
from bnlib.running_stats import replay_running_stats

DRIFT_START = 0.1  # the drift is measured from 10% of training (step 5,000 of 50,000) to the end
EVAL_MOMENTUM = 0.1


@dataclass(frozen=True)
class PaperRun(Config):
    """The experiment's settings; the defaults are the paper's setup (section 4.1) and our choices above.
    ``eval_momentum`` is the momentum of the running averages the evaluation replays."""

    steps: int = 50_000
    batch_size: int = 60
    lr: float = 0.5
    init_std: float = 0.01
    seed: int = 0
    checkpoints: int = 100
    eval_momentum: float = EVAL_MOMENTUM

    def __post_init__(self):
        if self.checkpoints < 1 or self.steps % self.checkpoints:
            raise ValueError(f"steps ({self.steps}) must be a positive multiple of checkpoints ({self.checkpoints}), "
                             f"so that the checkpoints are evenly spaced")
        if self.batch_size < 2:
            raise ValueError(f"batch_size must be at least 2 for batch norm in training, got {self.batch_size}")


PAPER = PaperRun()
# Two processes from this many examples (steps x batch size) per network. Each new process imports the
# course's code and loads MNIST: a 3,000-step run at batch 60 took about 9 CPU-seconds in one process and
# about 12 in two (7 s of wall time instead of 9), a cost the test suite and a busy machine pay for little.
TWO_PROCESSES_FROM = 500_000
SHORT_RUN = PAPER.replace(steps=3_000, checkpoints=30)  # the batch-size explorer's run, and its exercise's


def running_statistics(result, momentum=EVAL_MOMENTUM):
    """A BN layer's ``running_mean`` and ``running_var`` at each checkpoint, (C+1, 3, 100) each, as
    ``torch.nn.BatchNorm1d`` keeps them (``bnlib.running_stats.replay_running_stats``)."""
    every = int(result["steps"][1] - result["steps"][0])
    return replay_running_stats(result["batch_mean"], result["batch_var"], int(result["batch_size"]), momentum, every)


def stack_network(parameters, batch_norm):
    """One network's parameters at K checkpoints, stacked for ``torch.bmm``.

    ``parameters`` (K, P) flat. Returns ``weights[l]`` (K, fan_in, fan_out), ``shifts[l]`` (K, 1, fan_out)
    (biases, or BN's beta in the hidden layers) and, for the BN network, ``gammas[l]`` (K, 1, fan_out).
    """
    views = [parameter_views(flat, batch_norm) for flat in torch.as_tensor(np.asarray(parameters))]
    network = {key: [torch.stack(per_checkpoint).unsqueeze(1) if key != "weights" else torch.stack(per_checkpoint)
                     for per_checkpoint in zip(*(view[index] for view in views))]
               for index, key in enumerate(("weights", "shifts", "gammas"))}
    return network if batch_norm else {key: network[key] for key in ("weights", "shifts")}


def inference_layers(network, running_mean=None, running_var=None, eps=EPS):
    """``network`` (from ``stack_network``) in inference mode: each hidden layer's ``centers``, ``scales``.

    The sigmoid input is (u W - center) scale + shift: for the baseline center 0 and scale 1; for BN
    center mu_run and scale gamma / sqrt(var_run + eps), from running statistics (K, 3, 100) each.
    In inference, BN is a fixed affine map per unit.
    """
    hidden = range(len(WIDTHS) - 2)
    if "gammas" not in network:
        return {**network, "centers": [torch.zeros(()) for _ in hidden], "scales": [torch.ones(()) for _ in hidden]}
    dtype = network["weights"][0].dtype
    mean, var = (torch.as_tensor(np.asarray(a), dtype=dtype) for a in (running_mean, running_var))
    return {**network, "centers": [mean[:, layer].unsqueeze(1) for layer in hidden],
            "scales": [network["gammas"][layer] * torch.rsqrt(var[:, layer].unsqueeze(1) + eps) for layer in hidden]}


def inference_pass(first_products, layers):
    """(last hidden layer's sigmoid inputs, logits) of K stacked networks; ``first_products`` = x W_1, (K, N, 100)."""
    z = first_products
    for layer, (center, scale, shift) in enumerate(zip(layers["centers"], layers["scales"], layers["shifts"])):
        if layer:
            z = torch.bmm(torch.sigmoid(z), layers["weights"][layer])
        z = (z - center) * scale + shift
    logits = torch.baddbmm(layers["shifts"][-1], torch.sigmoid(z), layers["weights"][-1])
    return z, logits


def evaluate_checkpoints(parameters, images, labels, running_mean=None, running_var=None):
    """One network's test accuracy (C+1,) and the 15/50/85th percentiles of its last hidden layer's sigmoid
    inputs (C+1, 3, 100), at each of the C+1 checkpoints of ``parameters``, in inference mode. The BN
    network (given its running statistics at the checkpoints, (C+1, 3, 100) each) normalizes with them."""
    batch_norm = running_mean is not None
    accuracy = np.empty(len(parameters))
    percentiles = np.empty((len(parameters), len(drift.PERCENTILES), WIDTHS[-2]))
    for c in range(len(parameters)):
        statistics = (running_mean[c:c + 1], running_var[c:c + 1]) if batch_norm else ()
        network = inference_layers(stack_network(parameters[c:c + 1], batch_norm), *statistics)
        z, logits = inference_pass(images @ network["weights"][0], network)
        accuracy[c] = (logits[0].argmax(1) == labels).to(torch.float64).mean().item()
        percentiles[c] = drift.percentiles(z[0].numpy())
    return accuracy, percentiles


def bn_checkpoints(run, config):
    """The BN network's checkpoints in ``run`` (so far), ready for ``evaluate_share``: ``first`` (0), their
    ``parameters`` and the running statistics replayed up to each."""
    every, trained = config.steps // config.checkpoints, len(run["batch_mean"])
    if trained:
        running_mean, running_var = replay_running_stats(run["batch_mean"], run["batch_var"], config.batch_size,
                                                         config.eval_momentum, every)
    else:  # checkpoint 0: torch's initial running statistics
        shape, dtype = (1, *run["batch_mean"].shape[1:]), run["batch_mean"].dtype
        running_mean, running_var = np.zeros(shape, dtype), np.ones(shape, dtype)
    return {"first": 0, "parameters": run["parameters"], "running_mean": running_mean, "running_var": running_var}


def part(share, first, stop=None):
    """The checkpoints ``first`` to ``stop`` (excluded) of a share of checkpoints."""
    return {key: share["first"] + first if key == "first" else value[first:stop] for key, value in share.items()}


def evaluate_share(share, images, labels):
    """``evaluate_checkpoints`` on a share of checkpoints (from ``bn_checkpoints``, or a baseline's
    ``first`` and ``parameters``): ``(indices of the checkpoints, accuracy, percentiles)``."""
    statistics = (share["running_mean"], share["running_var"]) if "running_mean" in share else ()
    indices = share["first"] + np.arange(len(share["parameters"]))
    return (indices, *evaluate_checkpoints(share["parameters"], images, labels, *statistics))


HANDOFF_AT = 0.75  # the BN network's checkpoints up to 75% of training go to the baseline's worker


def train_and_evaluate(batch_norm, config, handoff=None, report=None):
    """One network of the experiment: trained, then evaluated at its checkpoints (one worker's share).

    ``handoff``, a queue between the two workers, balances them. The BN network trains longer (its steps
    cost more), so the baseline's worker, once done with its own network, evaluates BN checkpoints too:
    those up to ``HANDOFF_AT`` of training, sent while the BN network trains on, then, after training, the
    later half of the rest. It returns them as ``bn_accuracy`` and ``bn_percentiles``, at the checkpoints
    ``bn_evaluated``; the BN worker's own ``accuracy`` and ``percentiles`` are at ``evaluated``.
    """
    train_images, train_labels = load_mnist(train=True)
    test_images, test_labels = load_mnist(train=False)
    early = int(HANDOFF_AT * config.checkpoints)
    send_early = handoff is not None and batch_norm

    def at_checkpoint(c, so_far):
        if c == early:
            handoff.put(bn_checkpoints({key: value.numpy() for key, value in so_far.items()}, config))

    with small_model_settings():
        run = train_network(train_images, train_labels, batch_norm, config.steps, config.batch_size, config.lr,
                            config.init_std, config.seed, config.checkpoints, report,
                            at_checkpoint if send_early else None)
        run = {key: value.numpy() for key, value in run.items()}
        share = bn_checkpoints(run, config) if batch_norm else {"first": 0, "parameters": run["parameters"]}
        if send_early:  # the BN worker keeps the first half of the checkpoints after the early ones
            first = early + 1
            split = first + (len(run["parameters"]) - first + 1) // 2
            handoff.put(part(share, split))
            share = part(share, first, split)
        run["evaluated"], run["accuracy"], run["percentiles"] = evaluate_share(share, test_images, test_labels)
        if handoff is not None and not batch_norm:
            parts = [evaluate_share(handoff.get(), test_images, test_labels) for _ in range(2)]
            run["bn_evaluated"], run["bn_accuracy"], run["bn_percentiles"] = (np.concatenate(v) for v in zip(*parts))
    return {key: torch.as_tensor(value) for key, value in run.items()}  # tensors travel between processes fast


def default_workers(config):
    """2 (a process per network) for a run of at least ``TWO_PROCESSES_FROM`` examples per network, else 1."""
    return 2 if config.steps * config.batch_size >= TWO_PROCESSES_FROM else 1


@experiment("paper_mnist", PaperRun)
def run_paper_experiment(config, progress=True, workers=None):
    """Train both networks and evaluate them at the checkpoints (cached). ``config``: a ``PaperRun``, by
    default the paper's setup (``PAPER``).

    Returns a dict of numpy arrays: ``steps`` (C+1,), ``accuracy`` (C+1, 2) [baseline, BN],
    ``percentiles`` (C+1, 2, 3, 100), ``baseline_parameters`` and ``bn_parameters`` (C+1, P) (flat, see
    ``fast_trainer.parameter_views``), ``batch_mean`` / ``batch_var`` (steps, 3, 100) (biased), ``batch_size``,
    and ``seconds`` the time it took (training and evaluation, both networks at once).

    With ``workers=2`` the two networks train in two processes at once, one each, and the baseline's
    process, done first, also evaluates most of the BN network's checkpoints; with 1, one after the other
    in this process; by default, ``default_workers(config)``. Both run the same code on one thread each, so
    the results agree up to floating-point rounding (bit for bit on the same machine).
    """
    from tqdm.auto import tqdm

    start = time.perf_counter()
    workers = default_workers(config) if workers is None else workers
    if workers == 2:
        handoff = process_context().Queue()
        tasks = [(train_and_evaluate, (batch_norm, config, handoff)) for batch_norm in (False, True)]
        runs = run_in_processes(tasks, total=2 * config.steps, desc="training both networks", progress=progress)
    elif workers == 1:
        with tqdm(total=2 * config.steps, desc="training both networks", disable=not progress) as bar:
            runs = [train_and_evaluate(batch_norm, config, None, bar.update) for batch_norm in (False, True)]
    else:
        raise ValueError(f"workers must be 1 or 2 (one process per network); got {workers!r}")
    baseline, batch_norm = ({key: value.numpy() for key, value in run.items()} for run in runs)
    bn_accuracy, bn_percentiles = batch_norm["accuracy"], batch_norm["percentiles"]
    if "bn_evaluated" in baseline:  # the BN checkpoints each worker evaluated, back in order
        order = np.argsort(np.concatenate([batch_norm["evaluated"], baseline["bn_evaluated"]]))
        bn_accuracy, bn_percentiles = (np.concatenate([batch_norm[key], baseline[f"bn_{key}"]])[order]
                                       for key in ("accuracy", "percentiles"))
    return {"steps": baseline["steps"], "batch_size": np.array(config.batch_size),
            "accuracy": np.stack([baseline["accuracy"], bn_accuracy], axis=1),
            "percentiles": np.stack([baseline["percentiles"], bn_percentiles], axis=1),
            "baseline_parameters": baseline["parameters"], "bn_parameters": batch_norm["parameters"],
            "batch_mean": batch_norm["batch_mean"], "batch_var": batch_norm["batch_var"],
            "seconds": np.array(time.perf_counter() - start)}


def findings(result):
    """What the run shows, the paper's claims as numbers: accuracies, speed of learning, drift per network."""
    steps, accuracy, percentiles = result["steps"], result["accuracy"], result["percentiles"]
    baseline_final, bn_final = (float(a) for a in accuracy[-1])
    start = DRIFT_START * steps[-1]
    return {
        "final_accuracy": {"baseline": baseline_final, "batch norm": bn_final},
        "steps_to_baseline_final": {"baseline": drift.steps_to_reach(accuracy[:, 0], steps, baseline_final),
                                    "batch norm": drift.steps_to_reach(accuracy[:, 1], steps, baseline_final)},
        "drift": {name: drift.network_drift(percentiles[:, net], steps, start) for net, name in enumerate(NETWORKS)},
        "typical_unit": {name: drift.typical_unit(percentiles[:, net], steps, start) for net, name in enumerate(NETWORKS)},
    }
