"""Every notebook is committed clean, and the chapters are numbered in order, each listed in the README.
(Each runs top to bottom in a fresh kernel in tests/test_classroom.py, where nbgrader grades it.)"""

import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted(path for path in (ROOT / "notebooks").rglob("*.ipynb") if ".ipynb_checkpoints" not in path.parts)
CHAPTERS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def test_chapters_are_numbered_from_01_without_gaps_each_with_its_package_and_in_the_readme():
    numbers = [int(path.name[:2]) for path in CHAPTERS]
    assert numbers == list(range(1, len(numbers) + 1)) and len(numbers) >= 9, numbers
    listed = re.findall(r"\]\(notebooks/(\d\d_\w+\.ipynb)\)", (ROOT / "README.md").read_text())
    assert listed == [path.name for path in CHAPTERS], "the README's table of notebooks and notebooks/ differ"
    for number in numbers:
        assert (ROOT / "bnlib" / "course" / f"ch{number:02d}" / "__init__.py").is_file(), f"no package ch{number:02d}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_committed_without_outputs(path):
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    dirty = [i for i, cell in enumerate(notebook.cells)
             if cell.cell_type == "code" and (cell.outputs or cell.execution_count)]
    assert not dirty, f"{path.name}: cells {dirty} hold outputs; clear them before committing"
