"""Every notebook is committed clean. (Each runs top to bottom in a fresh kernel in tests/test_classroom.py,
where nbgrader grades it.)"""

from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted(path for path in (Path(__file__).resolve().parent.parent / "notebooks").rglob("*.ipynb")
                   if ".ipynb_checkpoints" not in path.parts)


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 1


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_committed_without_outputs(path):
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    dirty = [i for i, cell in enumerate(notebook.cells)
             if cell.cell_type == "code" and (cell.outputs or cell.execution_count)]
    assert not dirty, f"{path.name}: cells {dirty} hold outputs; clear them before committing"
