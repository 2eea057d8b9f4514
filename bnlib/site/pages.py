"""What a chapter's page shows, made from its notebook (nbformat's dicts), and the links between the pages.

- The cells are the learner's notebook (``notebooks/NN_name.ipynb``) with the outputs of its run. The run is
  of the instructor's version (``classroom.solved``: every exercise solved, so later cells work); the page
  shows each exercise's learner cell (the stub) and check cell without output (no answer, no "Correct."),
  and the folded solution only when the instructor asks for it (a collapsed ``<details>`` block).
- An explorer's output (a widget view with a static ``image/png``, see ``Explorer._repr_mimebundle_``) becomes
  its picture with its readout and a line saying where it runs live; any other widget output is dropped
  (it needs a kernel). Static figures stay the PNG outputs they are.
- Links to a course notebook (``NN_name.ipynb``) point to its page (``NN_name.html``).
"""

import html
import re
from pathlib import Path

from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import PythonLexer

from bnlib.course.classroom import folded_solution, source
from bnlib.course.explorer import readout_html

WIDGET = "application/vnd.jupyter.widget-view+json"
LIVE = ("Interactive in the notebook: open <code>{notebook}</code> in JupyterLab (<code>make lab</code>) or the "
        "classroom app (<code>make app</code>).")
NOTEBOOK_LINK = re.compile(r'(href="(?:\./)?\d\d_[\w-]+)\.ipynb(?=[#"])')
HEADING = re.compile(r"\A#[ \t]+(.+)")


def page_name(notebook):
    """``03_batch_norm_from_scratch.ipynb`` -> ``03_batch_norm_from_scratch.html``."""
    return Path(notebook).with_suffix(".html").name


def title(notebook, name="the notebook"):
    """The title of a course notebook (a dict, called ``name`` in an error): its first heading, ``# NN · Title``,
    without the ``#``."""
    for cell in notebook["cells"]:
        if cell["cell_type"] == "markdown":
            match = HEADING.match(source(cell).strip())
            if match:
                return match.group(1).strip()
            break
    raise ValueError(f"{name} does not start with a markdown cell whose first line is its title, '# NN · Title'")


def is_exercise(cell):
    """An exercise's learner cell or check cell (nbgrader's solution or grade cell)."""
    marks = cell["metadata"].get("nbgrader", {})
    return bool(marks.get("solution") or marks.get("grade"))


def static_explorer(output, notebook):
    """An explorer's output as a picture with its readout and where to run it live (a ``text/html`` output)."""
    data = output["data"]
    width = output.get("metadata", {}).get("image/png", {}).get("width")
    size = f' width="{width}"' if width else ""
    figure = (f'<figure class="bn-static-explorer"><img src="data:image/png;base64,{data["image/png"]}"{size} '
              f'alt="{html.escape(data.get("text/plain", ""))}"><figcaption>'
              f'{readout_html(data.get("text/plain", ""))}<p class="bn-live">{LIVE.format(notebook=notebook)}</p>'
              f'</figcaption></figure>')
    return {"output_type": "display_data", "metadata": {}, "data": {"text/html": figure}}


def static_outputs(outputs, notebook):
    """``outputs`` without what needs a kernel: an explorer becomes its picture, any other widget is dropped."""
    kept = []
    for output in outputs:
        data = output.get("data", {})
        if WIDGET not in data:
            kept.append(output)
        elif "image/png" in data:
            kept.append(static_explorer(output, notebook))
    return kept


def folded_html(code):
    """A solution as a collapsed ``<details>`` block, its code highlighted as the code cells are. (nbconvert's
    markdown renderer would close the block before the code, leaving the solution in view.)"""
    return ('<div class="jp-Cell jp-Notebook-cell bn-solution"><div class="jp-InputArea"><div class="jp-InputPrompt">'
            '</div><div class="jp-RenderedHTMLCommon"><details><summary>Solution (click to open)</summary>'
            f'{highlight(code, PythonLexer(), HtmlFormatter(cssclass="highlight"))}</details></div></div></div>')


def page_notebook(learner, executed, notebook, solutions=False):
    """The notebook a page shows: ``learner``'s cells (the course notebook) with the outputs of ``executed``
    (its ``solved`` version, run), exercises without output, the folded solutions (as raw HTML cells) only if
    ``solutions``."""
    ran, cells = iter(executed["cells"]), []
    for cell in learner["cells"]:
        if folded_solution(cell) is not None:
            if solutions:
                cells.append({"cell_type": "raw", "metadata": {"raw_mimetype": "text/html"}, "id": cell.get("id"),
                              "source": folded_html(folded_solution(cell))})
            continue
        done = next(ran, None)
        if done is None or done["cell_type"] != cell["cell_type"] or (
                not is_exercise(cell) and source(done) != source(cell)):
            raise ValueError(f"{notebook}: the executed notebook's cells do not line up with the course notebook's "
                             f"(at {source(cell)[:60]!r})")
        if cell["cell_type"] != "code":
            cells.append(cell)
        elif is_exercise(cell):
            cells.append({**cell, "outputs": [], "execution_count": None})
        else:
            cells.append({**done, "outputs": static_outputs(done["outputs"], notebook)})
    return {**learner, "cells": cells}


def linked(page):
    """A page's HTML with its links to course notebooks pointing to their pages."""
    return NOTEBOOK_LINK.sub(r"\1.html", page)


def nav(pages, index):
    """The links of page ``index`` of ``pages`` (a list of ``(file name, title)``): previous, contents, next."""
    def link(rel, at, arrow):
        name, text = pages[at]
        return f'<a rel="{rel}" href="{name}">{arrow} {html.escape(text)}</a>'
    parts = [link("prev", index - 1, "←") if index > 0 else "<span></span>",
             '<a href="index.html">Contents</a>',
             link("next", index + 1, "→") if index + 1 < len(pages) else "<span></span>"]
    return f'<nav class="bn-nav">{"".join(parts)}</nav>'


def contents(pages, heading):
    """The contents page: every page in order."""
    items = "\n".join(f'<li><a href="{name}">{html.escape(text)}</a></li>' for name, text in pages)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<title>{html.escape(heading)}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 44rem; margin: 3rem auto; padding: 0 1rem; line-height: 1.5; }}
ul {{ list-style: none; padding: 0; }} li {{ margin: 0.4rem 0; }}
</style>
</head>
<body>
<h1>{html.escape(heading)}</h1>
<ul class="bn-contents">
{items}
</ul>
<p>Each chapter is a notebook run top to bottom; its explorers are shown as pictures of their first view.
To move their controls, open the notebook in JupyterLab (<code>make lab</code>) or the classroom app
(<code>make app</code>).</p>
</body>
</html>
"""
