"""Interactive explorers: a few controls, a plot and a one-line readout.

Every explorer of the course is an :class:`Explorer`, so they all look and behave alike: moving
a control calls ``draw(**values)``, which returns a matplotlib ``Figure`` and a readout string; the
figure is shown as a PNG image. An error in ``draw`` is shown in the readout instead of vanishing
into the widget log. The CSS classes ``bn-explorer``, ``bn-readout``, ``bn-plot`` and ``bn-error``
let a browser find the parts.
"""

import html
import io
import traceback

import ipywidgets as widgets
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from PIL import Image


def render_png(figure, dpi=80):
    """PNG bytes of ``figure`` at ``dpi``, from its Agg canvas.

    The canvas is drawn only if the figure changed since it was last drawn (``figure.stale``), so a
    ``draw`` that blits (redraws a few artists over a cached background) leaves its picture to encode
    as it is. Compression level 1 encodes several times faster than the default, for a file barely larger.
    """
    if not isinstance(figure.canvas, FigureCanvasAgg):
        FigureCanvasAgg(figure)  # attaches itself to the figure, with nothing drawn on it yet
        figure.stale = True
    if figure.dpi != dpi:
        figure.set_dpi(dpi)
    if figure.stale:
        figure.canvas.draw()
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(figure.canvas.buffer_rgba())).save(buffer, format="png", compress_level=1)
    return buffer.getvalue()


class Explorer(widgets.VBox):
    """Controls on top, the readout, then the plot. ``draw(**values) -> (Figure, str)``."""

    def __init__(self, controls, draw, dpi=80):
        self.controls = dict(controls)
        self.draw = draw
        self.dpi = dpi
        self.readout = widgets.HTML()
        self.readout.add_class("bn-readout")
        self.image = widgets.Image(format="png")
        self.image.add_class("bn-plot")
        self.error = None
        super().__init__([widgets.HBox(list(self.controls.values())), self.readout, self.image])
        self.add_class("bn-explorer")
        for control in self.controls.values():
            control.observe(lambda change: self.update(), names="value")
        self.update()

    def values(self):
        return {name: control.value for name, control in self.controls.items()}

    def update(self):
        try:
            figure, text = self.draw(**self.values())
            self.image.value = render_png(figure, self.dpi)
            self.readout.value = html.escape(text)
            self.readout.remove_class("bn-error")
            self.error = None
        except Exception as err:  # shown to the learner, not swallowed by the widget log
            self.error = err
            self.readout.value = f"<pre>{html.escape(traceback.format_exc())}</pre>"
            self.readout.add_class("bn-error")
