"""The learning-rate explorer: gradient descent on raw or standardized features, at a learning rate you pick."""

import ipywidgets as widgets
from matplotlib.figure import Figure

from bnlib.course.ch01 import input_normalization as inorm
from bnlib.course.explorer import Explorer


def learning_rate_explorer(steps=200):
    """A log slider for the learning rate and a standardize toggle; the trajectory on the loss contours.

    The contours of each problem are drawn once; a change of the controls only reruns ``steps`` steps of
    gradient descent and moves the trajectory's line.
    """
    views = {}
    for normalize in (False, True):
        X, y = inorm.problem(normalize)
        figure = Figure(figsize=(5.2, 4.8), layout="constrained")
        ax = figure.subplots()
        line = inorm.draw_contours(ax, X, y)
        ax.legend(loc="upper right", fontsize=8)
        views[normalize] = (X, y, figure, ax, line)

    def draw(lr, normalize):
        X, y, figure, ax, line = views[normalize]
        weights, losses, diverged = inorm.gradient_descent(X, y, lr, steps)
        line.set_data(weights[:, 0], weights[:, 1])
        lr_max = inorm.max_stable_lr(X)
        gap = losses - inorm.loss(inorm.optimum(X, y), X, y)
        done = (gap <= inorm.converged_gap(y)).nonzero()[0]
        if diverged:
            outcome = f"diverged after {len(losses) - 1} step{'s' * (len(losses) != 2)} (loss above 1e12 x its start)"
        elif len(done):
            outcome = f"converged in {done[0]} steps"
        else:
            outcome = f"not converged after {steps} steps"
        ax.set_title(f"{inorm.NAMES[normalize]}\nlr = {lr:.2e} = {lr / lr_max:.3g} x 2/λmax", fontsize=10)
        readout = (f"{outcome}; {inorm.NAMES[normalize]}, lr {lr:.2e} = {lr / lr_max:.3g} x 2/λmax "
                   f"(2/λmax = {lr_max:.3g}, condition number {inorm.condition_number(X):.3g}); "
                   f"final loss {losses[-1]:.4g}, best {losses[0] - gap[0]:.4g}")
        return figure, readout

    controls = {
        "lr": widgets.FloatLogSlider(value=0.5, base=10, min=-11, max=1, step=0.05, description="learning rate",
                                     readout_format=".2e", continuous_update=False),
        "normalize": widgets.Checkbox(value=True, description="standardize features"),
    }
    return Explorer(controls, draw)
