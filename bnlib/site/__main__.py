"""``python -m bnlib.site [--solutions] [--out build/html] [NOTEBOOK ...]``: the course as a static site."""

import argparse
import sys
import time
from pathlib import Path

from bnlib.course.classroom import course_notebooks
from bnlib.course.data import project_root
from bnlib.site.build import build_site


def chosen(names):
    """The notebooks named (a path, or a course notebook's file name), in course order; all when none is."""
    course = course_notebooks()
    if not names:
        return course
    found = []
    for name in names:
        path = Path(name)
        matches = [notebook for notebook in course if notebook.name in (path.name, path.name + ".ipynb")]
        if path.suffix == ".ipynb" and path.is_file():
            found.append(path.resolve())
        elif matches:
            found.append(matches[0])
        else:
            raise ValueError(f"unknown notebook {name!r}: the course's are {', '.join(n.name for n in course)}")
    return sorted(set(found), key=lambda notebook: notebook.name)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bnlib.site", description=(
        "The course as a static site that works offline: each notebook run and converted to a page, with a "
        "contents page. The exercises' solutions are left out unless --solutions is given."))
    parser.add_argument("notebooks", nargs="*", metavar="NOTEBOOK",
                        help="course notebooks to publish (file names or paths; default: all of them)")
    parser.add_argument("--out", default=str(project_root() / "build" / "html"), help="output folder (build/html)")
    parser.add_argument("--solutions", action="store_true",
                        help="for an instructor: show each exercise's solution, folded under its check")
    args = parser.parse_args(argv)
    try:
        notebooks = chosen(args.notebooks)
        start = time.monotonic()
        build_site(notebooks, args.out, solutions=args.solutions)
    except ValueError as err:
        parser.exit(2, f"python -m bnlib.site: error: {err}\n")
    print(f"The course as static pages: {Path(args.out) / 'index.html'} ({len(notebooks)} notebooks, "
          f"{time.monotonic() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
