"""``python -m bnlib.bench [--json] [--threads N] [KEY ...]``: run the benchmarks, print a table or JSON.

Benchmarks that need MNIST are skipped, with a message on stderr, when MNIST is not available; the
others still run.
"""

import argparse
import json
import sys

import torch

import bnlib.bench
from bnlib.course.data import MNISTUnavailable


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bnlib.bench", description="Run the course's benchmarks.")
    parser.add_argument("keys", nargs="*", help="benchmarks to run (default: all)")
    parser.add_argument("--json", action="store_true", help="print one JSON object {key: number}")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's default); 1 gives "
                        "steadier numbers on a busy machine")
    benchmarks = bnlib.bench.BENCHMARKS
    args = parser.parse_args(argv)
    unknown = [key for key in args.keys if key not in benchmarks]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(benchmarks)}")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    results = {}
    for key in args.keys or benchmarks:
        try:
            results[key] = round(benchmarks[key](), 4)
        except MNISTUnavailable as err:
            print(f"skipped {key}: it needs MNIST ({err})", file=sys.stderr, flush=True)
            continue
        if not args.json:
            print(f"{key:<28} {results[key]:>10.4g}   {benchmarks[key].__doc__.splitlines()[0]}", flush=True)
    if args.json:
        print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
