"""Drive the course in a real browser: JupyterLab and Voila servers, headless Chromium, explorer moves.

The servers run on 127.0.0.1 with a random free port and token, with their runtime, config, data,
settings and workspace folders in a temporary directory, so nothing of the user's Jupyter set-up is
read or touched. Chromium is Debian's, driven by the ``playwright`` package (which never downloads a
browser here). An explorer is a ``bnlib.course.widgets.Explorer``: its controls, an HTML readout
(``.bn-readout``, ``.bn-error`` when ``draw`` raised) and a PNG image (``.bn-plot``).
"""

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
HOW_TO_ENABLE = ("The browser tests need Debian's Chromium at /usr/bin/chromium and the playwright package: "
                 "`sudo apt-get install chromium` and `pip install playwright` "
                 "(never `playwright install`: the system browser is used).")
# Text that JupyterLab or ipywidgets show when a cell or a widget failed.
ERROR_MARKS = ("Traceback (most recent call last)", "Error displaying widget", "Error rendering output",
               "Failed to display Jupyter Widget")
NO_NEWS = {"@jupyterlab/apputils-extension/notification.jupyterlab-settings":
           {"checkForUpdates": False, "fetchNews": "false"}}


def missing_browser():
    """Why the browser tests cannot run here, or None when they can."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed. " + HOW_TO_ENABLE
    if not os.access(CHROMIUM, os.X_OK):
        return f"{CHROMIUM} is missing. " + HOW_TO_ENABLE
    return None


def widget_notebooks(folder):
    """The notebooks of ``folder`` that build explorers (their code mentions ``bnlib.course.widgets``)."""
    return [path for path in sorted(Path(folder).glob("*.ipynb"))
            if any("bnlib.course.widgets" in "".join(cell["source"])
                   for cell in json.loads(path.read_text())["cells"] if cell["cell_type"] == "code")]


def copy_course(root, destination):
    """A working copy of the course at ``destination``: ``notebooks/`` copied (so autosave and outputs
    never reach the real notebooks), every other top-level entry linked, so relative paths still work."""
    destination.mkdir(parents=True, exist_ok=True)
    shutil.copytree(root / "notebooks", destination / "notebooks",
                    ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    for entry in root.iterdir():
        if entry.name != "notebooks" and not entry.name.startswith("."):
            (destination / entry.name).symlink_to(entry)
    return destination


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def alive(pid):
    """True while ``pid`` is a live process (a ``<defunct>`` zombie counts as gone). Asks ``ps``."""
    state = subprocess.run(["ps", "-o", "stat=", "-p", str(pid)], capture_output=True, text=True).stdout
    return bool(state.strip()) and not state.strip().startswith("Z")


def descendants(pid):
    children = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True,
                              text=True).stdout.split()
    return [int(c) for c in children] + [d for c in children for d in descendants(int(c))]


class Server:
    """A Jupyter server process (JupyterLab or Voila) in its own process group, logging to a file."""

    def __init__(self, argv, cwd, home, port, token):
        self.port, self.token, self.home = port, token, home
        self.url = f"http://127.0.0.1:{port}"
        self.log = home / "server.log"
        env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(home / "runtime"), JUPYTER_CONFIG_DIR=str(home / "config"),
                   JUPYTER_DATA_DIR=str(home / "data"), JUPYTERLAB_SETTINGS_DIR=str(home / "settings"),
                   JUPYTERLAB_WORKSPACES_DIR=str(home / "workspaces"))
        with open(self.log, "w") as log:
            self.process = subprocess.Popen(argv, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True)

    def wait_until_listening(self, timeout=120):
        """Connect to the port (a GET on Voila's page would execute the notebook)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited with code {self.process.returncode}:\n{self.log_tail()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"the server did not listen on port {self.port} within {timeout} s:\n{self.log_tail()}")

    def log_tail(self, lines=40):
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def api(self, path, method="GET"):
        request = urllib.request.Request(f"{self.url}{path}?token={self.token}", method=method)
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
        return json.loads(body) if body else None

    def end_sessions(self, path):
        """Shut down the kernels of the notebook at ``path`` (relative to the server's root)."""
        for session in self.api("/api/sessions"):
            if session["path"] == path:
                self.api(f"/api/sessions/{session['id']}", method="DELETE")

    def stop(self):
        """SIGTERM the process group (the server then shuts its kernels down), SIGKILL what is left,
        kernels included, and check with ``ps`` that every process is gone."""
        family = [self.process.pid] + descendants(self.process.pid)
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=15)
        except ProcessLookupError:
            self.process.wait(timeout=15)
        deadline = time.monotonic() + 10
        while any(alive(pid) for pid in family) and time.monotonic() < deadline:
            time.sleep(0.2)
        for pid in filter(alive, family):
            os.kill(pid, signal.SIGKILL)
        left = [pid for pid in family if alive(pid)]
        assert not left, f"server processes {left} survived the shutdown"


def start_lab(course, home, open_file):
    """JupyterLab as ``make lab`` starts it (the course folder as root, ``open_file`` to open first), with
    the news toast off and ``window.jupyterapp`` exposed."""
    settings = home / "settings"
    for name, values in NO_NEWS.items():
        (settings / name).parent.mkdir(parents=True, exist_ok=True)
        (settings / name).write_text(json.dumps(values))
    port, token = free_port(), secrets.token_hex(16)
    argv = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
            f"--IdentityProvider.token={token}", "--allow-root", "--LabApp.news_url=None",
            "--LabApp.expose_app_in_browser=True", f"--ServerApp.root_dir={course}", str(open_file)]
    return Server(argv, course, home, port, token).wait_until_listening()


def start_voila(notebook, home):
    """Voila serving one notebook as an app: no code, tracebacks shown."""
    port, token = free_port(), secrets.token_hex(16)
    argv = [sys.executable, "-m", "voila", str(notebook), "--no-browser", f"--port={port}",
            "--Voila.ip=127.0.0.1", f"--token={token}", "--show_tracebacks=True",
            "--VoilaConfiguration.extension_denylist=['jupyterlab-jupytext','@jupyter-notebook/lab-extension']"]
    return Server(argv, notebook.parent, home, port, token).wait_until_listening()


def launch_chromium(playwright, profile):
    """Debian's Chromium, headless, with a fresh profile folder."""
    return playwright.chromium.launch_persistent_context(
        str(profile), executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS,
        viewport={"width": 1400, "height": 1400})


def wait_for(condition, timeout, message):
    """Poll ``condition()`` until it returns something true; fail with ``message()`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(message())
        time.sleep(0.25)


def kernel_idle(server, path):
    """The notebook's kernel exists, a browser is connected to it, and it is idle. (JupyterLab's own
    indicator says idle before the kernel exists.)"""
    sessions = [s for s in server.api("/api/sessions") if s["path"] == path]
    return any(s["kernel"]["execution_state"] == "idle" and s["kernel"]["connections"] >= 1 for s in sessions)


def run_all(page, timeout):
    """Run every cell of the notebook open in JupyterLab; return the cells that did not run and the
    error outputs, read from the notebook's model."""
    page.evaluate("""() => {
        window.bnRunAll = 'running';
        window.jupyterapp.commands.execute('notebook:run-all-cells').then(
            () => { window.bnRunAll = 'done'; }, error => { window.bnRunAll = 'failed: ' + error; });
    }""")
    page.wait_for_function("() => window.bnRunAll !== 'running'", timeout=timeout * 1000)
    return page.evaluate("""() => {
        const cells = window.jupyterapp.shell.currentWidget.content.model.cells;
        const outcome = {command: window.bnRunAll, unrun: [], errors: []};
        for (let i = 0; i < cells.length; i++) {
            const cell = cells.get(i);
            if (cell.type !== 'code') continue;
            if (!cell.executionCount) outcome.unrun.push(i);
            for (const output of cell.outputs.toJSON())
                if (output.output_type === 'error')
                    outcome.errors.push(`cell ${i}: ${output.ename}: ${output.evalue}`);
        }
        return outcome;
    }""")


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
    quiet_for = 0.5 if idle else 2.0
    last = {"state": None, "since": time.monotonic()}

    def steady():
        now = state(explorer)
        if now != last["state"]:
            last.update(state=now, since=time.monotonic())
        return time.monotonic() - last["since"] > quiet_for and (idle is None or idle()) and now

    return wait_for(steady, timeout, lambda: f"the explorer kept changing for {timeout} s")


def controls(explorer):
    """The control widgets of an explorer: the children of its first row."""
    return explorer.locator(":scope > .widget-hbox").first.locator(":scope > *").all()


def describe(control):
    label = control.locator(".widget-label").first
    return label.inner_text().strip() if label.count() else control.get_attribute("class")


def drag_slider(page, control):
    """Drag the noUi handle to a quarter of the track from the far end (snaps even with two options)."""
    handle = control.locator(".noUi-handle").first
    handle.scroll_into_view_if_needed()
    grip, track = handle.bounding_box(), control.locator(".noUi-target").first.bounding_box()
    x, y = grip["x"] + grip["width"] / 2, grip["y"] + grip["height"] / 2
    target = track["x"] + track["width"] * (0.75 if x < track["x"] + track["width"] / 2 else 0.25)
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
    """Select a different option of a dropdown (the next one, or the first at the end)."""
    select = control.locator("select").first
    current = select.evaluate("s => s.selectedIndex")
    select.select_option(index=(current + 1) % select.locator("option").count())


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
    show. Writes a screenshot of the explorer after each move. ``idle()`` tells whether the notebook's
    kernel is idle, when the server lets us know."""
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
            finally:
                explorer.screenshot(path=screenshots / f"{name} control {number} {how}.png".replace(" ", "_"))


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
