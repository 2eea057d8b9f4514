"""A learner and an instructor see working explorers that fit the screen: in JupyterLab and in the Voila app
(``make app``), driven by headless Chromium at 1280 x 800 (a projector's screen).

Every notebook that calls an explorer (a ``*_explorer(...)`` function of a chapter's ``explorers``) is opened
in JupyterLab as a copy reduced to the cells its explorers need (``browser.explorer_slice``: the set-up
cell, the explorer calls and the cells that compute what they are given; ``test_classroom`` runs every cell
of every notebook), all of them are run, and each explorer is screenshot and measured: controls, readout and
plot must fit the notebook's visible area, no label may be cut, every slider track must be at least 200 px
wide, and the plot must be shown with at least 2 image pixels per CSS pixel, never stretched. Then each
control is moved the way a learner would (sliders dragged and nudged with the keyboard, dropdowns switched):
the readout and the plot's PNG bytes must both change and no error may appear. The app is checked the same
way, chapter by chapter, for how far down its first explorer sits, for links that do not answer, and for
kernels left behind when pages close. Screenshots of each explorer, the page and the server log are kept in
``test-artifacts/`` when a test fails.

A result not cached yet is computed on the way (the first Run All or app load may train networks).
Without Chromium or playwright the tests skip on a learner's machine, and fail in CI (``CI=true``).
"""

import json
import shutil
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest
from browser import (SCREEN, WIDE_SCREEN, copy_course, kernel_idle, kernels, launch_chromium, require_browser,
                     run_all, start_lab, start_voila, wait_for, widget_notebooks, write_explorer_notebook)
from browser_explorers import assert_no_errors, exercise, layout, layout_problems

from bnlib.course.app import CHAPTERS, FIRST, chapters

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = widget_notebooks(ROOT / "notebooks")  # {notebook: number of explorers it builds}
FIRST_NOTEBOOK = ROOT / "notebooks" / "01_input_normalization.ipynb"  # what `make lab` opens
APP = ROOT / "notebooks" / "app" / "classroom.ipynb"  # what `make app` serves, with notebooks/app/voila.json
RUN_TIMEOUT = 900  # seconds for Run All or the app's first chapter; cached results make them much faster

# Slow. All run one after another on one test worker, with one browser, the first tests of the run
# (conftest.py): the other worker computes while these wait for pages and kernels.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("browser")]


@pytest.fixture(scope="module")
def chromium(tmp_path_factory):
    require_browser()
    from playwright.sync_api import sync_playwright

    playwright = sync_playwright().start()
    try:
        context = launch_chromium(playwright, tmp_path_factory.mktemp("chromium-profile"))
        try:
            yield context
        finally:
            context.close()
    finally:
        playwright.stop()


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    return copy_course(ROOT, tmp_path_factory.mktemp("course"))


@pytest.fixture(scope="module")
def lab(chromium, course, tmp_path_factory):
    server = start_lab(course, tmp_path_factory.mktemp("jupyterlab"), course / "notebooks" / FIRST_NOTEBOOK.name)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def lab_page(lab, chromium):
    """One JupyterLab page in which the notebooks are opened one after another, as a learner goes from
    chapter to chapter: JupyterLab loads once."""
    page = chromium.new_page()
    try:
        page.goto(f"{lab.url}/lab?reset&token={lab.token}")
        page.wait_for_function("() => window.jupyterapp !== undefined", timeout=60_000)
        page.evaluate("async () => { await window.jupyterapp.restored; }")
        yield page
    finally:
        page.close()


@pytest.fixture
def screenshots(tmp_path):
    folder = tmp_path / "screenshots"
    folder.mkdir()
    return folder


@contextmanager
def kept_on_failure(page, folder, name, server):
    """On failure: a full-page screenshot and the server log join the explorer screenshots in
    ``test-artifacts/<name>/`` (cleared first, so what is there belongs to the last run)."""
    from playwright.sync_api import Error as PlaywrightError

    kept = ROOT / "test-artifacts" / name
    shutil.rmtree(kept, ignore_errors=True)
    try:
        yield
    except BaseException:
        try:
            page.screenshot(path=folder / "page.png", full_page=True)
        except PlaywrightError as err:  # the page was closed: keep the rest
            (folder / "page.txt").write_text(f"no screenshot of the page: {err}")
        shutil.copy(server.log, folder / "server.log")
        shutil.copytree(folder, kept)
        raise


def check_fit(explorer, name, screenshots, area=None):
    """Screenshot the explorer as it shows at 1280 x 800 and assert that it fits ``area`` (the window by
    default) with usable controls and a sharp plot."""
    explorer.scroll_into_view_if_needed()
    explorer.screenshot(path=screenshots / f"{name} at {SCREEN['width']}x{SCREEN['height']}.png".replace(" ", "_"))
    measured = layout(explorer, area)
    (width, height), (area_width, area_height) = measured["explorer"], measured["area"]
    print(f"{name}: {width} x {height} px in {area_width} x {area_height}; plot {measured['plot'][0]} x "
          f"{measured['plot'][1]} px from {measured['png'][0]} x {measured['png'][1]} pixels")
    problems = layout_problems(measured)
    assert not problems, f"{name}: " + "; ".join(problems) + f"\n{json.dumps(measured)}"
    return measured


def test_the_browser_tests_share_one_worker(request):
    """Under ``make test`` (``--dist loadgroup``) pytest-xdist keeps this module on one worker, one browser
    and one server of each kind, by appending the group to each test's node id. A pytest release can break
    that silently (9.2 did: pytest-xdist's issue 1386), so the node id is checked here."""
    if getattr(request.config.option, "loadgroup", False):  # set on the workers of a --dist loadgroup run
        assert request.node.nodeid.endswith("@browser"), \
            f"pytest-xdist did not group {request.node.nodeid} (pytest {pytest.__version__}): see pyproject.toml"


def test_the_course_has_widget_notebooks():
    assert NOTEBOOKS, "no notebook in notebooks/ calls an explorer of a chapter"


def test_jupyterlab_opens_at_the_first_notebook(lab, chromium):
    """``make lab`` opens the first notebook, with the whole course in the file browser."""
    path = f"notebooks/{FIRST_NOTEBOOK.name}"
    opener = next((lab.home / "runtime").glob("jpserver-file-to-run-*-open.html"))
    page = chromium.new_page()
    try:
        page.goto(opener.as_uri())
        page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
        assert page.evaluate("() => window.jupyterapp.shell.currentWidget.context.path") == path
        assert "".join(page.locator(".jp-BreadCrumbs").inner_text().split()) == "/notebooks/"
        top = {entry["name"] for entry in lab.api("/api/contents")["content"]}
        assert {"notebooks", "bnlib", "figures"} <= top, f"the file browser's root shows only {top}"
    finally:
        page.close()
        lab.end_sessions(path)


@pytest.mark.parametrize("notebook", list(NOTEBOOKS), ids=[p.stem for p in NOTEBOOKS])
def test_explorers_fit_and_respond_in_jupyterlab(notebook, lab, lab_page, course, screenshots):
    path = f"notebooks/{notebook.stem}-explorers.ipynb"
    write_explorer_notebook(notebook, course / path)
    page = lab_page
    try:
        with kept_on_failure(page, screenshots, f"jupyterlab-{notebook.stem}", lab):
            page.evaluate("async path => { await window.jupyterapp.commands.execute('docmanager:open', {path}); }", path)
            page.wait_for_selector(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-Cell", timeout=60_000)
            assert page.evaluate("() => window.jupyterapp.shell.currentWidget.context.path") == path
            wait_for(lambda: kernel_idle(lab, path), 120, lambda: f"{path}: the kernel never became idle")
            assert not page.evaluate("() => window.jupyterapp.shell.currentWidget.context.model.dirty"), \
                f"{path}: opening it marked it modified (its metadata is not what JupyterLab writes)"

            outcome = run_all(page, RUN_TIMEOUT)
            assert outcome == {"command": "done", "unrun": [], "errors": []}, f"{path}: Run All: {outcome}"
            wait_for(lambda: kernel_idle(lab, path), RUN_TIMEOUT, lambda: f"{path}: the kernel stayed busy")
            assert_no_errors(page, f"{path} after Run All")

            explorers = page.locator(".bn-explorer").all()
            assert len(explorers) >= NOTEBOOKS[notebook], \
                f"{path} calls {NOTEBOOKS[notebook]} explorer(s) but shows {len(explorers)} after Run All"
            notebook_area = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-WindowedPanel-outer").first
            for number, explorer in enumerate(explorers, 1):
                name = f"{notebook.stem} explorer {number}"
                check_fit(explorer, name, screenshots, notebook_area)
                exercise(page, explorer, name, screenshots, lambda: kernel_idle(lab, path))
    finally:  # closed without the question whether to save the run's outputs, then its kernel shut down
        page.evaluate("""() => {
            for (const widget of Array.from(window.jupyterapp.shell.widgets('main'))) {
                if (widget.context) widget.context.model.dirty = false;
                widget.dispose();
            }
        }""")
        lab.end_sessions(path)


@pytest.fixture(scope="module")
def app(chromium, course, tmp_path_factory):
    """``make app``'s Voila server."""
    server = start_voila(course / "notebooks" / "app" / APP.name, tmp_path_factory.mktemp("voila"),
                         course / "notebooks" / "app")
    try:
        yield server
    finally:
        server.stop()


def open_app(page, server, says_loading=False):
    """Load the app; return the seconds until the first explorer's plot shows. With ``says_loading``, the
    page must first say which chapter it is loading (while the first chapter is built)."""
    start = time.monotonic()
    page.goto(f"{server.url}/?token={server.token}", wait_until="commit")
    if says_loading:
        page.wait_for_selector(f".bn-status:has-text('Loading chapter {FIRST}')", timeout=RUN_TIMEOUT * 1000)
    page.wait_for_selector(".bn-explorer .bn-plot", timeout=RUN_TIMEOUT * 1000)
    return time.monotonic() - start


def app_height(page):
    """The height of the app's page in CSS px (Voila scrolls an element, not the document)."""
    return page.evaluate("() => Math.max(...[...document.querySelectorAll('*')].map(e => e.scrollHeight))")


def broken_links(page, server):
    """Links on the page that do not answer 200 (fetched with the app's token)."""
    broken = []
    for href in page.evaluate("() => [...document.querySelectorAll('a[href]')].map(a => a.href)"):
        if not href.startswith(server.url):
            broken.append(f"{href} (leaves the app)")
            continue
        try:
            with urllib.request.urlopen(f"{href}{'&' if '?' in href else '?'}token={server.token}", timeout=30):
                pass
        except urllib.error.HTTPError as err:
            broken.append(f"{href} ({err.code})")
    return broken


@pytest.fixture(scope="module")
def app_page(app, chromium, tmp_path_factory):
    """One load of the app, as an instructor opens it in class: ``(page, seconds until the first plot)``. The
    first test checks the chapter it opens at; the others go through its menu."""
    page = chromium.new_page()
    try:
        with kept_on_failure(page, tmp_path_factory.mktemp("screenshots"), "voila-app-load", app):
            seconds = open_app(page, app, says_loading=True)
        yield page, seconds
    finally:
        page.close()


def test_app_opens_at_figure_1_and_its_explorers(app, app_page, screenshots):
    """Chapter 06 first, saying so while it loads: Figure 1 and both explorers within two screens and a
    half, Figure 1 and the whole first explorer on the first, no code, no broken link; each explorer fits 1280 x 800, is
    never stretched on a 1920 x 1080 screen, and responds to every control."""
    page, seconds = app_page
    with kept_on_failure(page, screenshots, "voila-app", app):
        page.wait_for_selector(".bn-explorer >> nth=1", timeout=RUN_TIMEOUT * 1000)
        assert_no_errors(page, "the app")
        assert page.locator(".bn-figure").count() == 1, "the app's first chapter does not show Figure 1"
        height = app_height(page)
        first = page.locator(".bn-explorer").first.bounding_box()
        top, bottom = first["y"], first["y"] + first["height"]
        print(f"app: first explorer after {seconds:.1f} s, from {top:.0f} to {bottom:.0f} px down; page {height} "
              f"px = {height / SCREEN['height']:.2f} screens of {SCREEN['height']} px")
        assert bottom <= SCREEN["height"], f"the first explorer ends {bottom:.0f} px down, below the first screen"
        assert height <= 2.5 * SCREEN["height"], f"the first chapter is {height} px tall"
        assert not page.locator(".jp-CodeCell .jp-InputArea, .cm-editor").count(), "the app shows code"
        assert not broken_links(page, app), f"broken links: {broken_links(page, app)}"
        explorers = page.locator(".bn-explorer").all()
        for number, explorer in enumerate(explorers, 1):
            check_fit(explorer, f"app {FIRST} explorer {number}", screenshots)
        page.set_viewport_size(WIDE_SCREEN)
        try:
            for number, explorer in enumerate(explorers, 1):
                measured = layout(explorer)
                assert measured["plot"][0] * 2 == measured["png"][0], \
                    f"explorer {number} at 1920 x 1080 is stretched: {json.dumps(measured)}"
        finally:  # the chapter tests use this page next
            page.set_viewport_size(SCREEN)
        for number, explorer in enumerate(explorers, 1):
            exercise(page, explorer, f"app {FIRST} explorer {number}", screenshots)


@pytest.mark.parametrize("chapter", [c for c in chapters() if c != FIRST])
def test_app_chapter_fits_the_screen(chapter, app, app_page, screenshots):
    """Every chapter the menu offers shows its explorers, without error, each fitting 1280 x 800."""
    page, _ = app_page
    with kept_on_failure(page, screenshots, f"voila-app-{chapter}", app):
        heading = f"{chapter} · {CHAPTERS[chapter]}"
        page.locator(".bn-classroom select").first.select_option(label=heading)
        shown = page.locator(f".bn-chapter-{chapter} .bn-explorer")
        shown.first.wait_for(timeout=RUN_TIMEOUT * 1000)
        assert_no_errors(page, f"the app at chapter {heading}")
        for number, explorer in enumerate(shown.all(), 1):
            check_fit(explorer, f"app {chapter} explorer {number}", screenshots)


def culled(server):
    """How many kernels the server culled for inactivity so far (from its log)."""
    return server.log.read_text(errors="replace").count("seconds of inactivity")


def test_closing_the_app_leaves_no_kernel(chromium, course, tmp_path_factory, screenshots):
    """Two loads of the app, each closed: first as a browser closes a tab (the page asks Voila to shut its
    kernel down at once), then dropped without a word (culled after the idle time, shortened here to 5 s),
    after idling connected for twice that time (an open page is never culled). Each load starts a kernel
    of about a gigabyte; after each close none is left."""
    idle = 5
    server = start_voila(course / "notebooks" / "app" / APP.name, tmp_path_factory.mktemp("voila-kernels"),
                         course / "notebooks" / "app", f"--MappingKernelManager.cull_idle_timeout={idle}",
                         "--MappingKernelManager.cull_interval=1")
    try:
        for load, unload in enumerate((True, False), 1):
            page = chromium.new_page()
            with kept_on_failure(page, screenshots, f"voila-kernels-{load}", server):
                open_app(page, server)
                if not unload:
                    time.sleep(2 * idle)
                assert len(kernels(server)) == 1, f"load {load}: {len(kernels(server))} kernels while the app is open"
                closed = time.monotonic()
                page.close(run_before_unload=unload)
                wait_for(lambda: not kernels(server), idle / 2 if unload else 6 * idle,
                         lambda load=load: f"load {load}: {len(kernels(server))} kernel(s) left after the page closed")
                print(f"load {load}: no kernel {time.monotonic() - closed:.1f} s after the page closed "
                      f"({'closed' if unload else 'dropped'})")
                assert culled(server) == (0 if unload else 1), f"load {load}: {culled(server)} kernel(s) culled"
        print(f"kernels after closing the app twice: {len(kernels(server))}")
    finally:
        server.stop()
