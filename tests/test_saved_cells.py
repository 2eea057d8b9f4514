"""A notebook cell marked ``#@save <module>`` is the library's code, not a copy that could drift: every
function and class it defines must be, character for character, the source of the same name in that module
(the d2l convention: the chapter teaches the code, the library keeps one copy of it for the chapters after)."""

import ast
import importlib
import inspect
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))
SAVED = [(path, cell) for path in NOTEBOOKS for cell in nbformat.read(path, as_version=4).cells
         if cell.cell_type == "code" and cell.source.startswith("#@save ")]


@pytest.mark.parametrize("path, cell", SAVED, ids=[f"{p.stem}:{c.source.splitlines()[0][7:]}" for p, c in SAVED])
def test_saved_cell_is_the_librarys_source(path, cell):
    module = importlib.import_module(cell.source.splitlines()[0].split()[1])
    body = cell.source.split("\n", 1)[1]
    definitions = [node for node in ast.parse(body).body if isinstance(node, (ast.FunctionDef, ast.ClassDef))]
    assert definitions, f"{path.name}: a #@save cell defines nothing"
    for node in definitions:
        assert hasattr(module, node.name), f"{path.name}: {module.__name__} has no {node.name}"
        expected = inspect.getsource(getattr(module, node.name)).rstrip()
        assert ast.get_source_segment(body, node, padded=False) == expected, \
            f"{path.name}: {node.name} differs from {module.__name__}'s; change both, or the library first"
