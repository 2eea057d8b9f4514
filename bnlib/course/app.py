"""The classroom app (``make app``): the course's figures and explorers, chapter by chapter, without code.

Voila serves ``notebooks/app/classroom.ipynb``: its first cell shows a :class:`Classroom` (a message says
what is loading, with progress bars for anything computed the first time), its second shows the first
chapter (Voila renders each cell's output as soon as it has run). A menu picks the chapter; the page then shows that chapter's items, each a one-line caption over a figure or an explorer
that bnlib builds (the same ones the notebooks show). The app opens at chapter 06: the paper's Figure 1
and its two explorers. Adding an explorer to the app is one line in ``ITEMS``.

``python -m bnlib.course.app`` builds every item once, so that whatever is slow the first time
(training runs, Algorithm 2) is computed and cached before class; ``make app`` runs it first.
"""

import html
import time
import traceback
from functools import cache

import ipywidgets as widgets

from bnlib.course.ch01 import explorers as ch01
from bnlib.course.ch02 import explorers as ch02
from bnlib.course.ch03 import explorers as ch03
from bnlib.course.ch04 import explorers as ch04
from bnlib.course.ch05 import explorers as ch05
from bnlib.course.ch06 import explorers as ch06
from bnlib.course.ch07 import explorers as ch07
from bnlib.course.ch08 import explorers as ch08
from bnlib.course.ch09 import explorers as ch09
from bnlib.course.ch10 import explorers as ch10
from bnlib.course.ch11 import explorers as ch11
from bnlib.course.explorer import figure_image

CHAPTERS = {"01": "Input normalization", "02": "Internal covariate shift", "03": "Batch norm from scratch",
            "04": "Gamma and beta", "05": "Running statistics", "06": "The paper's MNIST experiment",
            "07": "Perils, and why it works", "08": "Convolutions and deployment", "09": "Across devices",
            "10": "Batch norm and the optimizer", "11": "Residual networks and Batch Renorm"}
FIRST = "06"


@cache
def paper_run():
    """The paper's 50,000-step MNIST run (cached on disk; loaded once per kernel for the figure and the explorer)."""
    from bnlib.course.ch06.paper import run_paper_experiment

    return run_paper_experiment()


FIGURE_1_WIDTH = 680  # CSS px: Figure 1 and the whole momentum explorer under it fit the first 1280 x 800 screen


def figure_1():
    from bnlib.course.ch06.figures import figure1
    from bnlib.course.ch06.paper import findings

    return figure_image(figure1(paper_run(), findings(paper_run()), row=True)[0], width=FIGURE_1_WIDTH)


# (chapter, caption, build): one line per figure or explorer, in the order they show.
ITEMS = [
    ("01", "Gradient descent on raw or standardized features, at the learning rate you pick.",
     ch01.learning_rate_explorer),
    ("02", "A hidden unit's input distribution while a network trains: scrub through the steps.",
     ch02.drift_explorer),
    ("03", "Move one example: in training mode the others' outputs move with it, in eval mode they stay.",
     ch03.batch_coupling_explorer),
    ("04", "Gamma and beta set the spread and the centre of BN's output: where does the sigmoid saturate?",
     ch04.gamma_beta_explorer),
    ("05", "A running mean tracks a drifting, noisy batch statistic: the momentum trades lag for noise.",
     ch05.ema_explorer),
    ("06", "Figure 1 of Ioffe & Szegedy (2015) reproduced: (a) test accuracy, (b, c) a typical unit's sigmoid input.",
     figure_1),
    ("06", "The running statistics replayed for any momentum, against the paper's population statistics.",
     lambda: ch06.momentum_explorer(paper_run())),
    ("06", "Figure 1's experiment, 3,000 steps, at the batch size you pick.", ch06.batch_size_explorer),
    ("07", "How noisy are a real unit's batch statistics, and what does the noise do to one example?",
     ch07.batch_noise_explorer),
    ("08", "Shift the test digits, then re-estimate batch norm's statistics on a few unlabeled batches.",
     ch08.recalibration_explorer),
    ("09", "Data-parallel training: each device's batch statistics, against the whole batch's.",
     ch09.devices_explorer),
    ("10", "Learning rate x weight decay: the weights' norm, the effective learning rate, the angle per step.",
     ch10.optimizer_explorer),
    ("11", "Batch size and batch composition: batch norm, Batch Renorm and GroupNorm, in eval and in train mode.",
     ch11.composition_explorer),
]


def chapters():
    """The chapters that have items, in order."""
    return sorted({chapter for chapter, _, _ in ITEMS})


def caption(text):
    return widgets.HTML(f'<div style="font-size: 15px; line-height: 1.4; margin-top: 10px">'
                        f'<b>{html.escape(text)}</b></div>')


def build(chapter):
    """The widgets of one chapter: a caption above each item; an item that fails shows its error instead."""
    shown = []
    for _, text, make in (item for item in ITEMS if item[0] == chapter):
        shown.append(caption(text))
        try:
            shown.append(make())
        except Exception:
            error = widgets.HTML(f"<pre>{html.escape(traceback.format_exc())}</pre>")
            error.add_class("bn-error")
            shown.append(error)
    return shown


class Classroom(widgets.VBox):
    """A chapter menu over the chosen chapter's items. ``show(chapter)`` builds a chapter on first view
    (saying so, with the progress bars of whatever is computed), then keeps it."""

    def __init__(self, chapter=FIRST):
        self.menu = widgets.Dropdown(options=[(f"{key} · {CHAPTERS.get(key, 'Chapter ' + key)}", key)
                                              for key in chapters()],
                                     value=chapter, description="chapter", layout=widgets.Layout(width="420px"))
        self.status = widgets.HTML(loading(chapter))
        self.status.add_class("bn-status")
        self.progress = widgets.Output()
        self.page = widgets.VBox()
        self.built = {}
        header = widgets.HBox([widgets.HTML("<b style='font-size: 17px'>Batch normalization, hands on</b>",
                                            layout=widgets.Layout(margin="0 24px 0 0")), self.menu])
        super().__init__([header, self.status, self.progress, self.page])
        self.add_class("bn-classroom")
        self.menu.observe(lambda change: self.show(change["new"]), names="value")

    def show(self, chapter):
        if self.menu.value != chapter:
            self.menu.value = chapter  # calls show(chapter) again, through the menu's observer
            return
        if chapter not in self.built:
            self.page.children = ()
            self.status.value = loading(chapter)
            try:
                with self.progress:
                    self.built[chapter] = build(chapter)
            finally:
                self.progress.clear_output()
                self.status.value = ""
        for key in self.built:
            self.page.remove_class(f"bn-chapter-{key}")
        self.page.children = self.built[chapter]
        self.page.add_class(f"bn-chapter-{chapter}")  # for a browser: which chapter is on the page


def loading(chapter):
    return (f"<b>Loading chapter {chapter} ...</b> Results not cached yet are computed now, with a progress bar "
            "below (<code>make app</code> computes them before it serves the app).")


def classroom(chapter=FIRST):
    """The app's page, in one call: the chapter menu and the chapter's figures and explorers."""
    app = Classroom(chapter)
    app.show(chapter)
    return app


def prepare():
    """Build every item once (computing and caching what is slow the first time); report the time per chapter."""
    for chapter in chapters():
        start = time.perf_counter()
        failed = [shown for shown in build(chapter)
                  if "bn-error" in shown._dom_classes or getattr(shown, "error", None) is not None]
        print(f"chapter {chapter}: ready in {time.perf_counter() - start:.0f} s", flush=True)
        if failed:
            errors = "\n".join(getattr(shown, "text", None) or shown.value for shown in failed)
            raise SystemExit(f"chapter {chapter}: {len(failed)} item(s) failed:\n{errors}")


if __name__ == "__main__":
    prepare()
