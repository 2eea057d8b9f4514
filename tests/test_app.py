"""The classroom app (``make app``): its registry of items, its page, its notebook and its Voila settings.
(``test_widgets_in_browser.py`` serves it with Voila and looks at it in Chromium.)"""

import ast
import importlib
import inspect
import json
from pathlib import Path

import ipywidgets as widgets
import nbformat

from bnlib.course import app

ROOT = Path(__file__).resolve().parent.parent
APP_FOLDER = ROOT / "notebooks" / "app"
CHAPTERS_WITH_EXPLORERS = sorted(path.parent.name for path in (ROOT / "bnlib" / "course").glob("ch*/explorers.py"))


def test_every_explorer_of_the_course_is_in_the_app():
    """Each ``*_explorer`` of a chapter's ``explorers`` module is an item of the app (``chNN.name`` in ITEMS)."""
    used = {(node.value.id, node.attr) for node in ast.walk(ast.parse(inspect.getsource(app)))
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)}
    assert len(CHAPTERS_WITH_EXPLORERS) >= 9
    for chapter in CHAPTERS_WITH_EXPLORERS:
        module = importlib.import_module(f"bnlib.course.{chapter}.explorers")
        names = {name for name, value in vars(module).items()
                 if name.endswith("_explorer") and getattr(value, "__module__", None) == module.__name__}
        assert names, f"bnlib/course/{chapter}/explorers.py defines no *_explorer function"
        missing = {(chapter, name) for name in names} - used
        assert not missing, f"add a line to ITEMS in bnlib/course/app.py for {sorted(missing)}"


def test_items_have_a_known_chapter_and_a_short_caption_without_links():
    for chapter, caption, build in app.ITEMS:
        assert chapter in app.CHAPTERS and callable(build)
        assert len(caption) <= 120 and "http" not in caption and "<" not in caption, caption
    assert app.FIRST in app.chapters() and app.chapters() == sorted(app.chapters())


def test_a_chapter_is_built_once_with_a_caption_over_each_item(monkeypatch):
    built = []

    def item():
        built.append(1)
        return widgets.Label("an item")

    monkeypatch.setattr(app, "ITEMS", [("01", "first caption", item), ("01", "second caption", item),
                                       ("04", "other chapter", item)])
    classroom = app.Classroom("01")
    assert "Loading chapter 01" in classroom.status.value and not classroom.page.children
    classroom.show("01")
    assert len(classroom.page.children) == 4 and "first caption" in classroom.page.children[0].value
    assert classroom.status.value == "" and "bn-chapter-01" in classroom.page._dom_classes
    classroom.menu.value = "04"
    assert len(classroom.page.children) == 2 and "bn-chapter-01" not in classroom.page._dom_classes
    classroom.menu.value = "01"
    assert len(built) == 3 and len(classroom.page.children) == 4  # kept, not built again


def test_an_item_that_fails_shows_its_error_and_the_others_still_show(monkeypatch):
    def broken():
        raise RuntimeError("MNIST is missing")

    monkeypatch.setattr(app, "ITEMS", [("01", "broken", broken), ("01", "fine", lambda: widgets.Label("fine"))])
    shown = app.build("01")
    assert "MNIST is missing" in shown[1].value and "bn-error" in shown[1]._dom_classes
    assert shown[3].value == "fine"


def test_the_app_notebook_only_shows_the_classroom():
    notebook = nbformat.read(APP_FOLDER / "classroom.ipynb", as_version=4)
    assert [cell.cell_type for cell in notebook.cells] == ["code", "code"]
    assert all(not cell.outputs and cell.execution_count is None for cell in notebook.cells)
    assert "from bnlib.course.app import" in notebook.cells[0].source


def test_voila_settings_shut_kernels_down():
    """Kernels of closed pages go at once (the page's request needs no XSRF token: Voila's unload request
    carries none), kernels of pages that lost their connection after a short idle time, and kernels of
    open pages never; cells render as they run, so the page says what is loading."""
    config = json.loads((APP_FOLDER / "voila.json").read_text())
    culling = config["MappingKernelManager"]
    assert 0 < culling["cull_idle_timeout"] <= 120 and 0 < culling["cull_interval"] <= 30
    assert culling["cull_connected"] is False and culling["cull_busy"] is False
    assert config["Voila"]["tornado_settings"]["disable_check_xsrf"] is True
    assert config["VoilaConfiguration"]["progressive_rendering"] is True
