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


# The course's packages, by the name they are imported under: a core-only install has none of them.
COURSE_ONLY = ("torchvision", "matplotlib", "PIL", "tqdm", "ipywidgets", "ipykernel", "IPython", "jupyterlab",
               "jupyter_server", "nbconvert", "nbformat", "voila", "nbgrader")
CORE_ONLY = f"""
import sys

class CourseOnly:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {COURSE_ONLY!r}:
            raise ImportError(f"{{name}} is not installed (a core-only install)")

sys.meta_path.insert(0, CourseOnly())
import numpy as np
import torch
import bnlib

x = torch.randn(8, 3, requires_grad=True)
layer = bnlib.BatchNorm1d(3)
layer(x).pow(2).sum().backward()
out, cache = bnlib.batch_norm_forward(x.detach().numpy(), np.ones(3), np.zeros(3))
bnlib.batch_norm_backward(np.ones_like(out), cache)
print(layer.eval()(x).shape, x.grad.shape, bnlib.replay_ema(np.ones((4, 3)), 0.1, 0.0).shape)
"""


def test_the_library_alone_needs_numpy_torch_and_scipy(installed):
    """What ``pip install bnlib`` brings: numpy, torch and scipy; the Jupyter stack is the ``course`` extra."""
    metadata = next(installed.glob("bnlib-*.dist-info")).joinpath("METADATA").read_text()
    required = [line.split(":", 1)[1].strip() for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    core = sorted(requirement.split(">")[0].split("<")[0] for requirement in required if "extra ==" not in requirement)
    assert core == ["numpy", "scipy", "torch"], required
    course = " ".join(requirement for requirement in required if 'extra == "course"' in requirement)
    for name in ("torchvision", "matplotlib", "ipywidgets", "jupyterlab", "voila", "nbgrader", "tqdm"):
        assert name in course, f"{name} is not in the course extra"


def test_a_core_only_install_imports_bnlib_and_runs_a_layer(installed, tmp_path):
    """With none of the course's packages importable, the library still imports and trains a layer."""
    shell = {key: value for key, value in os.environ.items() if key != "BNLIB_DATA_DIR"}
    done = subprocess.run([sys.executable, "-c", CORE_ONLY], cwd=tmp_path, capture_output=True, text=True,
                          env={**shell, "PYTHONPATH": str(installed)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["torch.Size([8,", "3])", "torch.Size([8,", "3])", "(4,", "3)"]
    blocked = subprocess.run([sys.executable, "-c", CORE_ONLY + "\nimport matplotlib"], cwd=tmp_path,
                             capture_output=True, text=True, env={**shell, "PYTHONPATH": str(installed)})
    assert "matplotlib is not installed" in blocked.stderr  # the blocker works, so the run above proves something
