"""Every run of the chapter, computed in two processes the first time (one per core), cached after.

The chapter trains 62 small networks on MNIST, about 2 CPU-minutes in all: the small-batch grid (30 runs of
500 steps), the learning-rate sweep of the residual nets (32 runs of up to 200 steps) and one forward pass
through seven deep nets. Each is cached on its own (``bnlib.course.cache``); ``compute_all`` computes those not
cached yet, shared between two processes by their cost, then every section of the notebook loads its result
in a moment.
"""

from bnlib.course.ch11.renorm import GRID, run_grid
from bnlib.course.ch11.residual import VarianceRun, run_variance
from bnlib.course.ch11.sweep import SWEEP, run_sweep
from bnlib.course.parallel import run_in_processes, split_by_cost

# name: (experiment, settings, steps it reports, its cost in CPU-seconds as measured: shares the processes)
EXPERIMENTS = {
    "grid": (run_grid, GRID, GRID.steps * len(GRID.norms) * len(GRID.compositions) * len(GRID.batch_sizes), 60),
    "sweep": (run_sweep, SWEEP, SWEEP.steps * len(SWEEP.variants) * len(SWEEP.lrs), 45),
    "variance": (run_variance, VarianceRun(), 0, 2),
}


def compute_part(names, report):
    """In a worker process: compute (and cache) the experiments ``names``; the parent loads them from the cache."""
    for name in names:
        run, config, steps, _ = EXPERIMENTS[name]
        run(config, report=report) if steps else run(config)  # (the variance's one forward pass reports nothing)


def compute_all(progress=True):
    """Compute the experiments not cached yet, in two processes; return the names of those computed."""
    missing = [name for name, (run, config, _, _) in EXPERIMENTS.items() if not run.is_cached(config)]
    if missing:
        parts = split_by_cost({name: EXPERIMENTS[name][3] for name in missing})
        run_in_processes([(compute_part, (part,)) for part in parts],
                         total=sum(EXPERIMENTS[name][2] for name in missing), desc="chapter 11's runs",
                         progress=progress)
    return missing
