"""The exercises for a classroom (nbgrader) and for a learner on their own.

In a course notebook each exercise is three cells: the learner's cell (an nbgrader solution cell holding
the stub: a function that raises ``NotImplementedError``, or a prediction ``= None``), a locked, autograded
check cell worth some points, and the solution, folded in a markdown ``<details>`` block. So a learner who
runs every cell finds the exercises open, and the solution is one click away. ``solved(notebook)`` is the
instructor's version nbgrader expects: the solution put back into the learner's cell between
``### BEGIN SOLUTION`` and ``### END SOLUTION``, the folded copy dropped. From the course notebooks:

- ``python -m bnlib.course.classroom assignments`` (``make assignments``) builds an nbgrader course folder,
  ``build/classroom/``: ``source/chNN/`` holds each notebook's instructor version, ``release/chNN/`` the
  student version that nbgrader's ``generate_assignment`` makes of it, and ``nbgrader_config.py``. From there
  an instructor collects and autogrades with nbgrader as usual.
- ``python -m bnlib.course.classroom exercises`` (``make exercises``) gives a learner the student versions
  in ``build/exercises/``, to work in without the solutions in view. A file already there is never
  overwritten: your work stays yours.
"""

import argparse
import copy
import json
import re
import shutil
import sys
import warnings
from functools import lru_cache
from pathlib import Path

from bnlib.course.data import project_root

CONFIG = """\
# nbgrader's configuration for the Batch Norm course (written by `make assignments`).
c = get_config()  # noqa: F821
c.CourseDirectory.root = {root!r}
c.CourseDirectory.course_id = "batch-norm"
c.ExecutePreprocessor.timeout = 1800  # the first run of a chapter may train its networks
"""


def assignment_of(notebook):
    """The assignment a notebook belongs to: ``"ch03"`` for ``03_batch_norm_from_scratch.ipynb``."""
    return f"ch{Path(notebook).name[:2]}"


def course_notebooks():
    return sorted((project_root() / "notebooks").glob("[0-9][0-9]_*.ipynb"))


BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
STUB = "# YOUR CODE HERE"
FOLDED = re.compile(r"\A<details><summary>Solution[^<]*</summary>\n\n```python\n(.*)\n```\n\n</details>\Z", re.S)


def source(cell):
    return "".join(cell["source"])


def folded_solution(cell):
    """The code of a folded solution cell (markdown ``<details>``), or None for any other cell."""
    match = FOLDED.match(source(cell)) if cell["cell_type"] == "markdown" else None
    return match.group(1) if match else None


def with_solution(stub, solution):
    """The learner's cell ``stub`` with ``solution`` put in between nbgrader's markers: a function's body
    replaces the stub's ``# YOUR CODE HERE`` and ``raise NotImplementedError()`` (the lines before them, its
    signature, are the solution's first lines too); a prediction's answer follows the stub's line."""
    lines, answer = stub.split("\n"), solution.split("\n")
    at = next((i for i, line in enumerate(lines) if line.strip() == STUB), None)
    if at is None:  # a prediction: name = None  # the choices
        return "\n".join([*lines, BEGIN, *answer, END])
    indent, before = lines[at][: len(lines[at]) - len(lines[at].lstrip())], lines[:at]
    if answer[:len(before)] != before:
        raise ValueError(f"the folded solution must start with the learner's cell up to {STUB!r}: {before}")
    return "\n".join([*before, indent + BEGIN, *answer[len(before):], indent + END])


def solved(notebook):
    """The instructor's version of a course notebook (a dict as in the .ipynb file): each learner's cell holds
    the solution between nbgrader's markers, and the folded solutions are gone."""
    notebook = copy.deepcopy(notebook)
    cells, kept = notebook["cells"], []
    for index, cell in enumerate(cells):
        if folded_solution(cell) is not None:
            continue
        if cell["metadata"].get("nbgrader", {}).get("solution") and cell["cell_type"] == "code":
            answer = next((folded_solution(c) for c in cells[index + 1:index + 3] if folded_solution(c)), None)
            if answer is None:
                raise ValueError(f"exercise cell {cell['metadata']['nbgrader']['grade_id']}: no folded solution "
                                 f"follows its check cell")
            cell = {**cell, "source": with_solution(source(cell), answer)}
        kept.append(cell)
    notebook["cells"] = kept
    return notebook


@lru_cache(maxsize=1)
def database_version():
    """The revision of nbgrader's database schema, which a new gradebook records. nbgrader asks the
    ``alembic`` command for it, a new Python process of 2 to 3 CPU-seconds per gradebook; alembic's
    API reads the same migration scripts in this process."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory
    from nbgrader.dbutil import _temp_alembic_ini

    with _temp_alembic_ini("sqlite://") as ini:
        return ScriptDirectory.from_config(Config(ini)).get_current_head()


def nbgrader(command, assignment, root, student=None):
    """Run nbgrader's ``generate_assignment`` or ``autograde`` (of ``student``'s submission) on ``assignment``,
    in this process through nbgrader's API, with the configuration in ``root/nbgrader_config.py``."""
    if command not in ("generate_assignment", "autograde"):
        raise ValueError(f"unknown nbgrader command {command!r}: generate_assignment or autograde")
    if command == "autograde" and not student:
        raise ValueError("autograde grades one student's submission: name the student (student=...)")
    from nbgrader import api as nbgrader_api
    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory
    from sqlalchemy.exc import SAWarning
    from traitlets.config.loader import PyFileConfigLoader

    config = PyFileConfigLoader("nbgrader_config.py", path=str(root)).load_config()
    api = NbGraderAPI(coursedir=CourseDirectory(config=config), config=config)
    asks_alembic = nbgrader_api.get_alembic_version
    nbgrader_api.get_alembic_version = database_version  # for a new gradebook, without a new process
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SAWarning)  # nbgrader's gradebook code warns about its own session
            done = (api.generate_assignment(assignment, force=True) if command == "generate_assignment"
                    else api.autograde(assignment, student, force=True))
    finally:
        nbgrader_api.get_alembic_version = asks_alembic
    if not done["success"]:
        raise RuntimeError(f"nbgrader {command} {assignment} failed:\n{done.get('log', '')}\n{done.get('error', '')}")
    return done


def build_classroom(root, notebooks=None):
    """The nbgrader course folder at ``root``: every notebook's instructor version (``solved``) in
    ``source/chNN/``, its student version in ``release/chNN/``. Rebuilding replaces ``source`` and ``release``
    (made from the course, nothing of a student's: submissions live in ``submitted/``, which is left alone).
    Returns ``root``."""
    root = Path(root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    (root / "nbgrader_config.py").write_text(CONFIG.format(root=str(root)))
    for notebook in notebooks or course_notebooks():
        folder = root / "source" / assignment_of(notebook)
        folder.mkdir(parents=True, exist_ok=True)
        instructor = solved(json.loads(Path(notebook).read_text()))
        (folder / Path(notebook).name).write_text(json.dumps(instructor, indent=1, ensure_ascii=False) + "\n")
    for assignment in sorted(path.name for path in (root / "source").iterdir()):
        nbgrader("generate_assignment", assignment, root)
    return root


def give_exercises(root, destination):
    """Copy the student versions from ``root/release`` to ``destination``, never over an existing file."""
    destination.mkdir(parents=True, exist_ok=True)
    for notebook in sorted((root / "release").glob("ch*/*.ipynb")):
        target = destination / notebook.name
        if target.exists():
            print(f"kept {target} (yours; delete it to start that chapter's exercises afresh)")
        else:
            shutil.copy2(notebook, target)
            print(f"wrote {target}")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bnlib.course.classroom",
                                     description="The course's exercises for nbgrader and for self-study.")
    parser.add_argument("what", choices=("assignments", "exercises"),
                        help="assignments: the nbgrader course folder; exercises: your own student copies")
    parser.add_argument("--build", default=str(project_root() / "build"), help="where to build (default build/)")
    args = parser.parse_args(argv)
    build = Path(args.build)
    root = build_classroom(build / "classroom")
    if args.what == "assignments":
        print(f"nbgrader course folder: {root} (source/ with solutions, release/ for the students)")
    else:
        give_exercises(root, build / "exercises")
        print(f"Your exercises: {build / 'exercises'}; the solutions are in the course notebooks, folded under "
              f"each check.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
