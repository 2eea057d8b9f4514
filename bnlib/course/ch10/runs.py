"""Every run of the chapter, computed in two processes the first time (one per core), cached after.

The chapter's four experiments train about 40 small networks on MNIST, some 2 CPU-minutes in all. Each is
cached on its own (``bnlib.course.cache``); ``compute_all`` computes those not cached yet, shared between two
processes by their cost, then every section of the notebook loads its result in a moment.
"""

from bnlib.course.ch10.dynamics import GRID, run_grid
from bnlib.course.ch10.equivalence import EquivalenceRun, run_equivalence
from bnlib.course.ch10.gamma_beta import GammaBetaRun, run_gamma_beta
from bnlib.course.ch10.initialization import FAMILIES, InitSweep, run_init_sweep
from bnlib.course.parallel import run_in_processes, split_by_cost

# (name, experiment, settings, run-steps of training it takes): the cost that shares them between processes.
EXPERIMENTS = {
    "grid": (run_grid, GRID, GRID.steps * (len(GRID.lrs) * len(GRID.wds) + len(GRID.momentum_runs))),
    "equivalence": (run_equivalence, EquivalenceRun(),
                    EquivalenceRun().steps * sum(1 + len(scales) for _, _, scales in EquivalenceRun().cases)),
    "gamma_beta": (run_gamma_beta, GammaBetaRun(), GammaBetaRun().steps * 2 * len(GammaBetaRun().seeds)),
    "initialization": (run_init_sweep, InitSweep(), InitSweep().steps * len(FAMILIES) * len(InitSweep().scales)),
}


def compute_part(names, report):
    """In a worker process: compute (and cache) the experiments ``names``; the parent loads them from the cache."""
    for name in names:
        run, config, _ = EXPERIMENTS[name]
        run(config, report=report)


def compute_all(progress=True):
    """Compute the experiments not cached yet, in two processes; return the names of those computed."""
    missing = [name for name, (run, config, _) in EXPERIMENTS.items() if not run.is_cached(config)]
    if missing:
        parts = split_by_cost({name: EXPERIMENTS[name][2] for name in missing})
        run_in_processes([(compute_part, (part,)) for part in parts],
                         total=sum(EXPERIMENTS[name][2] for name in missing), desc="chapter 10's runs",
                         progress=progress)
    return missing
