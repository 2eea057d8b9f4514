"""The batch-coupling explorer of notebook 03: move one example, watch the others' outputs move in training mode.

A slider sets example 0's input, a chooser the batch size. Training-mode batch norm normalizes with the
batch's own statistics, so the other examples' outputs move with example 0; eval mode, with fixed running
statistics, leaves them where they were. The readout leads with how far the others moved.
"""

import ipywidgets as widgets
from matplotlib.figure import Figure

from bnlib.course.ch03 import batch_coupling as bc
from bnlib.course.explorer import Explorer


def batch_coupling_explorer(seed=0):
    """A slider for example 0's input and a batch-size chooser; number lines of the inputs and both modes'
    outputs, and the others' training-mode outputs against example 0's input."""
    figure = Figure(figsize=(8.4, 3.8), layout="constrained")
    axes = figure.subplots(1, 2, width_ratios=(1.3, 1))
    curves = {}

    def draw(moved_to, batch_size):
        if batch_size not in curves:
            curves[batch_size] = bc.train_curves(batch_size, seed)
        result = bc.coupling(batch_size, moved_to, seed)
        bc.draw_coupling(*axes, result, curves[batch_size])
        readout = (f"the other {batch_size - 1} examples' outputs moved by up to {result['train_shift']:.2f} in "
                   f"training mode, {result['eval_shift']:.2f} in eval mode; example 0 moved from "
                   f"{result['x'][0]:+.2f} to {moved_to:+.2f}")
        return figure, readout

    controls = {
        "moved_to": widgets.FloatSlider(value=4.0, min=bc.VALUES[0], max=bc.VALUES[-1], step=0.1,
                                        description="example 0", continuous_update=True),
        "batch_size": widgets.Dropdown(options=bc.BATCH_SIZES, value=8, description="batch size"),
    }
    return Explorer(controls, draw)
