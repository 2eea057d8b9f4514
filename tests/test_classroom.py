"""The exercises through nbgrader, end to end: the student version keeps no solution, a blank submission
autogrades to zero points, the solutions to full marks; and a learner's own copies are never overwritten."""

import csv
import shutil

import nbformat
import pytest

from bnlib.course import classroom

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("nbgrader")]


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """The classroom built from the course notebooks; every student version submitted blank, every course
    notebook submitted as the solution; all autograded."""
    root = classroom.build_classroom(tmp_path_factory.mktemp("classroom"))
    for notebook in classroom.course_notebooks():
        assignment = classroom.assignment_of(notebook)
        for student, source in (("blank", root / "release"), ("solutions", root / "source")):
            folder = root / "submitted" / student / assignment
            folder.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source / assignment / notebook.name, folder / notebook.name)
    for assignment in sorted(path.name for path in (root / "source").iterdir()):
        classroom.nbgrader("autograde", assignment, "--force", root=root)
    classroom.nbgrader("export", "--to", str(root / "grades.csv"), root=root)
    with open(root / "grades.csv") as f:
        rows = list(csv.DictReader(f))
    return root, {(row["student_id"], row["assignment"]): (float(row["score"]), float(row["max_score"]))
                  for row in rows}


def test_every_notebook_is_an_assignment_with_points(graded):
    _, scores = graded
    for notebook in classroom.course_notebooks():
        assert scores[("solutions", classroom.assignment_of(notebook))][1] > 0, notebook.name


def test_a_blank_submission_scores_zero_and_the_solutions_full_marks(graded):
    _, scores = graded
    for notebook in classroom.course_notebooks():
        assignment = classroom.assignment_of(notebook)
        assert scores[("blank", assignment)][0] == 0, f"{assignment}: a blank submission earns points"
        score, maximum = scores[("solutions", assignment)]
        assert score == maximum, f"{assignment}: the solutions earn {score} of {maximum}"


def test_the_student_version_holds_no_solution_and_shows_its_stubs(graded):
    root, _ = graded
    for notebook in classroom.course_notebooks():
        released = nbformat.read(root / "release" / classroom.assignment_of(notebook) / notebook.name, 4)
        solutions = [cell for cell in released.cells if cell.metadata.get("nbgrader", {}).get("solution")]
        assert solutions, notebook.name
        for cell in solutions:
            assert "BEGIN SOLUTION" not in cell.source and "raise NotImplementedError()" in cell.source
            assert not cell.metadata.get("jupyter", {}).get("source_hidden")


def test_a_learners_exercise_copies_are_never_overwritten(graded, tmp_path, capsys):
    root, _ = graded
    mine = tmp_path / "exercises"
    classroom.give_exercises(root, mine)
    first = sorted(mine.iterdir())[0]
    first.write_text("my work")
    classroom.give_exercises(root, mine)
    assert first.read_text() == "my work"
    assert f"kept {first}" in capsys.readouterr().out
