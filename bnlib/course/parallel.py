"""Run work in separate processes: independent tasks one per core, or the ranks of a process group.

``run_in_processes`` runs independent computations, such as the two networks of the paper's experiment,
one per core: small networks train fastest on one thread each (``training.small_model_settings``), so two
of them use both cores in two processes. Each task ``(function, args)`` is called as
``function(*args, report)``, where ``report(n)`` adds n steps to one progress bar drawn by the parent (a
notebook shows it under the cell).

``run_on_ranks`` runs ``fn(rank, world_size, *args)`` in ``world_size`` processes that first join one
``torch.distributed`` process group on 127.0.0.1: distributed training on one machine (chapter 9, the
tests of ``bnlib.SyncBatchNorm``). Its collectives give up after ``timeout`` seconds, so a failed rank
makes the others fail instead of hang. A rank reports progress with ``report_progress(n)``, drawn by the
parent as one bar when ``run_on_ranks`` is given ``total``.

Either way each process is forked from a server process that has imported torch and nothing else of ours
(multiprocessing's "forkserver", started once per calling process): it starts in a fraction of a second
instead of importing torch anew (about 2 CPU-seconds), inherits no thread pool (the server never
computes), takes the caller's environment variables and working folder of the moment, and imports the
course's modules fresh from disk, so an edited module takes effect as in a new Python. It imports the
functions by name, so these must live in an importable module, never in a notebook cell or the script
being run. Results travel back through ``torch.save`` into a scratch file, not through the
message pipe: tensors of hundreds of megabytes then take a fraction of a second (numpy arrays are pickled,
far slower; return tensors). An error in a worker is raised in the parent with the worker's traceback.
"""

import math
import multiprocessing
import os
import queue
import socket
import tempfile
import time
import traceback
from datetime import timedelta
from pathlib import Path

import torch


# What the server process imports once: the caller's main module (as "spawn" would import it into every
# process) and torch. Never a module of the course: the processes import those from disk, as edited.
PRELOAD = ["__main__", "torch"]
START_METHOD = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"  # Windows: spawn


def process_context():
    """The multiprocessing context every process of the course starts from (see above); its queues too."""
    context = multiprocessing.get_context(START_METHOD)
    if START_METHOD == "forkserver":
        context.set_forkserver_preload(PRELOAD)  # read when the server starts, on the first start
    return context


def _importable(function):
    if getattr(function, "__module__", None) == "__main__":
        raise ValueError(f"work for other processes must be a function from an importable module (a .py file "
                         f"you import): the new processes import it by name, and {function.__qualname__} is "
                         f"defined in __main__ (a notebook, or the script being run)")


_report = None  # in a process started here: adds n steps to the parent's progress bar


def report_progress(n=1):
    """Add ``n`` steps to the parent's progress bar, from a rank of ``run_on_ranks`` (elsewhere: nothing)."""
    if _report is not None:
        _report(n)


def _worker(index, function, args, messages, setup, scratch, environment):
    """One process: ``setup()`` if any, then ``function(*args)``, or ``function(*args, report)`` when there
    is no setup (an independent task); saves the result as ``scratch/<index>.pt`` and answers
    ``(kind, index, payload)`` on ``messages``. ``environment``: the caller's variables (the server process
    has those of the moment it started)."""
    global _report
    os.environ.clear()
    os.environ.update(environment)

    def report(n):
        messages.put(("progress", index, n))
    _report = report
    try:
        if setup is None:
            result = function(*args, _report)
        else:
            setup()
            result = function(*args)
        torch.save(result, Path(scratch) / f"{index}.pt")
        messages.put(("result", index, None))
    except BaseException:  # reported to the parent, which raises it
        messages.put(("error", index, traceback.format_exc()))
    finally:
        if setup is not None and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def _run(targets, on_progress=lambda n: None, grace=0.0):
    """Start one process per ``(function, args, setup)``; return the results in order, or raise with every
    failure. After the first failure the others get ``grace`` seconds to finish or fail, then are killed."""
    with tempfile.TemporaryDirectory(prefix="bnlib-results-") as scratch:
        return _run_in(Path(scratch), targets, on_progress, grace)


def _run_in(scratch, targets, on_progress, grace):
    """``_run`` with the workers' results saved in the folder ``scratch``."""
    context = process_context()
    messages, environment = context.Queue(), dict(os.environ)
    processes = [context.Process(target=_worker, daemon=True,
                                 args=(index, function, args, messages, setup, str(scratch), environment))
                 for index, (function, args, setup) in enumerate(targets)]
    results, failures, deadline = {}, {}, math.inf
    for process in processes:
        process.start()
    try:
        while len(results) + len(failures) < len(targets) and time.monotonic() < deadline:
            try:
                kind, index, payload = messages.get(timeout=1.0)
            except queue.Empty:  # a process that died without answering (killed, out of memory) failed too
                failures.update({index: f"exited with code {process.exitcode} without an answer"
                                 for index, process in enumerate(processes)
                                 if process.exitcode is not None and index not in results | failures})
            else:
                if kind == "progress":
                    on_progress(payload)
                elif kind == "error":
                    failures[index] = payload
                else:
                    results[index] = torch.load(scratch / f"{index}.pt", weights_only=False)
            if failures and deadline == math.inf:  # the others may be waiting on the failed one
                deadline = time.monotonic() + grace
    finally:
        for process in processes:
            process.join(timeout=5.0 if len(results) == len(targets) else 0.1)
            if process.is_alive():
                process.kill()
                process.join()
    failures.update({index: f"no result within {grace} s of another's failure"
                     for index in set(range(len(targets))) - set(results) - set(failures)})
    if failures:
        raise RuntimeError("".join(f"\nprocess {index} of {len(targets)} failed: {failures[index]}"
                                   for index in sorted(failures)))
    return [results[index] for index in range(len(targets))]


def run_in_processes(tasks, total=None, desc="working", progress=True):
    """The results of ``tasks`` [(function, args), ...], each run in its own process, in order.

    ``total`` is the number of steps all reports add up to (None: a bar without an end).
    """
    from tqdm.auto import tqdm

    for function, _ in tasks:
        _importable(function)
    with tqdm(total=total, desc=desc, unit="step", disable=not progress, mininterval=0.5) as bar:
        return _run([(function, args, None) for function, args in tasks], on_progress=bar.update)


class _JoinGroup:
    """What a rank does first: join the gloo (or other ``backend``) process group on 127.0.0.1:port."""

    def __init__(self, backend, port, rank, world_size, timeout):
        self.backend, self.port, self.rank, self.world_size, self.timeout = backend, port, rank, world_size, timeout

    def __call__(self):
        torch.distributed.init_process_group(self.backend, init_method=f"tcp://127.0.0.1:{self.port}",
                                             rank=self.rank, world_size=self.world_size,
                                             timeout=timedelta(seconds=self.timeout))


def run_on_ranks(fn, world_size, *args, backend="gloo", timeout=60.0, total=None, desc="ranks"):
    """``[fn(rank, world_size, *args) for rank in range(world_size)]``, each rank in its own process, together.

    Every process joins one ``backend`` process group on 127.0.0.1 (a free port) whose collectives give up
    after ``timeout`` seconds. If a rank raises, the others get that long to finish or fail, then are
    killed, and a RuntimeError gives every failed rank's traceback. With ``total`` (the number of steps the
    ranks' ``report_progress`` calls add up to), a progress bar ``desc`` shows them.
    """
    from tqdm.auto import tqdm

    _importable(fn)
    with socket.socket() as probe:  # a free port: let the system pick one
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    targets = [(fn, (rank, world_size, *args), _JoinGroup(backend, port, rank, world_size, timeout))
               for rank in range(world_size)]
    try:
        with tqdm(total=total, desc=desc, unit="step", disable=total is None, mininterval=0.5) as bar:
            return _run(targets, on_progress=bar.update, grace=timeout + 5.0)
    except RuntimeError as error:
        raise RuntimeError(str(error).replace("\nprocess ", "\nrank ")) from None


def split_by_cost(costs, processes=2):
    """The names of ``costs`` ({name: cost}) in ``processes`` lists of about equal total cost, each list given the
    most costly name left in turn to the cheapest list so far; empty lists are left out."""
    parts = [[] for _ in range(processes)]
    for name in sorted(costs, key=lambda name: -costs[name]):
        min(parts, key=lambda part: sum(costs[n] for n in part)).append(name)
    return [part for part in parts if part]
