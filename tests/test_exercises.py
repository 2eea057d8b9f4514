"""Every notebook ends with 3 to 5 exercises, laid out the same way so a learner and nbgrader always know
where to type and what is graded:

1. a markdown cell whose heading is ``### Exercise k (code): ...`` or ``### Exercise k (predict): ...``;
2. the learner's cell (an nbgrader solution cell): a stub, a function whose body is ``# YOUR CODE HERE`` and
   ``raise NotImplementedError()``, or a prediction ``name = None  # the choices``; nothing hidden, no output,
   a unique ``grade_id``, names of its own (no other exercise reuses them);
3. the nbgrader test cell right after it: locked, autograded, worth points, one call of a check from the
   chapter's ``exercises`` module that prints one line and returns nothing;
4. the solution, folded in a markdown ``<details>`` block: one click away, and never run by "Run All", so a
   learner who runs every cell finds the exercises open. ``classroom.solved`` puts it back into the learner's
   cell for nbgrader.

At least two exercises per notebook write code (a function, a class or a few lines a check runs against a
reference); the others are predictions checked against the notebook's own run. The checks themselves are
tested in each chapter's tests; here, that the layout holds (tests/test_classroom.py grades the notebooks).
"""

import ast
import json
import re
from pathlib import Path

import nbformat
import pytest

from bnlib.course import classroom

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("[0-9][0-9]_*.ipynb"))
HEADING = re.compile(r"^### Exercise (\d+) \((code|predict)\): \S", re.M)


def nbgrader(cell):
    return cell.metadata.get("nbgrader", {})


def exercises(notebook):
    """``[(kind, task, solution, test)]`` for each exercise of ``notebook``."""
    found, cells = [], notebook.cells
    for index, cell in enumerate(cells):
        if nbgrader(cell).get("solution"):
            task = next(c for c in reversed(cells[:index]) if c.cell_type == "markdown")
            heading = HEADING.search(task.source)
            found.append((heading.group(2) if heading else None, task, cell,
                          cells[index + 1] if index + 1 < len(cells) else None))
    return found


def defined_names(source):
    names = set()
    for statement in ast.parse(source).body:
        if isinstance(statement, (ast.FunctionDef, ast.ClassDef)):
            names.add(statement.name)
        elif isinstance(statement, ast.Assign):
            names.update(target.id for target in statement.targets if isinstance(target, ast.Name))
    return names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_three_to_five_exercises_two_of_them_code(path):
    found = exercises(nbformat.read(path, as_version=4))
    kinds = [kind for kind, *_ in found]
    assert None not in kinds, f"{path.name}: an exercise's task lacks a '### Exercise k (code|predict): ' heading"
    assert 3 <= len(found) <= 5, f"{path.name}: {len(found)} exercises"
    assert kinds.count("code") >= 2, f"{path.name}: {kinds.count('code')} code exercises"
    numbers = [int(HEADING.search(task.source).group(1)) for _, task, _, _ in found]
    assert numbers == list(range(1, len(found) + 1)), f"{path.name}: exercises numbered {numbers}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_each_exercise_is_a_stub_then_a_locked_graded_check_then_the_folded_solution(path):
    notebook = nbformat.read(path, as_version=4)
    chapter = f"ch{path.name[:2]}-"
    names, solved = [], iter(nbformat.from_dict(classroom.solved(json.loads(path.read_text()))).cells)
    for kind, task, solution, test in exercises(notebook):
        where = f"{path.name}, {task.source.splitlines()[0]}"
        meta = nbgrader(solution)
        assert solution.cell_type == "code" and meta.get("grade") is False and meta.get("locked") is False, where
        assert "SOLUTION" not in solution.source and not solution.metadata.get("jupyter"), f"{where}: not a stub"
        if kind == "code":
            assert solution.source.endswith("# YOUR CODE HERE\n    raise NotImplementedError()") or \
                solution.source.endswith("# YOUR CODE HERE\n        raise NotImplementedError()"), where
        else:
            assert re.fullmatch(r"\w+ = None  # .+", solution.source), f"{where}: a prediction starts as None"
        assert test is not None and test.cell_type == "code", f"{where}: no test cell after the solution"
        after = notebook.cells[notebook.cells.index(test) + 1]
        assert classroom.folded_solution(after), f"{where}: the folded solution does not follow the check"
        instructor = next(cell for cell in solved if nbgrader(cell).get("grade_id") == meta["grade_id"])
        assert "### BEGIN SOLUTION" in instructor.source and "### END SOLUTION" in instructor.source, where
        graded = nbgrader(test)
        assert graded.get("grade") is True and graded.get("locked") is True and graded.get("points", 0) > 0, where
        assert not graded.get("solution"), where
        for cell_meta in (meta, graded):
            assert cell_meta.get("schema_version") == 3 and cell_meta["grade_id"].startswith(chapter), where
        call = ast.parse(test.source).body
        assert len(call) == 1 and isinstance(call[0], ast.Expr) and isinstance(call[0].value, ast.Call), \
            f"{where}: the test cell must be one call of a check"
        assert "check" in ast.unparse(call[0].value.func), f"{where}: the test cell must call a check_* function"
        names.append(defined_names(instructor.source.replace("### BEGIN SOLUTION", "").replace("### END SOLUTION", "")))
    ids = [nbgrader(cell)["grade_id"] for cell in notebook.cells if nbgrader(cell)]
    assert len(ids) == len(set(ids)), f"{path.name}: grade_ids repeat: {ids}"
    for i, mine in enumerate(names):
        for theirs in names[i + 1:]:
            assert not mine & theirs, f"{path.name}: exercises share the names {mine & theirs}; use names of their own"


def test_a_predictions_expected_answer_is_computed_only_for_an_answer_among_the_choices(capsys):
    from bnlib.course.checks import NotYet, check_choice

    computed = []

    def expected():
        computed.append(True)
        return "more"

    for unanswerable in (None, "a lot"):
        with pytest.raises(NotYet):
            check_choice(unanswerable, expected, ("more", "less"), "Correct.", "hint")
    assert not computed
    with pytest.raises(NotYet, match="hint"):
        check_choice("less", expected, ("more", "less"), "Correct.", "hint")
    check_choice("more", expected, ("more", "less"), "Right: more.", "hint")
    assert computed == [True, True] and "Right: more." in capsys.readouterr().out
