"""The course's figures: ``python -m bnlib.figures [--list] [--jobs N] [NAME ...]`` regenerates them.

Each course module that draws figures keeps a ``FIGURES`` dict mapping a figure name to a function
returning ``(matplotlib Figure, data)``. The figure is written as ``figures/NAME.png``; when ``data``
is not None (the plotted numbers), it is written beside it as ``figures/NAME.json``, every number
rounded to ``SIGNIFICANT`` significant digits, so that regenerating on another machine changes the file
only where a number really changed.
"""

import dataclasses
import importlib
import json
import math

FIGURE_MODULES = [
    "bnlib.course.ch01.input_normalization",
    "bnlib.course.ch02.covariate_shift",
    "bnlib.course.ch03.step_by_step",
    "bnlib.course.ch04.reparameterization", "bnlib.course.ch04.placement",
    "bnlib.course.ch05.ema", "bnlib.course.ch05.inference",
    "bnlib.course.ch06.figures",
    "bnlib.course.ch07.small_batches", "bnlib.course.ch07.batch_composition", "bnlib.course.ch07.landscape",
    "bnlib.course.ch07.learning_rate", "bnlib.course.ch07.norm_alternatives",
    "bnlib.course.ch08.figures",
    "bnlib.course.ch09.devices", "bnlib.course.ch09.ghost",
    "bnlib.course.ch10.figures",
    "bnlib.course.ch11.figures",
]
SIGNIFICANT = 6


def all_figures():
    figures = {}
    for module in FIGURE_MODULES:
        figures.update(importlib.import_module(module).FIGURES)
    return figures


def to_json(value):
    """``value`` as JSON data: arrays as lists, an experiment's settings (a dataclass) as a dict of its fields,
    floats to ``SIGNIFICANT`` significant digits."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_json(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(key): to_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(item) for item in value]
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        return to_json(value.tolist())
    if isinstance(value, float) and math.isfinite(value):
        return float(f"{value:.{SIGNIFICANT}g}")
    return value


def write_figure(name, out_dir):
    """Draw figure ``name`` and write ``NAME.png`` (and ``NAME.json``) into ``out_dir``; returns the PNG's path."""
    figure, data = all_figures()[name]()  # a matplotlib.figure.Figure, outside pyplot: nothing to close
    out_dir.mkdir(parents=True, exist_ok=True)
    figure.savefig(out_dir / f"{name}.png", dpi=120, bbox_inches="tight", metadata={"Software": None})
    if data is not None:
        (out_dir / f"{name}.json").write_text(json.dumps(to_json(data), indent=1, allow_nan=True) + "\n")
    return out_dir / f"{name}.png"
