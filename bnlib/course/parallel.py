"""Run independent computations in separate processes, one per core, with one progress bar in the notebook.

Small networks train fastest on one thread each (``training.small_model_settings``), so two independent
computations, such as the two networks of the paper's experiment, use both cores by running in two
processes. Each task is ``(function, args)``; the function is called as ``function(*args, report)`` in a
fresh process ("spawn": no thread pool state inherited from the parent), where ``report(n)`` adds ``n``
to the shared progress bar drawn by the parent (a notebook shows it under the cell). The functions must
live in an importable module, never in a notebook cell. An error in a worker is raised in the parent with
the worker's traceback.
"""

import multiprocessing
import queue
import traceback


def _worker(index, function, args, messages):
    try:
        result = function(*args, lambda n: messages.put(("progress", index, n)))
        messages.put(("result", index, result))
    except BaseException:  # reported to the parent, which raises it
        messages.put(("error", index, traceback.format_exc()))


def run_in_processes(tasks, total=None, desc="working", progress=True):
    """The results of ``tasks`` [(function, args), ...], each run in its own process, in order.

    ``total`` is the number of steps all reports add up to (None: a bar without an end).
    """
    from tqdm.auto import tqdm

    context = multiprocessing.get_context("spawn")
    messages = context.Queue()
    processes = [context.Process(target=_worker, args=(index, function, args, messages), daemon=True)
                 for index, (function, args) in enumerate(tasks)]
    results = {}
    with tqdm(total=total, desc=desc, unit="step", disable=not progress, mininterval=0.5) as bar:
        for process in processes:
            process.start()
        try:
            while len(results) < len(tasks):
                try:
                    kind, index, payload = messages.get(timeout=1.0)
                except queue.Empty:
                    dead = [i for i, p in enumerate(processes) if not p.is_alive() and i not in results]
                    if dead and messages.empty():
                        raise RuntimeError(f"worker process {dead[0]} ended without a result "
                                           f"(exit code {processes[dead[0]].exitcode}; its error output is above)") from None
                    continue
                if kind == "progress":
                    bar.update(payload)
                elif kind == "error":
                    raise RuntimeError(f"worker process {index} failed:\n{payload}")
                else:
                    results[index] = payload
        finally:
            for process in processes:
                if process.is_alive() and len(results) < len(tasks):
                    process.terminate()
                process.join()
    return [results[index] for index in range(len(tasks))]
