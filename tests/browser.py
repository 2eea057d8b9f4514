"""Drive the course in a real browser: JupyterLab and Voila servers, headless Chromium, the notebooks
that build explorers. (What a learner does with an explorer is in ``browser_explorers``.)

The servers run on 127.0.0.1 with a random free port and token, with their runtime, config, data,
settings and workspace folders in a temporary directory, so nothing of the user's Jupyter set-up is
read or touched (nbgrader's extensions are switched off there). Chromium is Debian's, driven by the
``playwright`` package (which never downloads a browser here), in a 1280 x 800 window.
"""

import ast
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from notebook_slice import needed_cells, python_of

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
HOW_TO_ENABLE = ("The browser tests need Debian's Chromium at /usr/bin/chromium and the playwright package: "
                 "`sudo apt-get install chromium` and `pip install playwright` "
                 "(never `playwright install`: the system browser is used).")
NO_NEWS = {"@jupyterlab/apputils-extension/notification.jupyterlab-settings":
           {"checkForUpdates": False, "fetchNews": "false"}}
# nbgrader's server and JupyterLab extensions (formgrader, assignment list...) have no course here: off in the
# servers' own config folder, so JupyterLab starts as a learner's does without them.
NBGRADER_SERVER_EXTENSIONS = ("formgrader", "validate_assignment", "assignment_list", "course_list")
NO_NBGRADER = {
    "jupyter_server_config.json": {"ServerApp": {"jpserver_extensions": {
        f"nbgrader.server_extensions.{name}": False for name in NBGRADER_SERVER_EXTENSIONS}}},
    "labconfig/page_config.json": {"disabledExtensions": {"@jupyter/nbgrader": True}},
}
SCREEN = {"width": 1280, "height": 800}  # a projector's screen: every explorer must fit it, controls included
WIDE_SCREEN = {"width": 1920, "height": 1080}


def require_browser():
    """Skip the calling test when Chromium or playwright is missing; fail instead under ``CI=true``, where a
    missing browser is a broken set-up, not a choice."""
    import pytest

    reason = missing_browser()
    if reason:
        (pytest.fail if os.environ.get("CI", "").lower() in ("true", "1", "yes") else pytest.skip)(reason)


def missing_browser():
    """Why the browser tests cannot run here, or None when they can."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed. " + HOW_TO_ENABLE
    if not os.access(CHROMIUM, os.X_OK):
        return f"{CHROMIUM} is missing. " + HOW_TO_ENABLE
    return None


def explorer_calls(tree, aliases):
    """How many calls of ``*_explorer(...)`` from a chapter's ``explorers`` module the code ``tree`` makes.

    ``aliases`` maps the names bound so far to what they import (updated with this code's imports): a call
    counts if its function is such a name (``from bnlib.course.ch05.explorers import ema_explorer``) or an
    attribute of one (``explorers.ema_explorer`` after ``from bnlib.course.ch05 import explorers``,
    ``bnlib.course.ch05.explorers.ema_explorer`` after ``import bnlib.course.ch05.explorers``).
    """
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                aliases[alias.asname or alias.name.split(".")[0]] = alias.name if alias.asname else alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    count = 0
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        parts, function = [], node.func
        while isinstance(function, ast.Attribute):
            parts.insert(0, function.attr)
            function = function.value
        if not isinstance(function, ast.Name) or function.id not in aliases:
            continue
        target = ".".join([aliases[function.id], *parts])
        if re.fullmatch(r"bnlib\.course\.ch\d\d\.explorers\.\w+_explorer", target):
            count += 1
    return count


def explorer_slice(cells):
    """The code cells (sources) that building a notebook's explorers needs, in order: the set-up, every cell
    that calls an explorer, and every earlier cell that binds a name a kept cell uses
    (``notebook_slice.needed_cells``). What the chapter computes only to print or plot is left out."""
    return [cells[index] for index in explorer_cells(cells)]


def explorer_cells(cells):
    """The indices of ``explorer_slice``'s cells among ``cells``."""
    aliases = {}
    calls = {index for index, source in enumerate(cells) if explorer_calls(python_of(source), aliases)}
    return needed_cells(cells, calls)


def write_explorer_notebook(notebook, destination):
    """``notebook`` reduced to ``explorer_slice`` of its code cells, written to ``destination``."""
    content = json.loads(Path(notebook).read_text())
    code = [cell for cell in content["cells"] if cell["cell_type"] == "code"]
    kept = explorer_cells(["".join(cell["source"]) for cell in code])
    content["cells"] = [code[index] for index in kept]  # with their ids, and no output (the notebooks have none)
    Path(destination).write_text(json.dumps(content, indent=1))
    return destination


def widget_notebooks(folder):
    """``{notebook: number of explorers}`` for the notebooks of ``folder`` whose code cells call an explorer
    (any ``*_explorer(...)`` function of a chapter's ``explorers`` module)."""
    found = {}
    for path in sorted(Path(folder).glob("*.ipynb")):
        aliases, count = {}, 0
        for cell in json.loads(path.read_text())["cells"]:
            if cell["cell_type"] == "code":
                count += explorer_calls(python_of("".join(cell["source"])), aliases)
        if count:
            found[path] = count
    return found


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


def write_json_files(folder, files):
    for name, values in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(json.dumps(values))


def start_lab(course, home, open_file):
    """JupyterLab as ``make lab`` starts it (the course folder as root, ``open_file`` to open first), with
    the news toast and nbgrader off and ``window.jupyterapp`` exposed."""
    write_json_files(home / "settings", NO_NEWS)
    write_json_files(home / "config", NO_NBGRADER)
    port, token = free_port(), secrets.token_hex(16)
    argv = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
            f"--IdentityProvider.token={token}", "--allow-root", "--LabApp.news_url=None",
            "--LabApp.expose_app_in_browser=True", f"--ServerApp.root_dir={course}", str(open_file)]
    return Server(argv, course, home, port, token).wait_until_listening()


def start_voila(notebook, home, config_folder, *options):
    """Voila serving one notebook as an app, as ``make app`` starts it: its settings from ``voila.json`` in
    ``config_folder``, then ``options`` (command-line settings), tracebacks shown."""
    port, token = free_port(), secrets.token_hex(16)
    argv = [sys.executable, "-m", "voila", str(notebook), "--no-browser", f"--port={port}",
            "--Voila.ip=127.0.0.1", f"--token={token}", "--show_tracebacks=True",
            f"--Voila.config_file_paths={config_folder}", *options]
    return Server(argv, notebook.parent, home, port, token).wait_until_listening()


def kernels(server):
    """The server's live kernel processes (Voila's API does not list them)."""
    def is_kernel(pid):
        try:
            return b"ipykernel_launcher" in Path(f"/proc/{pid}/cmdline").read_bytes() and alive(pid)
        except OSError:
            return False
    return [pid for pid in descendants(server.process.pid) if is_kernel(pid)]


def launch_chromium(playwright, profile):
    """Debian's Chromium, headless, with a fresh profile folder."""
    return playwright.chromium.launch_persistent_context(
        str(profile), executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS, viewport=SCREEN,
        device_scale_factor=1)


def wait_for(condition, timeout, message):
    """Poll ``condition()`` until it returns something true; fail with ``message()`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(message())
        time.sleep(0.1)


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
