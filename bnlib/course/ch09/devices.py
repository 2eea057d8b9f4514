"""Per-device statistics against synchronized ones, on MNIST: real processes, and a grid of settings.

``ddp_runs`` trains with real processes (``run_on_ranks``, gloo on the CPU): per-device batch norm on iid
and on class-sorted shards, and ``SyncBatchNorm``. ``simulate`` computes the same runs in one process:
per-device batch norm is ghost batch norm whose ghost batches are the shards, with the running statistics
of the first (rank 0's, which DDP broadcasts); synchronized batch norm is plain batch norm on the whole
batch. ``ddp_runs`` checks that the two agree (the same weights, to float64 rounding), so ``device_grid``
can fill a grid of device counts and skews in one process per core, without the cost of the exchanges.
"""

from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
from matplotlib.figure import Figure

from bnlib.course.cache import experiment
from bnlib.course.ch09 import ddp
from bnlib.course.ch09.evaluation import RUN, TrainingRun, flat_state, initial_model, measure, training_data
from bnlib.course.ch09.ghost import with_ghost_batches
from bnlib.course.ch09.shards import check_split, classes_per_device, sharded_batches
from bnlib.course.parallel import run_in_processes, run_on_ranks
from bnlib.course.training import train_mlp


@dataclass(frozen=True)
class DdpRuns(TrainingRun):
    """The DDP runs' settings: the chapter's training (``TrainingRun``) on ``world_size`` processes, once per
    ``(mode, skew)`` of ``runs`` (mode "per-device" or "sync", skew of the shards in [0, 1])."""

    world_size: int = 2
    runs: tuple = (("per-device", 0.0), ("per-device", 1.0), ("sync", 1.0))

    def __post_init__(self):
        for mode, skew in self.runs:
            if mode not in ddp.MODES:
                raise ValueError(f"mode must be one of {ddp.MODES}; got {mode!r} in runs")
            check_split(self.world_size, skew, self.batch_size)


@dataclass(frozen=True)
class GridRun(TrainingRun):
    """The grid's settings: the chapter's training (``TrainingRun``) split between each number of ``devices``
    at each of ``skews``."""

    devices: tuple = (2, 4, 6, 10)
    skews: tuple = (0.0, 0.5, 0.75, 1.0)

    def __post_init__(self):
        for world_size in self.devices:
            for skew in self.skews:
                check_split(world_size, skew, self.batch_size)


DDP_CONFIG = DdpRuns()
GRID_CONFIG = GridRun()


def simulate(mode, world_size, skew, config=RUN, progress=None):
    """The model DDP training in ``mode`` leaves on rank 0, computed in this process on the whole batch.

    Trained with ghost batches for per-device batch norm; returned, like rank 0's, with plain batch norm
    layers holding the trained parameters and running statistics."""
    images, labels = training_data()
    shards = sharded_batches(labels, world_size, skew, config.batch_size, config.steps, config.seed)
    model = initial_model(config.seed)
    trained = model
    if mode == "per-device":
        trained = with_ghost_batches(initial_model(config.seed), config.batch_size // world_size, "first")
    train_mlp(trained, images, labels, [[step.reshape(-1)] for step in shards], config.lr, progress=progress)
    model.load_state_dict(trained.state_dict())
    return model


@experiment("ch09_ddp_runs", DdpRuns)
def ddp_runs(config):
    """Each of ``config.runs`` ((mode, skew) pairs) trained on ``world_size`` processes (cached).

    Per run: ``measure``'s numbers for rank 0's model, seconds per training step, the largest difference
    between the ranks' running means (DDP keeps one copy of the weights, not of the buffers), and the
    largest difference from ``simulate``'s model (weights and running statistics).
    """
    runs, world_size = config.runs, config.world_size
    ranks = run_on_ranks(ddp.train_runs, world_size, runs, config, timeout=300,
                         total=len(runs) * config.steps, desc=f"DDP on {world_size} processes")
    result = {key: [] for key in ("accuracy", "population_accuracy", "error", "seconds_per_step",
                                  "rank_difference", "simulation_difference")}
    for index, (mode, skew) in enumerate(runs):
        states = [rank[index][0] for rank in ranks]
        model = initial_model(config.seed)
        model.load_state_dict(states[0])
        for key, value in measure(model).items():
            result[key].append(value)
        result["seconds_per_step"].append(max(rank[index][1] for rank in ranks))
        result["rank_difference"].append(max((state["1.running_mean"] - states[0]["1.running_mean"]).abs().max().item()
                                             for state in states))
        simulated = simulate(mode, world_size, skew, config)
        result["simulation_difference"].append(np.abs(flat_state(model) - flat_state(simulated)).max())
    return {"modes": [mode for mode, _ in runs], "skews": [skew for _, skew in runs], **result}


def grid_part(settings, config, report):
    """``measure`` after ``simulate`` for each ``(mode, world_size, skew)`` of ``settings``, in turn."""
    progress = SimpleNamespace(update=report)  # what train_mlp calls, once per step
    return [measure(simulate(mode, world_size, skew, config, progress)) for mode, world_size, skew in settings]


@experiment("ch09_device_grid", GridRun)
def device_grid(config, processes=2):
    """Per-device batch norm for every device count and skew of the grid, and synchronized batch norm
    (the same for all: the global batches do not change), simulated in ``processes`` processes (cached).

    Arrays over (devices, skews): ``accuracy``, ``population_accuracy``, ``classes_per_device``, and
    ``error`` (devices, skews, layers); ``sync_accuracy``, ``sync_population_accuracy``, ``sync_error``.
    """
    settings = [("sync", 1, 0.0)] + [("per-device", k, skew) for k in config.devices for skew in config.skews]
    parts = [settings[part::processes] for part in range(processes)]
    done = run_in_processes([(grid_part, (part, config)) for part in parts], total=len(settings) * config.steps,
                            desc="devices x skews")
    found = {setting: result for part, results in zip(parts, done) for setting, result in zip(part, results)}
    _, labels = training_data()
    shape = (len(config.devices), len(config.skews))
    grid = {"devices": config.devices, "skews": config.skews, "classes_per_device": np.zeros(shape)}
    for key in ("accuracy", "population_accuracy", "error"):
        grid[key] = np.array([[found[("per-device", k, skew)][key] for skew in config.skews]
                              for k in config.devices])
        grid[f"sync_{key}"] = found[("sync", 1, 0.0)][key]
    for i, k in enumerate(config.devices):
        for j, skew in enumerate(config.skews):
            shards = sharded_batches(labels, k, skew, config.batch_size, config.steps, config.seed)
            grid["classes_per_device"][i, j] = classes_per_device(labels, shards)
    return grid


def device_figure():
    """Normalization error of the running statistics and test accuracy against the skew of the shards."""
    grid = device_grid()
    skews, devices = grid["skews"], grid["devices"]
    figure = Figure(figsize=(8.4, 7))
    left, right = figure.subplots(2, 1)
    colors = [f"C{i}" for i in range(len(devices))]
    for k, color, error, accuracy in zip(devices, colors, grid["error"].mean(2), grid["accuracy"]):
        left.plot(skews, error, "o-", color=color, label=f"per device, {k} devices")
        right.plot(skews, 100 * accuracy, "o-", color=color, label=f"per device, {k} devices")
    left.axhline(grid["sync_error"].mean(), color="black", linestyle="--", label="synchronized (any split)")
    right.axhline(100 * grid["sync_accuracy"], color="black", linestyle="--", label="synchronized (any split)")
    left.set(ylabel="normalization error\n(mean over units, layers)", title="Running statistics as saved (rank 0's)")
    right.set(ylabel="test accuracy,\neval mode (%)", title="Accuracy with those statistics")
    for ax in (left, right):
        ax.set_xlabel("skew of the shards (0: iid, 1: sorted by class)")
        ax.set_xticks(skews)
    left.legend()
    figure.suptitle(f"Paper MLP on MNIST, global batch {RUN.batch_size} split between devices, {RUN.steps} steps")
    figure.tight_layout()
    data = {key: grid[key] for key in ("devices", "skews", "accuracy", "population_accuracy", "sync_accuracy",
                                       "sync_population_accuracy", "classes_per_device")}
    return figure, {**data, "error": grid["error"].mean(2), "sync_error": grid["sync_error"].mean()}


FIGURES = {"ch09_device_statistics": device_figure}
