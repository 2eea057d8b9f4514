"""``make lab`` is for a learner: nbgrader's instructor tools (Validate, Create Assignment, the Nbgrader menu)
are switched off through ``config/learner``, which ``make lab`` adds to Jupyter's configuration path;
``make lab-instructor`` keeps them."""

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGE_CONFIG = ("from jupyterlab_server.config import get_page_config; from jupyter_core.paths import jupyter_path; "
               "print(get_page_config(jupyter_path('labextensions'), logger=None).get('disabledExtensions'))")


def disabled_extensions(**env):
    shell = {key: value for key, value in os.environ.items() if key != "JUPYTER_CONFIG_PATH"}
    return subprocess.run([sys.executable, "-c", PAGE_CONFIG], env={**shell, **env}, capture_output=True, text=True,
                          check=True).stdout.strip()


def test_the_learners_lab_has_no_nbgrader_and_the_instructors_has():
    assert "@jupyter/nbgrader" in disabled_extensions(JUPYTER_CONFIG_PATH=str(ROOT / "config" / "learner"))
    assert "@jupyter/nbgrader" not in disabled_extensions()


def test_make_lab_uses_the_learners_settings_and_lab_instructor_does_not():
    makefile = (ROOT / "Makefile").read_text()
    lab = re.search(r"^lab: .*?(?=^\S)", makefile, re.M | re.S).group(0)
    instructor = re.search(r"^lab-instructor: .*?(?=^\S|\Z)", makefile, re.M | re.S).group(0)
    assert "JUPYTER_CONFIG_PATH=$(CURDIR)/config/learner" in lab and "JUPYTER_CONFIG_PATH" not in instructor
