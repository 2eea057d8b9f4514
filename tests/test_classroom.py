"""Every notebook through nbgrader, end to end, which is also the test that it runs top to bottom.

For each course notebook, an nbgrader course folder of its own: the student version keeps no solution and
shows its stubs; the instructor's version (``classroom.solved``: the folded solutions put back), submitted as
the solutions, autogrades to full marks, and nbgrader's run of it (a fresh kernel, top to bottom) leaves no
error output and no cell unrun. The course notebook itself, as a learner finds it, submitted blank,
autogrades to zero points, every check failing on its stub: a learner who runs every cell finds the exercises
open. The blank one is cut down to its exercises and the cells they need: running the rest again would test
nothing more. Separate folders let both test workers grade at once."""

import base64
import shutil
import sqlite3
import struct
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbgrader.api import Gradebook
from nbgrader.dbutil import _temp_alembic_ini

from notebook_slice import needed_cells

from bnlib.course import classroom
from bnlib.course import checks

pytestmark = pytest.mark.slow  # runs every notebook in a kernel, solved and (its exercises only) blank

NOTEBOOKS = classroom.course_notebooks()
BLANK_ANSWERS = ("is not written yet", checks.UNANSWERED)  # how a check greets a stub
CELL_WIDTH = 840  # CSS pixels: a JupyterLab cell at 1280 x 800 with the file browser open shrinks anything wider


def unsharp_or_shrunk_images(cells):
    """Each image output's (cell, problem): a PNG must say the CSS width to show it at (an explorer's plot and a
    retina figure do), carry twice those pixels, and fit a cell without shrinking."""
    problems = []
    for i, cell in enumerate(cells):
        for output in cell.outputs:
            if "image/png" not in output.get("data", {}):
                continue
            pixels = struct.unpack(">I", base64.b64decode(output.data["image/png"])[16:20])[0]
            shown = output.get("metadata", {}).get("image/png", {}).get("width")
            if not shown or pixels < 1.9 * shown or shown > CELL_WIDTH + 20:
                problems.append((i, f"{pixels} px shown at {shown} CSS px"))
    return problems


def exercises_only(course_notebook, destination):
    """The course notebook without the code cells its exercises do not need: it keeps every nbgrader cell
    (stubs and checks), the set-up and each earlier code cell that binds a name a kept cell uses
    (``notebook_slice.needed_cells``)."""
    notebook = nbformat.read(course_notebook, 4)
    code = [index for index, cell in enumerate(notebook.cells) if cell.cell_type == "code"]
    exercises = {k for k, index in enumerate(code) if notebook.cells[index].metadata.get("nbgrader")}
    kept = {code[k] for k in needed_cells([notebook.cells[index].source for index in code], exercises)}
    notebook.cells = [cell for index, cell in enumerate(notebook.cells) if cell.cell_type != "code" or index in kept]
    nbformat.write(notebook, destination)


def graded(notebook, root):
    """Autograde a blank and a solved submission of ``notebook`` in the course folder ``root``:
    ``{student: (score, max_score)}``."""
    assignment = classroom.assignment_of(notebook)
    for student in ("blank", "solutions"):
        (root / "submitted" / student / assignment).mkdir(parents=True)
    exercises_only(notebook, root / "submitted" / "blank" / assignment / notebook.name)
    shutil.copy2(root / "source" / assignment / notebook.name, root / "submitted" / "solutions" / assignment)
    for student in ("blank", "solutions"):
        classroom.nbgrader("autograde", assignment, root, student)
    with Gradebook(f"sqlite:///{root / 'gradebook.db'}", course_id="batch-norm") as gradebook:  # what export reads
        return {student: (submission.score, submission.max_score)
                for student in ("blank", "solutions")
                for submission in [gradebook.find_submission(assignment, student)]}


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[path.stem for path in NOTEBOOKS])
def test_nbgrader_gives_blank_zero_and_the_course_notebook_full_marks_running_it_top_to_bottom(notebook, tmp_path):
    root = classroom.build_classroom(tmp_path / "classroom", [notebook])
    assignment = classroom.assignment_of(notebook)
    released = nbformat.read(root / "release" / assignment / notebook.name, 4)
    solutions = [cell for cell in released.cells if cell.metadata.get("nbgrader", {}).get("solution")]
    stubs = [cell for cell in nbformat.read(notebook, 4).cells if cell.metadata.get("nbgrader", {}).get("solution")]
    assert solutions and len(solutions) == len(stubs), f"{notebook.name}: no exercise, or one lost"
    for cell, stub in zip(solutions, stubs):  # nbgrader's student version is the learner's cell of the course
        assert "BEGIN SOLUTION" not in cell.source and "raise NotImplementedError()" in cell.source
        assert cell.source.startswith(stub.source) and not any(classroom.folded_solution(c) for c in released.cells)

    scores = graded(notebook, root)

    ran = nbformat.read(root / "autograded" / "solutions" / assignment / notebook.name, 4)
    code = [cell for cell in ran.cells if cell.cell_type == "code"]
    errors = [f"cell {i}: {output.ename}: {output.evalue}" for i, cell in enumerate(code)
              for output in cell.outputs if output.output_type == "error"]
    assert not errors, f"{notebook.name} does not run top to bottom: {errors}"
    assert all(cell.execution_count for cell in code if cell.source.strip()), f"{notebook.name}: cells left unrun"
    images = unsharp_or_shrunk_images(code)
    assert not images, f"{notebook.name}: figures not sharp or too wide: {images}"
    score, maximum = scores["solutions"]
    assert maximum > 0 and score == maximum, f"{assignment}: the solutions earn {score} of {maximum}"
    assert scores["blank"][0] == 0, f"{assignment}: a blank submission earns points"
    blank = nbformat.read(root / "autograded" / "blank" / assignment / notebook.name, 4)
    for cell in blank.cells:
        if cell.metadata.get("nbgrader", {}).get("grade"):
            failures = [f"{output.ename}: {output.evalue}" for output in cell.outputs if output.output_type == "error"]
            assert any(failure.startswith("NotYet") and any(answer in failure for answer in BLANK_ANSWERS)
                       for failure in failures), f"{assignment}: a check fails on a stub otherwise: {failures}"


def test_a_learners_exercise_copies_are_never_overwritten(tmp_path, capsys):
    root = classroom.build_classroom(tmp_path / "classroom", NOTEBOOKS[:2])
    mine = tmp_path / "exercises"
    classroom.give_exercises(root, mine)
    first = sorted(mine.iterdir())[0]
    first.write_text("my work")
    classroom.give_exercises(root, mine)
    assert first.read_text() == "my work"
    assert f"kept {first}" in capsys.readouterr().out
    assert len(list(mine.iterdir())) == 2


def test_an_unknown_command_or_an_autograde_without_a_student_is_refused(tmp_path):
    with pytest.raises(ValueError, match="generate_assignment or autograde"):
        classroom.nbgrader("publish", "ch01", tmp_path)
    with pytest.raises(ValueError, match="name the student"):
        classroom.nbgrader("autograde", "ch01", tmp_path)


def test_a_new_gradebook_records_the_schema_version_that_alembic_reports(tmp_path):
    """nbgrader() answers nbgrader's question for the schema version in this process (database_version);
    the alembic command, which nbgrader would have started, gives the same answer."""
    root = classroom.build_classroom(tmp_path / "classroom", NOTEBOOKS[:1])
    with sqlite3.connect(root / "gradebook.db") as database:
        recorded = database.execute("SELECT version_num FROM alembic_version").fetchall()
    with _temp_alembic_ini("sqlite://") as ini:
        heads = subprocess.check_output([Path(sys.executable).parent / "alembic", "-c", ini, "heads"], text=True)
    assert recorded == [(heads.split()[0],)]
