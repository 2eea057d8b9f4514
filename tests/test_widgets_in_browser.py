"""A learner sees working explorers: in JupyterLab and in the Voila app, driven by headless Chromium.

Every notebook whose code uses ``bnlib.course.widgets`` is opened in JupyterLab (a copy of it, so autosave
never writes outputs into the course), all its cells are run, and each control of each explorer is
moved the way a learner would (sliders dragged and nudged with the keyboard, dropdowns switched):
the readout and the plot's PNG bytes must both change and no error may appear. Screenshots of each
explorer after each move, the page and the server log are kept in ``test-artifacts/`` when a test fails.

This file runs after ``test_notebooks.py``, which leaves the experiments' results cached.
Without Chromium or playwright the tests skip on a learner's machine, and fail in CI (``CI=true``).
"""

import os
import shutil
from contextlib import contextmanager
from pathlib import Path

import pytest
from browser import (assert_no_errors, copy_course, exercise, kernel_idle, launch_chromium, missing_browser, run_all,
                     start_lab, start_voila, wait_for, widget_notebooks)

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = widget_notebooks(ROOT / "notebooks")
FIRST = ROOT / "notebooks" / "01_input_normalization.ipynb"  # what `make lab` opens
APP = ROOT / "notebooks" / "06_mnist_percentiles.ipynb"  # what `make app` serves
RUN_TIMEOUT = 900  # seconds for Run All; cached results make it much faster

# Slow, and run one after another on one test worker (they start servers and browsers of their own).
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("browser")]


def in_ci():
    return os.environ.get("CI", "").lower() in ("true", "1", "yes")


@pytest.fixture(scope="module")
def chromium(tmp_path_factory):
    reason = missing_browser()
    if reason:
        (pytest.fail if in_ci() else pytest.skip)(reason)
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
    server = start_lab(course, tmp_path_factory.mktemp("jupyterlab"), course / "notebooks" / FIRST.name)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def screenshots(tmp_path):
    folder = tmp_path / "screenshots"
    folder.mkdir()
    return folder


@contextmanager
def kept_on_failure(page, folder, name, server):
    """On failure: a full-page screenshot and the server log join the explorer screenshots in
    ``test-artifacts/<name>/`` (cleared first, so what is there belongs to the last run)."""
    kept = ROOT / "test-artifacts" / name
    shutil.rmtree(kept, ignore_errors=True)
    try:
        yield
    except BaseException:
        try:
            page.screenshot(path=folder / "page.png", full_page=True)
        finally:
            shutil.copy(server.log, folder / "server.log")
            shutil.copytree(folder, kept)
        raise


def test_the_course_has_widget_notebooks():
    assert NOTEBOOKS, "no notebook in notebooks/ uses bnlib.course.widgets"


def test_jupyterlab_opens_at_the_first_notebook(lab, chromium):
    """``make lab`` opens the first notebook, with the whole course in the file browser."""
    path = f"notebooks/{FIRST.name}"
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


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_explorers_respond_in_jupyterlab(notebook, lab, chromium, screenshots):
    path = f"notebooks/{notebook.name}"
    page = chromium.new_page()
    try:
        with kept_on_failure(page, screenshots, f"jupyterlab-{notebook.stem}", lab):
            page.goto(f"{lab.url}/lab/tree/{path}?reset&token={lab.token}")
            page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
            wait_for(lambda: kernel_idle(lab, path), 120, lambda: f"{path}: the kernel never became idle")

            outcome = run_all(page, RUN_TIMEOUT)
            assert outcome == {"command": "done", "unrun": [], "errors": []}, f"{path}: Run All: {outcome}"
            wait_for(lambda: kernel_idle(lab, path), RUN_TIMEOUT, lambda: f"{path}: the kernel stayed busy")
            assert_no_errors(page, f"{path} after Run All")

            explorers = page.locator(".bn-explorer").all()
            assert explorers, f"{path} uses bnlib.course.widgets but shows no explorer after Run All"
            for number, explorer in enumerate(explorers, 1):
                exercise(page, explorer, f"{notebook.stem} explorer {number}", screenshots,
                         lambda: kernel_idle(lab, path))
    finally:
        page.close()
        lab.end_sessions(path)


def test_app_explorers_respond_in_voila(chromium, course, tmp_path_factory, screenshots):
    server = start_voila(course / "notebooks" / APP.name, tmp_path_factory.mktemp("voila"))
    page = chromium.new_page()
    try:
        with kept_on_failure(page, screenshots, f"voila-{APP.stem}", server):
            page.goto(f"{server.url}/?token={server.token}", wait_until="commit")
            page.wait_for_selector(".bn-explorer .bn-plot", timeout=RUN_TIMEOUT * 1000)
            assert_no_errors(page, f"the Voila app of {APP.name}")
            code = page.locator(".jp-CodeCell .jp-InputArea, .cm-editor").count()
            assert not code, f"the app shows the code of {APP.name}"
            for number, explorer in enumerate(page.locator(".bn-explorer").all(), 1):
                exercise(page, explorer, f"voila {APP.stem} explorer {number}", screenshots)
    finally:
        page.close()
        server.stop()
