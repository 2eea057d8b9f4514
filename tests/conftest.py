"""The test run shares the machine's cores between its workers.

- Threads: with ``pytest -n N`` each worker gets its share of the cores for torch's thread pool (one
  each on 2 cores with 2 workers), and so do the notebook kernels, servers and processes it starts (through
  ``OMP_NUM_THREADS``). Two workers with a pool of 2 threads each would fight over 2 cores, and a thread
  pool that waits for a busy core slows down far more than one that has a core to itself.
- Order: the browser tests start first, on one worker (one xdist group), while the other worker
  computes: they spend much of their time waiting for a page, a kernel or a timeout, and the second
  core fills those waits. Then the other slow tests (notebook runs, training on MNIST, several
  processes), and the quick ones come last, so that both workers stay busy to the end instead of one
  finishing a long test alone.
"""

import os

WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))
if WORKERS > 1:
    THREADS = max(1, (os.cpu_count() or 1) // WORKERS)
    os.environ["OMP_NUM_THREADS"] = str(THREADS)
    import torch

    torch.set_num_threads(THREADS)


def pytest_collection_modifyitems(items):
    def order(item):
        group = item.get_closest_marker("xdist_group")
        return (not (group and group.args[0] == "browser"), item.get_closest_marker("slow") is None)
    items.sort(key=order)  # stable: file order otherwise
