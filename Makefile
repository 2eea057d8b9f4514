# The course's commands. Each target sets up what it needs: the virtual environment, the packages,
# and MNIST (downloaded, or copied from BNLIB_MNIST_DIR when set).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: figures test test-fast lab app html assignments exercises data setup setup-test

figures: data
	$(PY) -m bnlib.figures

test: setup-test data
	$(PY) -m pytest -n 2 --dist loadgroup

test-fast: setup-test
	$(PY) -m pytest -n 2 -m "not slow"

lab: data
	$(VENV)/bin/jupyter lab --ServerApp.root_dir=. notebooks/01_input_normalization.ipynb

app: data
	$(VENV)/bin/voila notebooks/06_mnist_percentiles.ipynb

assignments: data
	$(PY) -m bnlib.course.classroom assignments

exercises: data
	$(PY) -m bnlib.course.classroom exercises

html: data
	$(VENV)/bin/jupyter nbconvert --to html --execute --HTMLExporter.embed_images=True \
		--output-dir build/html notebooks/*.ipynb
	sed -i.bak -E 's/href="([^":#]*)\.ipynb/href="\1.html/g' build/html/*.html && rm build/html/*.bak
	cp build/html/01_input_normalization.html build/html/index.html
	@echo "The course as static pages: build/html/index.html"

data: setup
	$(PY) -m bnlib.course.data

setup: $(VENV)/.installed
setup-test: $(VENV)/.installed-test

$(VENV)/.installed: requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed
	$(PY) -m pip install --quiet -e ".[test]"
	touch $@
