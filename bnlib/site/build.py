"""Build the static site: run each notebook, convert it with nbconvert's HTML exporter (lab template, with
the links of ``pages.nav`` on top and at the bottom), write the pages, the contents page and MathJax.

Nothing is loaded from the network: the template drops require.js, the widget manager and mermaid (the
pages hold no live widget), and MathJax 2 comes from the ``jupyter-server-mathjax`` package, copied into
``mathjax/``: the TeX input, the HTML-CSS output with its STIX-Web fonts, and the extensions but for the
accessibility ones (``a11y``, 3.7 MB, which only the math's context menu may ask for).
"""

import shutil
from pathlib import Path

import jupyter_server_mathjax
import nbformat
from jinja2 import DictLoader
from nbclient import NotebookClient
from nbconvert import HTMLExporter

from bnlib.course.classroom import solved
from bnlib.site.pages import contents, linked, nav, page_name, page_notebook, title

HEADING = "Batch normalization, hands on"
MARKER = ".bnlib-site"  # in an output folder this tool made: it may write there again
MATHJAX = "mathjax"
MATHJAX_FILES = ("MathJax.js", "LICENSE", "config/TeX-AMS-MML_HTMLorMML-full.js", "config/Safe.js",
                 "extensions", "jax/input/TeX", "jax/output/HTML-CSS", "jax/element", "fonts/HTML-CSS/STIX-Web")
MATHJAX_URL = f"{MATHJAX}/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full,Safe"
EXECUTION_TIMEOUT = 1800  # seconds per cell: the first run of a chapter may train its networks

TEMPLATE = """{%- extends 'index.html.j2' -%}
{% block html_head_js_requirejs %}{% endblock %}
{% block jupyter_widgets %}{% endblock %}
{% block html_head_js_mermaidjs %}{% endblock %}
{% block html_head_js_mathjax %}
<script type="text/x-mathjax-config">
MathJax.Hub.Config({"HTML-CSS": {availableFonts: [], webFont: "STIX-Web", imageFont: null}});
</script>
{{ super() }}
{% endblock %}
{% block extra_css %}
<style type="text/css">
.bn-nav { display: flex; justify-content: space-between; gap: 1em; max-width: 1200px; margin: 0.8em auto;
          padding: 0.4em 1em; font-family: var(--jp-ui-font-family); border-bottom: 1px solid #ddd; }
.bn-nav:last-child { border-bottom: none; border-top: 1px solid #ddd; }
.bn-static-explorer { margin: 0.5em 0; }
.bn-static-explorer img { max-width: 100%; height: auto; }
.bn-live { color: #555; font-style: italic; margin: 0.2em 0; }
/* The hidden MathML copy for screen readers would ask for TeX fonts that are not there (script letters...) */
.MJX_Assistive_MathML * { font-family: inherit !important; }
</style>
{% endblock %}
{% block rawcell scoped %}{{ cell.source if cell.metadata.get("raw_mimetype") == "text/html" }}{% endblock %}
{% block body_header %}{{ super() }}{{ resources.bn_nav }}{% endblock %}
{% block body_footer %}{{ resources.bn_nav }}{{ super() }}{% endblock %}
"""


def read(notebook):
    return nbformat.read(notebook, as_version=4)


def execute(notebook, folder):
    """``notebook`` (a dict) run top to bottom in a fresh kernel, in ``folder``; returns the executed copy."""
    node = nbformat.from_dict(notebook)
    NotebookClient(node, timeout=EXECUTION_TIMEOUT, resources={"metadata": {"path": str(folder)}}).execute()
    return node


def exporter():
    return HTMLExporter(template_name="lab", template_file="bn_site.html.j2",
                        extra_loaders=[DictLoader({"bn_site.html.j2": TEMPLATE})],
                        embed_images=True, mathjax_url=MATHJAX_URL)


def output_folder(out):
    """``out``, made if need be; refused if it is a file, or a folder with files this tool did not write."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"the output folder {out} is a file: choose another --out")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).exists():
        raise ValueError(f"{out} holds files that this tool did not write: choose another --out, or empty it first")
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("The course's static site (python -m bnlib.site) writes into this folder.\n")
    return out


def copy_mathjax(out):
    static = Path(jupyter_server_mathjax.__file__).parent / "static"
    target = out / MATHJAX
    if target.exists():
        shutil.rmtree(target)
    for name in MATHJAX_FILES:
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        if (static / name).is_dir():
            shutil.copytree(static / name, target / name, ignore=shutil.ignore_patterns("a11y"))
        else:
            shutil.copy2(static / name, target / name)
    return target


def build_site(notebooks, out, solutions=False, run=execute, say=print):
    """The pages of ``notebooks`` (paths, in course order) in ``out``, with ``index.html`` and MathJax.
    ``run(notebook, folder)`` executes a notebook (a dict) in ``folder``; ``say`` reports each file written.
    Returns the paths written."""
    out = output_folder(out)
    learners = [read(notebook) for notebook in notebooks]
    pages = [(page_name(notebook), title(learner, Path(notebook).name))
             for notebook, learner in zip(notebooks, learners)]
    written = [copy_mathjax(out)]  # first, so that each page works as soon as it is written
    say(f"wrote {written[0]}/ (MathJax)")
    export = exporter()
    for index, (notebook, learner) in enumerate(zip(notebooks, learners)):
        notebook = Path(notebook)
        executed = run(solved(learner), notebook.parent)
        page = page_notebook(learner, executed, notebook.name, solutions)
        body, _ = export.from_notebook_node(nbformat.from_dict(page), resources={"bn_nav": nav(pages, index)})
        written.append(_write(out / pages[index][0], linked(body), say))
    written.append(_write(out / "index.html", contents(pages, HEADING), say))
    return written


def _write(path, text, say):
    path.write_text(text, encoding="utf-8")
    say(f"wrote {path}")
    return path
