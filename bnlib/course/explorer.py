"""Interactive explorers: a few controls, a one-line readout and a plot, sized to fit one screen.

Every explorer of the course is an :class:`Explorer`, so they all look and behave alike: moving a
control calls ``draw(**values)``, which returns a matplotlib ``Figure`` and a readout string.

- The plot is shown at the figure's size, ``CSS_DPI`` CSS pixels per inch (an 8 x 4 inch figure is
  800 x 400 px on the page, never stretched to the output's width), from a PNG rendered with
  ``PIXEL_RATIO`` image pixels per CSS pixel, so it stays sharp on high-density screens and projectors.
  Figures of at most ``MAX_WIDTH`` x ``MAX_HEIGHT`` inches leave room for the controls on a 1280 x 800 screen.
- The controls sit in a grid of columns at least ``COLUMN_WIDTH`` wide: each slider gets a usable track,
  and labels are never cut.
- The readout leads with the number that changes: ``"headline; detail; detail"``; the headline (up to
  the first ``"; "``) shows in bold. Explanations belong in the prose around the explorer.
- ``pending(**values)``, if given, returns a message when the draw for ``values`` will take a while
  (say, a training run that is not cached yet). The readout and the plot then say so at once, the
  draw's progress bars show right under the controls, and they disappear when it is done.
- An error in ``draw`` is shown in the readout instead of vanishing into the widget log.
- Where widgets do not run (GitHub, nbviewer, the course's static site) an executed notebook still shows
  the plot as it was when the explorer was displayed (``image/png`` next to the widget view) and the
  readout as its text; JupyterLab and Voila prefer the widget view.

The CSS classes ``bn-explorer``, ``bn-controls``, ``bn-readout``, ``bn-plot``, ``bn-progress``,
``bn-pending`` and ``bn-error`` let a browser find the parts.
"""

import base64
import html
import io
import traceback

import ipywidgets as widgets
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

CSS_DPI = 100  # CSS pixels per inch of figure
PIXEL_RATIO = 2  # PNG pixels per CSS pixel
RENDER_DPI = CSS_DPI * PIXEL_RATIO
MAX_WIDTH, MAX_HEIGHT = 8.4, 5.0  # inches: JupyterLab's output area at 1280 x 800 is about 850 x 680 px
COLUMN_WIDTH = 380  # CSS px: the narrowest column of the controls' grid


def render_png(figure, dpi=RENDER_DPI):
    """PNG bytes (RGB) of ``figure`` at ``dpi``, from its Agg canvas.

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
    pixels = np.asarray(figure.canvas.buffer_rgba())[..., :3]
    Image.fromarray(np.ascontiguousarray(pixels)).save(buffer, format="png", compress_level=1)
    return buffer.getvalue()


def css_size(figure):
    """The (width, height) in CSS pixels at which ``figure`` is shown."""
    width, height = figure.get_size_inches()
    return round(width * CSS_DPI), round(height * CSS_DPI)


def figure_image(figure, width=None):
    """A static figure as an image widget, shown like an explorer's plot (``CSS_DPI``, sharp, never stretched),
    or ``width`` CSS px wide (still drawn with at least ``PIXEL_RATIO`` pixels per CSS px when smaller)."""
    width = min(width or css_size(figure)[0], css_size(figure)[0])
    image = widgets.Image(value=render_png(figure), format="png", layout=widgets.Layout(
        width=f"{width}px", max_width="100%", height="auto"))
    image.add_class("bn-figure")
    return image


def pending_png(previous, size, message):
    """A PNG of ``size`` CSS px: the ``previous`` picture (PNG bytes, or None) faded, ``message`` on top."""
    width, height = size
    figure = Figure(figsize=(width / CSS_DPI, height / CSS_DPI), dpi=RENDER_DPI)
    if previous:
        picture = np.asarray(Image.open(io.BytesIO(previous)).convert("RGB"), dtype=np.float32) / 255
        figure.figimage(0.25 * picture + 0.75, resize=False)
    figure.text(0.5, 0.5, message, ha="center", va="center", fontsize=13, wrap=True,
                bbox={"boxstyle": "round", "facecolor": "white", "edgecolor": "0.6"})
    return render_png(figure)


def readout_html(text):
    """``"headline; details"`` as HTML: the headline in bold, one line."""
    headline, separator, details = text.partition("; ")
    return (f'<div style="line-height: 1.4"><b>{html.escape(headline)}</b>{separator}{html.escape(details)}</div>')


def fit_control(control):
    """Give a slider the width of its grid column, and every control a label that is never cut (unless
    the explorer set them already)."""
    style = getattr(control, "style", None)
    if getattr(control, "description", "") and style is not None and hasattr(style, "description_width"):
        style.description_width = style.description_width or "initial"
    if isinstance(control, widgets.Checkbox):
        control.indent = False
    if control.layout.width is None and isinstance(control, widgets.Checkbox):
        control.layout.width = "auto"
    elif control.layout.width is None and "Slider" in type(control).__name__:
        control.layout.width = "100%"  # the column's width: a long track
    return control


class Explorer(widgets.VBox):
    """Controls on top, the readout, then the plot. ``draw(**values) -> (Figure, str)``.

    ``pending(**values) -> str or None``: a message to show while a slow draw for ``values`` runs.
    ``text`` is the readout's plain text, ``error`` the exception of the last draw (None if it worked).
    """

    def __init__(self, controls, draw, pending=None):
        self.controls = dict(controls)
        self.draw, self.pending = draw, pending
        self.readout = widgets.HTML(layout=widgets.Layout(margin="2px 0 4px 0"))
        self.readout.add_class("bn-readout")
        self.progress = widgets.Output()
        self.progress.add_class("bn-progress")
        self.image = widgets.Image(format="png", layout=widgets.Layout(max_width="100%", height="auto"))
        self.image.add_class("bn-plot")
        self.text, self.error = "", None
        grid = widgets.GridBox([fit_control(control) for control in self.controls.values()], layout=widgets.Layout(
            grid_template_columns=f"repeat(auto-fit, minmax(min({COLUMN_WIDTH}px, 100%), 1fr))",
            grid_gap="2px 24px", width="100%"))
        grid.add_class("bn-controls")
        super().__init__([grid, self.progress, self.readout, self.image])
        self.add_class("bn-explorer")
        for control in self.controls.values():
            control.observe(lambda change: self.update(), names="value")
        self.update()

    def _repr_mimebundle_(self, **kwargs):
        """ipywidgets' widget view, with a static fallback: the plot now shown (``image/png``, at its CSS
        width) and the readout (``text/plain``)."""
        data = super()._repr_mimebundle_(**kwargs)
        data["text/plain"] = self.text
        if not self.image.value:
            return data
        data["image/png"] = base64.b64encode(self.image.value).decode("ascii")
        return data, {"image/png": {"width": int(self.image.layout.width[:-2])}}  # a plot is shown at "<n>px"

    def values(self):
        return {name: control.value for name, control in self.controls.items()}

    def show(self, figure, text):
        """Put ``figure`` and the readout ``text`` on screen."""
        width, _ = css_size(figure)
        if self.image.layout.width != f"{width}px":
            self.image.layout.width = f"{width}px"
        self.image.value = render_png(figure)
        self.text, self.readout.value = text, readout_html(text)
        self.readout.remove_class("bn-error")
        self.readout.remove_class("bn-pending")

    def show_pending(self, message):
        """Say at once, in the readout and over the plot, that a slow draw is running."""
        width = int(self.image.layout.width[:-2]) if self.image.layout.width else round(MAX_WIDTH * CSS_DPI)
        height = round(width * 0.4)
        if self.image.value:
            picture = Image.open(io.BytesIO(self.image.value))
            height = round(width * picture.height / picture.width)
        self.image.layout.width = f"{width}px"
        self.image.value = pending_png(self.image.value or None, (width, height), message)
        self.text, self.readout.value = message, readout_html(message)
        self.readout.add_class("bn-pending")

    def update(self):
        values = self.values()
        try:
            message = self.pending(**values) if self.pending else None
            if message:
                self.show_pending(message)
                try:
                    with self.progress:  # the draw's progress bars show under the controls
                        figure, text = self.draw(**values)
                finally:
                    self.progress.clear_output()
            else:
                figure, text = self.draw(**values)
            self.show(figure, text)
            self.error = None
        except Exception as err:  # shown to the learner, not swallowed by the widget log
            self.error = err
            self.text = traceback.format_exc()
            self.readout.value = f"<pre>{html.escape(self.text)}</pre>"
            self.readout.remove_class("bn-pending")
            self.readout.add_class("bn-error")
