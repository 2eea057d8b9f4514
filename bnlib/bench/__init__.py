"""Benchmarks of the course's code: ``python -m bnlib.bench [--json] [KEY ...]``.

Each benchmark is a function returning one number, registered under its key in ``BENCHMARKS``; adding
a benchmark is adding one entry. ``--json`` prints one JSON object ``{key: number}``; without it, a
table. Run benchmarks one at a time on a quiet machine: timings share the CPU with everything else.
"""

import argparse
import json
import statistics
import time

import torch

from bnlib.layers import BatchNorm1d, BatchNorm2d
from bnlib.bench.paper import paper_full_seconds, paper_step_speedup_vs_naive


def seconds_per_call(call, number):
    start = time.perf_counter()
    for _ in range(number):
        call()
    return (time.perf_counter() - start) / number


def fwd_bwd_ratio(ours_cls, torch_cls, shape, repeats, number, seed=0):
    """bnlib's forward+backward time over torch's, training mode, float32 on the CPU, same inputs.

    The two layers take turns, ``number`` calls each per repeat, so that each repeat gives a ratio of
    two neighbouring measurements; the median of those ratios shrugs off moments when the machine is
    busy with something else.
    """
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=generator).requires_grad_()
    upstream = torch.randn(shape, generator=generator)
    layers = {"ours": ours_cls(shape[1]), "torch": torch_cls(shape[1])}
    steps = {name: (lambda layer=layer: torch.autograd.backward(layer(x), upstream))
             for name, layer in layers.items()}
    for step in steps.values():
        seconds_per_call(step, number)  # warm up: allocator, thread pool, caches
    ratios = [seconds_per_call(steps["ours"], number) / seconds_per_call(steps["torch"], number)
              for _ in range(repeats)]
    return statistics.median(ratios)


def bn_fwd_bwd_ratio_2d():
    """BatchNorm2d forward+backward time, bnlib / torch, float32 (64, 64, 28, 28)"""
    return fwd_bwd_ratio(BatchNorm2d, torch.nn.BatchNorm2d, (64, 64, 28, 28), repeats=31, number=1)


def bn_fwd_bwd_ratio_1d():
    """BatchNorm1d forward+backward time, bnlib / torch, float32 (256, 100)"""
    return fwd_bwd_ratio(BatchNorm1d, torch.nn.BatchNorm1d, (256, 100), repeats=201, number=10)


BENCHMARKS = {
    "bn_fwd_bwd_ratio_2d": bn_fwd_bwd_ratio_2d,
    "bn_fwd_bwd_ratio_1d": bn_fwd_bwd_ratio_1d,
    "paper_full_seconds": paper_full_seconds,
    "paper_step_speedup_vs_naive": paper_step_speedup_vs_naive,
}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bnlib.bench", description=__doc__.splitlines()[0])
    parser.add_argument("keys", nargs="*", help=f"benchmarks to run (default: all): {', '.join(BENCHMARKS)}")
    parser.add_argument("--json", action="store_true", help="print one JSON object {key: number}")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's default); 1 gives "
                        "steadier numbers on a busy machine")
    args = parser.parse_args(argv)
    unknown = [key for key in args.keys if key not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    results = {}
    for key in args.keys or BENCHMARKS:
        results[key] = round(BENCHMARKS[key](), 4)
        if not args.json:
            print(f"{key:<28} {results[key]:>10.4g}   {BENCHMARKS[key].__doc__.splitlines()[0]}", flush=True)
    if args.json:
        print(json.dumps(results))
    return 0

