"""Every exercise in the notebooks has the same three cells, so a learner always knows where to type.

1. the stub: the learner's answer left as ``None`` (or a function returning ``None``), marked "your ...";
2. the check: one call ``exercises.check_<thing>(answer)``;
3. the solution: a code cell starting ``# Solution``, its source hidden (collapsed in JupyterLab),
   computing the same answer and calling the same check.
"""

import ast
from pathlib import Path

import nbformat
import pytest

from bnlib.course import exercises

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))
WITH_EXERCISES = [path for path in NOTEBOOKS if "exercises.check_" in path.read_text()]


def is_check(cell):
    """A code cell that is one call of an ``exercises.check_*`` function."""
    source = cell.source.strip()
    return cell.cell_type == "code" and source.startswith("exercises.check_") and "\n" not in source


def defined_names(source):
    """The names a cell binds at top level, each with its ast: the assigned value, or the function."""
    names = {}
    for statement in ast.parse(source).body:
        if isinstance(statement, ast.FunctionDef):
            names[statement.name] = statement
        elif isinstance(statement, ast.Assign):
            for target in statement.targets:
                if isinstance(target, ast.Name):
                    names[target.id] = statement.value
                elif isinstance(target, ast.Tuple) and isinstance(statement.value, ast.Tuple):
                    names.update({t.id: v for t, v in zip(target.elts, statement.value.elts) if isinstance(t, ast.Name)})
                elif isinstance(target, ast.Tuple):  # a, b = f(...)
                    names.update({t.id: statement.value for t in target.elts if isinstance(t, ast.Name)})
    return names


def left_as_none(node):
    """``None``, a tuple of ``None``, or a function whose body returns ``None``."""
    if isinstance(node, ast.FunctionDef):
        return isinstance(node.body[-1], ast.Return) and left_as_none(node.body[-1].value)
    if isinstance(node, ast.Tuple):
        return all(left_as_none(item) for item in node.elts)
    return isinstance(node, ast.Constant) and node.value is None


def test_the_exercise_notebooks_are_found():
    assert len(WITH_EXERCISES) >= 6 and len(WITH_EXERCISES) < len(NOTEBOOKS)


@pytest.mark.parametrize("path", WITH_EXERCISES, ids=[p.stem for p in WITH_EXERCISES])
def test_each_exercise_has_a_stub_a_check_and_a_hidden_solution(path):
    cells = nbformat.read(path, as_version=4).cells
    checks = [i for i, cell in enumerate(cells) if is_check(cell)]
    solutions = [i for i, cell in enumerate(cells) if cell.cell_type == "code" and cell.source.startswith("# Solution")]
    assert 2 <= len(checks) <= 4, f"{path.name}: {len(checks)} exercises; a chapter has two to four"
    assert solutions == [i + 1 for i in checks], f"{path.name}: each check cell {checks} must be followed by its solution"
    for i in checks:
        call = cells[i].source.strip().rstrip(";")
        where = f"{path.name}, exercise at cell {i}"
        name = call.split("(")[0].removeprefix("exercises.")
        assert callable(getattr(exercises, name, None)), f"{where}: bnlib.course.exercises has no {name}"
        answers = {node.id for node in ast.walk(ast.parse(call)) if isinstance(node, ast.Name)} - {"exercises"}
        stub, solution = cells[i - 1], cells[i + 1]
        assert stub.cell_type == "code" and "your" in stub.source, f"{where}: no stub cell before the check"
        stubbed = defined_names(stub.source)
        for answer in answers:
            assert answer in stubbed and left_as_none(stubbed[answer]), f"{where}: the stub must define {answer} as None"
            assert answer in defined_names(solution.source), f"{where}: the solution does not define {answer}"
        assert solution.metadata.get("jupyter", {}).get("source_hidden") is True, f"{where}: solution not hidden"
        assert call in solution.source, f"{where}: the solution does not call {call}"
