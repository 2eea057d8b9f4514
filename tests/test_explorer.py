"""The Explorer plumbing every widget of the course is built on."""

import io

import ipywidgets as widgets
from matplotlib.figure import Figure
from PIL import Image

from bnlib.course.widgets.explorer import Explorer, render_png


def line_plot(slope):
    figure = Figure(figsize=(2, 2))
    figure.add_subplot().plot([0, 1], [0, slope])
    return figure, f"slope {slope:.1f}"


def test_moving_a_control_redraws_plot_and_readout():
    slider = widgets.FloatSlider(value=1.0, min=0.0, max=2.0)
    explorer = Explorer({"slope": slider}, line_plot)
    before_text, before_png = explorer.readout.value, bytes(explorer.image.value)
    assert before_text == "slope 1.0" and before_png.startswith(b"\x89PNG")
    slider.value = 2.0
    assert explorer.readout.value == "slope 2.0"
    assert bytes(explorer.image.value) != before_png
    assert explorer.error is None and "bn-explorer" in explorer._dom_classes


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


def test_render_png_redraws_a_reused_figure_only_when_it_changed():
    figure = Figure(figsize=(2, 1.5))
    line = figure.add_subplot().plot([0, 1], [0, 1])[0]
    first = render_png(figure, dpi=80)
    assert Image.open(io.BytesIO(first)).size == (160, 120)
    assert render_png(figure, dpi=80) == first
    line.set_ydata([1, 0])
    assert render_png(figure, dpi=80) != first
    assert Image.open(io.BytesIO(render_png(figure, dpi=40))).size == (80, 60)
