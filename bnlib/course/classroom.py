"""The exercises for a classroom (nbgrader) and for a learner on their own.

Every notebook's exercises are nbgrader cells: a solution cell, whose answer sits between
``### BEGIN SOLUTION`` and ``### END SOLUTION`` (collapsed in the course notebook), then a locked,
autograded test cell worth some points that calls the exercise's check. From the course notebooks:

- ``python -m bnlib.course.classroom assignments`` (``make assignments``) builds an nbgrader course folder,
  ``build/classroom/``: ``source/chNN/`` holds each notebook as it is, ``release/chNN/`` the student
  version that nbgrader's ``generate_assignment`` makes of it (solutions replaced by a stub), and
  ``nbgrader_config.py``. From there an instructor collects and autogrades with nbgrader as usual.
- ``python -m bnlib.course.classroom exercises`` (``make exercises``) gives a learner the student versions
  in ``build/exercises/``, to work in, while the solutions stay in the course notebooks. A file already
  there is never overwritten: your work stays yours.
"""

import argparse
import json
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
    """The nbgrader course folder at ``root``: every notebook in ``source/chNN/``, its student version in
    ``release/chNN/``. Rebuilding replaces ``source`` and ``release`` (copies of the course, nothing of a
    student's: submissions live in ``submitted/``, which is left alone). Returns ``root``."""
    root = Path(root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    (root / "nbgrader_config.py").write_text(CONFIG.format(root=str(root)))
    for notebook in notebooks or course_notebooks():
        folder = root / "source" / assignment_of(notebook)
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy2(notebook, folder / Path(notebook).name)
    for assignment in sorted(path.name for path in (root / "source").iterdir()):
        nbgrader("generate_assignment", assignment, root)
    for released in (root / "release").glob("ch*/*.ipynb"):  # the solutions are collapsed; the stubs must not be
        notebook = json.loads(released.read_text())
        for cell in notebook["cells"]:
            cell["metadata"].get("jupyter", {}).pop("source_hidden", None)
        released.write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n")
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
        print(f"Your exercises: {build / 'exercises'}; the solutions are in the course notebooks (collapsed cells).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
