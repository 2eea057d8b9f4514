"""Regenerate the course's figures into ``figures/``: ``python -m bnlib.figures [--list] [NAME ...]``.

Each course module that draws figures keeps a ``FIGURES`` dict mapping a figure name to a function
returning ``(matplotlib Figure, data)``. The figure is written as ``figures/NAME.png``; when ``data``
is not None (the plotted numbers), it is written beside it as ``figures/NAME.json``.
"""

import argparse
import importlib
import json
from pathlib import Path

import numpy as np

from bnlib.course.data import project_root

FIGURE_MODULES = [
    "bnlib.course.ch03.step_by_step",
    "bnlib.course.ch04.reparameterization",
    "bnlib.course.ch04.placement",
    "bnlib.course.ch05.ema",
    "bnlib.course.ch01.input_normalization",
    "bnlib.course.ch02.covariate_shift",
    "bnlib.course.ch05.inference",
    "bnlib.course.ch07.small_batches", "bnlib.course.ch07.batch_composition", "bnlib.course.ch07.landscape", "bnlib.course.ch07.norm_alternatives",
    "bnlib.course.plots",
]


def all_figures():
    figures = {}
    for module in FIGURE_MODULES:
        figures.update(importlib.import_module(module).FIGURES)
    return figures


def to_json(value):
    if isinstance(value, dict):
        return {str(key): to_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(item) for item in value]
    if isinstance(value, np.ndarray) or hasattr(value, "tolist"):
        return value.tolist()
    return value


def write_figure(name, make, out_dir):
    figure, data = make()  # a matplotlib.figure.Figure, outside pyplot: nothing to close
    out_dir.mkdir(parents=True, exist_ok=True)
    figure.savefig(out_dir / f"{name}.png", dpi=120, bbox_inches="tight")
    if data is not None:
        (out_dir / f"{name}.json").write_text(json.dumps(to_json(data), indent=1) + "\n")
    return out_dir / f"{name}.png"


def main(argv=None):
    from tqdm.auto import tqdm

    parser = argparse.ArgumentParser(prog="python -m bnlib.figures", description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="figures to regenerate (default: all)")
    parser.add_argument("--list", action="store_true", help="list the figures and exit")
    parser.add_argument("--out", default=str(project_root() / "figures"), help="output folder")
    args = parser.parse_args(argv)
    figures = all_figures()
    if args.list:
        print("\n".join(figures))
        return 0
    unknown = [name for name in args.names if name not in figures]
    if unknown:
        parser.error(f"unknown figure(s): {', '.join(unknown)}; `--list` names the figures")
    names = args.names or list(figures)
    for name in tqdm(names, desc="figures", unit="figure"):
        path = write_figure(name, figures[name], Path(args.out))
        tqdm.write(f"wrote {path}")
    return 0

