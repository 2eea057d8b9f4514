"""The Explorer plumbing every widget of the course is built on."""

import importlib
import io

import ipywidgets as widgets
import pytest
from matplotlib.figure import Figure
from PIL import Image

from bnlib.course.explorer import (CSS_DPI, MAX_HEIGHT, MAX_WIDTH, PIXEL_RATIO, Explorer, readout_html,
                                           render_png)


def line_plot(slope):
    figure = Figure(figsize=(2, 2))
    figure.add_subplot().plot([0, 1], [0, slope])
    return figure, f"slope {slope:.1f}; a detail"


def test_moving_a_control_redraws_plot_and_readout():
    slider = widgets.FloatSlider(value=1.0, min=0.0, max=2.0)
    explorer = Explorer({"slope": slider}, line_plot)
    before_text, before_png = explorer.text, bytes(explorer.image.value)
    assert before_text == "slope 1.0; a detail" and before_png.startswith(b"\x89PNG")
    slider.value = 2.0
    assert explorer.text == "slope 2.0; a detail" and "<b>slope 2.0</b>; a detail" in explorer.readout.value
    assert bytes(explorer.image.value) != before_png
    assert explorer.error is None and "bn-explorer" in explorer._dom_classes


def test_the_plot_shows_at_the_figures_size_with_two_pixels_per_css_pixel():
    """A 2 x 2 inch figure is 200 x 200 CSS px on the page, never stretched, from a 400 x 400 PNG."""
    explorer = Explorer({"slope": widgets.FloatSlider(value=1.0)}, line_plot)
    assert explorer.image.layout.width == f"{2 * CSS_DPI}px" and explorer.image.layout.max_width == "100%"
    assert explorer.image.layout.height == "auto"
    assert Image.open(io.BytesIO(explorer.image.value)).size == (2 * CSS_DPI * PIXEL_RATIO,) * 2


def test_controls_get_a_column_each_and_labels_that_are_never_cut():
    slider = widgets.FloatSlider(description="a long description")
    box = widgets.Checkbox(description="a checkbox with a long label")
    kept = widgets.IntSlider(description="kept", layout=widgets.Layout(width="123px"))
    explorer = Explorer({"slope": slider, "flag": box, "kept": kept}, lambda slope, flag, kept: line_plot(slope))
    assert slider.style.description_width == "initial" and slider.layout.width == "100%"
    assert box.indent is False and box.layout.width == "auto"
    assert kept.layout.width == "123px"  # an explorer's own choice stays
    assert "bn-controls" in explorer.children[0]._dom_classes
    assert list(explorer.children[0].children) == [slider, box, kept]


def test_an_error_in_draw_is_shown_not_swallowed():
    def draw(slope):
        if slope > 1:
            raise ValueError("slope too steep")
        return line_plot(slope)

    slider = widgets.FloatSlider(value=1.0, min=0.0, max=2.0)
    explorer = Explorer({"slope": slider}, draw)
    slider.value = 2.0
    assert isinstance(explorer.error, ValueError)
    assert "slope too steep" in explorer.readout.value and "bn-error" in explorer.readout._dom_classes
    slider.value = 0.5
    assert explorer.error is None and "bn-error" not in explorer.readout._dom_classes


def test_a_slow_draw_is_announced_at_once_and_its_progress_cleared():
    """While ``draw`` runs, the readout and the plot already say what is being computed, and the
    progress output under the controls holds what the draw prints; afterwards both are gone."""
    seen = {}

    def draw(slope):
        if slope > 1:
            print("progress of a long computation")
            seen.update(readout=explorer.readout.value, pending="bn-pending" in explorer.readout._dom_classes,
                        image=bytes(explorer.image.value))
        return line_plot(slope)

    slider = widgets.FloatSlider(value=1.0, min=0.0, max=2.0)
    explorer = Explorer({"slope": slider}, draw, pending=lambda slope: f"computing slope {slope:.1f}" if slope > 1 else None)
    before = bytes(explorer.image.value)
    slider.value = 2.0
    assert seen["pending"] and "computing slope 2.0" in seen["readout"]
    assert seen["image"] not in (before, bytes(explorer.image.value))  # the plot said so too
    assert Image.open(io.BytesIO(seen["image"])).size == Image.open(io.BytesIO(before)).size
    assert explorer.text == "slope 2.0; a detail" and "bn-pending" not in explorer.readout._dom_classes
    assert explorer.progress.outputs == ()
    slider.value = 0.5  # a fast draw: no announcement
    assert explorer.text == "slope 0.5; a detail"


def test_readout_html_escapes_and_bolds_the_headline():
    assert readout_html("a < b; c & d; e") == '<div style="line-height: 1.4"><b>a &lt; b</b>; c &amp; d; e</div>'


def test_render_png_redraws_a_reused_figure_only_when_it_changed():
    figure = Figure(figsize=(2, 1.5))
    line = figure.add_subplot().plot([0, 1], [0, 1])[0]
    first = render_png(figure, dpi=80)
    assert Image.open(io.BytesIO(first)).size == (160, 120)
    assert render_png(figure, dpi=80) == first
    line.set_ydata([1, 0])
    assert render_png(figure, dpi=80) != first
    assert Image.open(io.BytesIO(render_png(figure, dpi=40))).size == (80, 60)


@pytest.mark.parametrize("chapter, name", [("ch01", "learning_rate_explorer"), ("ch04", "gamma_beta_explorer"),
                                           ("ch05", "ema_explorer")])
def test_the_course_explorers_fit_a_1280_by_800_screen(chapter, name):
    """Figures of at most MAX_WIDTH x MAX_HEIGHT inches leave room for the controls in JupyterLab at 1280 x 800
    (the browser tests measure it; the MNIST explorers are checked in their own tests)."""
    explorer = getattr(importlib.import_module(f"bnlib.course.{chapter}.explorers"), name)()
    width, height = Image.open(io.BytesIO(explorer.image.value)).size
    assert width <= PIXEL_RATIO * MAX_WIDTH * CSS_DPI and height <= PIXEL_RATIO * MAX_HEIGHT * CSS_DPI
    assert explorer.image.layout.width == f"{width // PIXEL_RATIO}px"
