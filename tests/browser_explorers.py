"""What a learner does with an explorer in the browser, and how it looks: moves of its controls, the
readout and plot they change, errors on the page, and the explorer's size, labels and slider tracks.

An explorer is a ``bnlib.course.explorer.Explorer``: its controls (``.bn-controls``), an HTML readout
(``.bn-readout``, ``.bn-pending`` while a slow draw runs, ``.bn-error`` when ``draw`` raised) and a PNG
image (``.bn-plot``).
"""

import time

from browser import wait_for

# Text that JupyterLab or ipywidgets show when a cell or a widget failed.
ERROR_MARKS = ("Traceback (most recent call last)", "Error displaying widget", "Error rendering output",
               "Failed to display Jupyter Widget")
MIN_TRACK = 200  # CSS px: the narrowest usable slider track


def page_errors(page):
    """Texts of error outputs and failed widgets on the page, and of explorers showing an error."""
    outputs = page.locator(".jp-OutputArea-output:not(:has(.bn-explorer))").all_inner_texts()
    failed = [text for text in outputs if any(mark in text for mark in ERROR_MARKS)]
    return failed + page.locator(".bn-error").all_inner_texts()


def plot_digest(explorer):
    """SHA-256 of the PNG bytes the explorer's image shows (fetched from its blob URL in the page)."""
    return explorer.locator(".bn-plot").evaluate("""async img => {
        const bytes = await (await fetch(img.src)).arrayBuffer();
        const digest = await crypto.subtle.digest('SHA-256', bytes);
        return Array.from(new Uint8Array(digest), b => b.toString(16).padStart(2, '0')).join('');
    }""")


def state(explorer):
    """What the learner sees: (readout text, plot digest)."""
    return explorer.locator(".bn-readout").inner_text(), plot_digest(explorer)


def settle(explorer, idle, timeout=120):
    """Wait until the explorer has shown the same thing for a while and ``idle()`` (the kernel is idle)
    holds: during a drag the callback lags the control. Without a view of the kernel (Voila), wait longer."""
    quiet_for = 0.3 if idle else 2.0
    last = {"state": None, "since": time.monotonic()}

    def steady():
        if explorer.locator(".bn-readout.bn-pending").count():  # a slow draw is running: not there yet
            last.update(state=None, since=time.monotonic())
            return False
        now = state(explorer)
        if now != last["state"]:
            last.update(state=now, since=time.monotonic())
        return time.monotonic() - last["since"] > quiet_for and (idle is None or idle()) and now

    return wait_for(steady, timeout, lambda: f"the explorer kept changing for {timeout} s")


def controls(explorer):
    """The control widgets of an explorer: the children of its controls' grid."""
    return explorer.locator(":scope > .bn-controls > *").all()


def describe(control):
    label = control.locator(".widget-label").first
    return label.inner_text().strip() if label.count() else control.get_attribute("class")


def drag_slider(page, control):
    """Drag the noUi handle to a fifth of the track from the far end: another option with two options, and with
    three from the middle one (a quarter would be midway between two of them, and could snap back)."""
    handle = control.locator(".noUi-handle").first
    handle.scroll_into_view_if_needed()
    grip, track = handle.bounding_box(), control.locator(".noUi-target").first.bounding_box()
    x, y = grip["x"] + grip["width"] / 2, grip["y"] + grip["height"] / 2
    target = track["x"] + track["width"] * (0.8 if x < track["x"] + track["width"] / 2 else 0.2)
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(target, y, steps=10)
    page.mouse.up()


def press_slider(page, control):
    """Focus the noUi handle and press ArrowRight (ArrowLeft at the right end)."""
    handle = control.locator(".noUi-handle").first
    at_end = float(handle.get_attribute("aria-valuenow")) >= float(handle.get_attribute("aria-valuemax"))
    handle.focus()
    page.keyboard.press("ArrowLeft" if at_end else "ArrowRight")


def pick_other_option(page, control):
    """Select a different option of a dropdown: the first one, or the second when the first is selected.
    (The first is the one the course's own runs need anyway, such as batch size 2 in chapter 6's exercise.)"""
    select = control.locator("select").first
    select.select_option(index=1 if select.evaluate("s => s.selectedIndex") == 0 else 0)


def click_other_button(page, control):
    control.locator("button:not(.mod-active)").first.click()


def click_checkbox(page, control):
    control.locator("input[type=checkbox]").first.click()


def moves(control):
    """How to move a control, as (description, action) pairs: sliders by drag and by keyboard."""
    kind = control.get_attribute("class") or ""
    if "widget-slider" in kind:
        return [("drag", drag_slider), ("keyboard", press_slider)]
    if "widget-dropdown" in kind:
        return [("select another option", pick_other_option)]
    if "widget-toggle-buttons" in kind:
        return [("click another button", click_other_button)]
    if "widget-checkbox" in kind:
        return [("click", click_checkbox)]
    raise AssertionError(f"the browser test does not know how to move a control with classes {kind!r}; "
                         "teach tests/browser.py (`moves`)")


def exercise(page, explorer, name, screenshots, idle=None, timeout=120):
    """Move every control of an explorer in each way a learner would; after each move the readout and
    the plot must both change (every readout states what each of its controls sets), and no error may
    show. When a move fails, a screenshot of the explorer as it then shows joins ``screenshots``.
    ``idle()`` tells whether the notebook's kernel is idle, when the server lets us know."""
    explorer.scroll_into_view_if_needed()
    before = settle(explorer, idle, timeout)
    found = controls(explorer)
    assert found, f"{name} has no controls"
    for number, control in enumerate(found, 1):
        for how, move in moves(control):
            what = f"{name}, control {describe(control)!r} moved by {how}"
            move(page, control)
            try:
                wait_for_change(page, explorer, before, what, timeout)
                before = settle(explorer, idle, timeout)
                assert_no_errors(page, what)
            except BaseException:
                explorer.screenshot(path=screenshots / f"{name} control {number} {how}.png".replace(" ", "_"))
                raise


def assert_no_errors(page, what):
    errors = page_errors(page)
    assert not errors, f"{what}: an error shows on the page:\n" + "\n".join(errors)


def wait_for_change(page, explorer, before, what, timeout):
    """Wait until both the readout and the plot differ from ``before``; fail at once on an error."""
    def changed():
        assert_no_errors(page, what)
        now = state(explorer)
        return now[0] != before[0] and now[1] != before[1] and now

    def what_happened():
        readout, plot = state(explorer)
        return (f"{what}: after {timeout} s the readout {'changed' if readout != before[0] else 'did not change'}"
                f" ({before[0]!r} -> {readout!r}) and the plot image "
                f"{'changed' if plot != before[1] else 'did not change'}")

    return wait_for(changed, timeout, what_happened)


LAYOUT = """(explorer, area) => {
    const box = element => element.getBoundingClientRect();
    const size = element => [Math.round(box(element).width), Math.round(box(element).height)];
    const plot = explorer.querySelector('.bn-plot');
    const labels = [...explorer.querySelectorAll('.bn-controls label, .bn-controls .widget-label, '
                                                + '.bn-controls .widget-label-basic, .bn-controls .widget-readout')];
    return {
        explorer: size(explorer), area: area ? size(area) : [window.innerWidth, window.innerHeight],
        plot: size(plot), png: [plot.naturalWidth, plot.naturalHeight],
        tracks: [...explorer.querySelectorAll('.noUi-target')].map(track => Math.round(box(track).width)),
        truncated: labels.filter(label => label.scrollWidth > label.clientWidth)
                         .map(label => `${label.textContent.trim()} (${label.scrollWidth} > ${label.clientWidth} px)`),
    };
}"""


def layout(explorer, area=None):
    """What an explorer takes on screen: sizes in CSS px of the explorer, of the ``area`` it shows in (an
    element, or the window), of its plot; the PNG's pixels; slider track widths; cut labels."""
    return explorer.evaluate(LAYOUT, area.element_handle() if area else None)


def layout_problems(measured, pixel_ratio=2):
    """What is wrong with an explorer's ``layout``: too big for its area, a cut label, a short slider
    track, a plot stretched beyond the pixels it was rendered with or out of proportion."""
    (width, height), (area_width, area_height) = measured["explorer"], measured["area"]
    (plot_width, plot_height), (png_width, png_height) = measured["plot"], measured["png"]
    problems = []
    if width > area_width or height > area_height:
        problems.append(f"the explorer ({width} x {height} px) does not fit its area ({area_width} x {area_height} px)")
    problems += [f"label cut: {label}" for label in measured["truncated"]]
    problems += [f"a slider track is {track} px wide (< {MIN_TRACK})" for track in measured["tracks"] if track < MIN_TRACK]
    if png_width < pixel_ratio * plot_width - 2:
        problems.append(f"the plot is shown {plot_width} px wide from {png_width} pixels: under {pixel_ratio} per px")
    if abs(plot_height * png_width - plot_width * png_height) > 2 * png_width:
        problems.append(f"the plot is out of proportion: {plot_width} x {plot_height} px from {png_width} x {png_height}")
    return problems
