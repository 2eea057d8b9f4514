"""Notebooks cut to the cells some of them need (``notebook_slice``): the browser tests open each notebook reduced
to the cells its explorers need (``browser.explorer_slice``); the classroom test grades a blank submission cut to
its exercises."""

import json
from pathlib import Path

from browser import explorer_slice, widget_notebooks, write_explorer_notebook
from notebook_slice import needed_cells

ROOT = Path(__file__).resolve().parent.parent


def test_the_slice_keeps_the_set_up_the_explorer_calls_and_what_they_use_only():
    cells = ["%matplotlib inline\nimport numpy as np",
             "from bnlib.course.ch05.explorers import ema_explorer",
             "steps = 30\nprint(steps)",
             "unused = np.ones(3)  # a figure of the chapter",
             "for k in range(3):\n    momentum = 0.1 * k",
             "ema_explorer(steps=steps, momentum=momentum)",
             "steps = 1  # rebinds a name after the explorer: not needed"]
    assert explorer_slice(cells) == [cells[0], cells[1], cells[2], cells[4], cells[5]]


def test_names_a_cell_binds_for_itself_need_no_other_cell():
    cells = ["import numpy as np",
             "h, k = 2, 3  # binds the names that f and the comprehension use as their own",
             "total = 3",
             "def f(x):\n    h = x + 1\n    return np.array([h * k for k in range(3)]).sum() + total",
             "y = 5\nprint(y)",
             "y = 1\nprint(f(y))"]
    assert needed_cells(cells, {5}) == [0, 2, 3, 5]
    assert needed_cells(cells + ["print(h + k)"], {6}) == [0, 1, 6]
    assert needed_cells(cells + ["total += 1\nprint(total)"], {6}) == [0, 2, 6]  # += reads the name first


def test_the_slice_of_every_course_notebook_still_builds_all_its_explorers(tmp_path):
    notebooks = widget_notebooks(ROOT / "notebooks")
    assert notebooks
    for notebook, count in notebooks.items():
        reduced = write_explorer_notebook(notebook, tmp_path / notebook.name)
        assert widget_notebooks(tmp_path)[reduced] == count, notebook.name
        kept = len(json.loads(reduced.read_text())["cells"])
        total = sum(cell["cell_type"] == "code" for cell in json.loads(notebook.read_text())["cells"])
        assert kept < total, f"{notebook.name}: the slice keeps every cell"
