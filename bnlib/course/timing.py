"""A paired timer: how much longer one call takes than another, measured so that a busy machine does not
decide the answer. Used by the chapters that time something (folding BN into a conv) and by the benchmarks."""

import statistics
import time


def seconds_per_call(call, number):
    """Mean wall time of ``call()`` over ``number`` calls in a row."""
    start = time.perf_counter()
    for _ in range(number):
        call()
    return (time.perf_counter() - start) / number


def median_ratio(first, second, repeats, number):
    """Time of ``first()`` over ``second()``: the two take turns, ``number`` calls each per repeat (after a
    warm-up of each: allocator, thread pool, caches), so that each repeat gives a ratio of two neighbouring
    measurements; the median of those ratios shrugs off moments when the machine is busy with something else."""
    for call in (first, second):
        seconds_per_call(call, number)
    return statistics.median(seconds_per_call(first, number) / seconds_per_call(second, number)
                             for _ in range(repeats))
