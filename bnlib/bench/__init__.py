"""Benchmarks of the course's code: ``python -m bnlib.bench [--json] [KEY ...]``.

Each benchmark is a function returning one number, registered under its key in ``BENCHMARKS``; adding
a benchmark is adding one entry. Every timing is a ratio of two measurements taken in the same run, or
plainly labelled seconds. Run benchmarks on a quiet machine: timings share the CPU with everything else.
"""

from bnlib.bench.layers import bn_fwd_bwd_ratio_1d, bn_fwd_bwd_ratio_2d
from bnlib.bench.paper import paper_full_seconds, paper_parallel_speedup, paper_step_speedup_vs_naive
from bnlib.bench.sync import syncbn_overhead_2proc

BENCHMARKS = {
    "bn_fwd_bwd_ratio_2d": bn_fwd_bwd_ratio_2d,
    "bn_fwd_bwd_ratio_1d": bn_fwd_bwd_ratio_1d,
    "syncbn_overhead_2proc": syncbn_overhead_2proc,
    "paper_full_seconds": paper_full_seconds,
    "paper_parallel_speedup": paper_parallel_speedup,
    "paper_step_speedup_vs_naive": paper_step_speedup_vs_naive,
}
