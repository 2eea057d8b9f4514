"""Every notebook is committed clean, and the chapters are numbered in order, each listed in the README.
(Each runs top to bottom in a fresh kernel in tests/test_classroom.py, where nbgrader grades it.)"""

import platform
import re
import sys
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


# What JupyterLab writes into a notebook when its kernel (the course's python3, ipykernel) connects: a notebook
# committed with anything else is marked modified as soon as it is opened, and autosave rewrites it.
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
LANGUAGE_INFO = {"codemirror_mode": {"name": "ipython", "version": 3}, "file_extension": ".py",
                 "mimetype": "text/x-python", "name": "python", "nbconvert_exporter": "python",
                 "pygments_lexer": "ipython3"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_carries_the_metadata_jupyterlab_writes(path):
    notebook = nbformat.read(path, as_version=4)
    assert (notebook.nbformat, notebook.nbformat_minor) == (4, 5) and all("id" in cell for cell in notebook.cells)
    assert notebook.metadata.get("kernelspec") == KERNELSPEC, notebook.metadata.get("kernelspec")
    info = dict(notebook.metadata.get("language_info", {}))
    version = info.pop("version", "")
    assert info == LANGUAGE_INFO, info
    assert version.startswith(f"{sys.version_info.major}.{sys.version_info.minor}."), \
        f"{path.name}: language_info.version {version!r}, the kernel runs {platform.python_version()}"
