"""Batch-size explorer: the paper's MNIST experiment, shorter, at the batch size you pick.

Batch norm estimates each unit's mean and variance from the mini-batch. With 60 examples the estimate
is good; with 2 or 4 it is so noisy that the normalization itself becomes noise, and the network trains
on a moving target. Each choice runs ``run_paper_experiment`` with fewer steps (a progress bar shows;
a few seconds to a minute) and caches it, so coming back to a batch size is instant.
"""

from ipywidgets import Dropdown, Output

from bnlib.course.ch06.figures import figure1
from bnlib.course.ch06.paper import findings, run_paper_experiment
from bnlib.course.widgets.explorer import Explorer

BATCH_SIZES = (2, 4, 8, 16, 32, 60, 128, 256)
SHORT_RUN = {"steps": 3_000, "checkpoints": 30}


def batch_size_explorer(batch_size=60, steps=SHORT_RUN["steps"], checkpoints=SHORT_RUN["checkpoints"]):
    """Pick a batch size; see both networks' accuracy and a typical unit's sigmoid-input percentiles."""

    progress = Output()  # the training's progress bar shows here, under the plot

    def draw(batch_size):
        progress.clear_output()
        with progress:
            result = run_paper_experiment(batch_size=batch_size, steps=steps, checkpoints=checkpoints)
        facts = findings(result)
        figure, _ = figure1(result, facts)
        # A short run can leave a network near chance (0.1) for most of it: show every point of both curves.
        figure.axes[0].set_ylim(max(0.0, float(result["accuracy"].min()) - 0.05), 1.0)
        figure.suptitle(f"batch size {batch_size}, {steps:,} steps", fontsize=10)
        final = facts["final_accuracy"]
        text = (f"batch size {batch_size}: after {steps:,} steps, test accuracy {final['baseline']:.2%} without BN, "
                f"{final['batch norm']:.2%} with BN; drift of the sigmoid inputs {facts['drift']['baseline']:.2f} "
                f"without BN, {facts['drift']['batch norm']:.2f} with BN.")
        return figure, text

    controls = {"batch_size": Dropdown(options=BATCH_SIZES, value=batch_size, description="batch size")}
    explorer = Explorer(controls, draw)
    explorer.children = (*explorer.children, progress)
    return explorer
