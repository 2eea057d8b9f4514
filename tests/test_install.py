"""``pip install .`` (not editable): the whole package is installed, and data and figures are looked for in
the course folder the user works in (or ``BNLIB_DATA_DIR``), never inside site-packages."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
WHERE = ("import bnlib, bnlib.course.ch06.paper, bnlib.figures, bnlib.bench; "
         "from bnlib.course.data import data_dir; print(bnlib.__file__); print(data_dir())")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The package installed from a copy of what it is built from: the course folder's data/ and build/
    change while other tests run, and a build that walks them could trip over a file in flight."""
    source, target = tmp_path_factory.mktemp("source"), tmp_path_factory.mktemp("site-packages")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(ROOT / "bnlib", source / "bnlib", ignore=shutil.ignore_patterns("__pycache__"))
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target),
                           str(source)], capture_output=True, text=True)
    assert done.returncode == 0, f"pip install failed:\n{done.stdout}\n{done.stderr}"
    return target


def where(installed, cwd, **env):
    """The installed package's folder and its data folder, seen from ``cwd`` with ``env`` (and without the
    ``BNLIB_DATA_DIR`` of the shell that runs the tests)."""
    shell = {key: value for key, value in os.environ.items() if key != "BNLIB_DATA_DIR"}
    out = subprocess.run([sys.executable, "-c", WHERE], cwd=cwd, capture_output=True, text=True, check=True,
                         env={**shell, "PYTHONPATH": str(installed), **env}).stdout.split("\n")
    return Path(out[0]), Path(out[1])


def test_data_is_found_in_the_course_folder_above_the_working_directory(installed, tmp_path):
    course = tmp_path / "my-course"
    (course / "notebooks").mkdir(parents=True)
    package, data = where(installed, course / "notebooks")
    assert package.is_relative_to(installed)
    assert data == course / "data"


def test_data_outside_a_course_is_the_working_directorys_and_bnlib_data_dir_wins(installed, tmp_path):
    assert where(installed, tmp_path)[1] == tmp_path / "data"
    assert where(installed, tmp_path, BNLIB_DATA_DIR=str(tmp_path / "elsewhere"))[1] == tmp_path / "elsewhere"


def test_the_license_the_package_announces_is_there():
    assert "MIT License" in (ROOT / "LICENSE").read_text()
