# The course's commands. Each target sets up what it needs: the virtual environment, the packages,
# and MNIST (downloaded, or copied from BNLIB_MNIST_DIR when set).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: figures test test-fast lab lab-instructor app html assignments exercises data setup setup-test

figures: data
	$(PY) -m bnlib.figures

test: setup-test data
	$(PY) -m pytest -n 2 --dist loadgroup

test-fast: setup-test
	$(PY) -m pytest -n 2 -m "not slow"

# JupyterLab for a learner: nbgrader's instructor tools (Validate, Create Assignment, the Nbgrader menu) are
# switched off through config/learner; lab-instructor keeps them.
lab: data
	JUPYTER_CONFIG_PATH=$(CURDIR)/config/learner $(VENV)/bin/jupyter lab --ServerApp.root_dir=. \
		notebooks/01_input_normalization.ipynb

lab-instructor: data
	$(VENV)/bin/jupyter lab --ServerApp.root_dir=. notebooks/01_input_normalization.ipynb

# The classroom app: every explorer, chapter by chapter, no code. What is slow the first time is computed
# first, in this terminal; then Voila serves the app (settings in notebooks/app/voila.json).
app: data
	$(PY) -m bnlib.course.app
	$(VENV)/bin/voila --Voila.config_file_paths=notebooks/app notebooks/app/classroom.ipynb

assignments: data
	$(PY) -m bnlib.course.classroom assignments

exercises: data
	$(PY) -m bnlib.course.classroom exercises

# The course as a static site that works offline, in build/html/ (index.html first): every notebook run in a
# fresh kernel, the exercises without their solutions (python -m bnlib.site --solutions folds them in).
html: data
	$(PY) -m bnlib.site --out build/html

data: setup
	$(PY) -m bnlib.course.data

setup: $(VENV)/.installed
setup-test: $(VENV)/.installed-test

# Install into the virtual environment (made first if need be): pip without byte-compiling, then the
# packages byte-compiled on every core (pip would on one), but for their own test suites, which nothing
# here imports. Files that do not compile, such as templates and code for other Python versions, are
# skipped, as pip skips them.
define install
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --no-compile $(1)
	$(PY) -m compileall -qq -j 0 -x '/tests?/' $(VENV)/lib || true
endef

$(VENV)/.installed: requirements.txt pyproject.toml
	$(call install,-r requirements.txt)
	touch $@

# The course and the test tools in one pip run (the same packages as `make setup`, and the test tools).
COURSE_AND_TESTS := -e ".[course,test]"
$(VENV)/.installed-test: requirements.txt pyproject.toml
	$(call install,$(COURSE_AND_TESTS))
	touch $(VENV)/.installed $@
