"""The recalibration explorer of notebook 08: shift the test digits, then re-estimate BN's statistics.

A chooser picks the shift (lower contrast on a grey background, or Gaussian noise), a slider its strength,
another chooser how many unlabeled batches of 64 shifted training digits the recalibration sees. Each move
evaluates, on 2,000 shifted test digits, the BN conv net with the statistics from training, the same net
recalibrated (``recompute_population_statistics``), and the plain net. Computed live: a few forward passes.
"""

import copy

import ipywidgets as widgets
from matplotlib.figure import Figure

from bnlib.course.ch08.convnet import images_2d, lr_sweep, trained_net
from bnlib.course.ch08.deployment import shift
from bnlib.course.plots import COLORS
from bnlib.course.training import accuracy
from bnlib.course.explorer import Explorer
from bnlib.running_stats import recompute_population_statistics

LEVELS = {"contrast": lambda strength: 1 - 0.9 * strength, "noise": lambda strength: 0.6 * strength}
MEANING = {"contrast": "contrast x{level:.2f}", "noise": "noise of std {level:.2f}"}  # what a strength does


def describe(kind, strength):
    """"contrast strength 0.75 (contrast x0.33)": the slider's value and what it does to the digits."""
    return f"{kind} strength {strength:.2f} ({MEANING[kind].format(level=LEVELS[kind](strength))})"


def recalibration_explorer(test_examples=2_000):
    sweep = lr_sweep()
    pretrained, plain = trained_net(sweep), trained_net(sweep, batch_norm=False)
    images, _ = images_2d(True)
    test_images, test_labels = (t[:test_examples] for t in images_2d(False))
    figure = Figure(figsize=(8.4, 3.0), layout="constrained")
    digits_ax, bars_ax = figure.subplots(1, 2, width_ratios=(1, 1.4))

    def draw(kind, strength, batches):
        level = LEVELS[kind](strength)
        test = shift(test_images, kind, level, seed=1)
        net = copy.deepcopy(pretrained)
        recompute_population_statistics(net, shift(images[:64 * batches], kind, level).split(64))
        scores = {"trained statistics": accuracy(pretrained, test, test_labels),
                  f"recalibrated, {batches} batch{'es' if batches > 1 else ''}": accuracy(net, test, test_labels),
                  "plain net": accuracy(plain, test, test_labels)}
        digits_ax.cla()
        digits_ax.imshow(test[:4, 0].transpose(0, 1).reshape(28, 4 * 28).clamp(0, 1).numpy(), cmap="gray", vmin=0, vmax=1)
        digits_ax.set(title=f"test digits, {MEANING[kind].format(level=level)}", xticks=[], yticks=[])
        bars_ax.cla()
        bars = bars_ax.barh(list(scores), list(scores.values()),
                            color=["0.6", COLORS["batch norm"], COLORS["baseline"]])
        bars_ax.bar_label(bars, [f"{value:.1%}" for value in scores.values()], padding=3)
        bars_ax.set(xlim=(0, 1.15), xlabel="test accuracy on the shifted digits")
        bars_ax.invert_yaxis()
        values = list(scores.values())
        return figure, (f"recalibrated BN {values[1]:.1%}, with its training statistics {values[0]:.1%}; "
                        f"plain net {values[2]:.1%}; {describe(kind, strength)}, {batches} batch(es) of 64")

    controls = {
        "kind": widgets.Dropdown(options=list(LEVELS), value="contrast", description="shift"),
        "strength": widgets.FloatSlider(value=0.8, min=0.0, max=1.0, step=0.05, description="strength"),
        "batches": widgets.Dropdown(options=[1, 4, 16], value=1, description="recalibration batches"),
    }
    return Explorer(controls, draw)
