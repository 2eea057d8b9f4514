"""The course's static site (``python -m bnlib.site``, ``make html``).

The quick tests build the pages of every notebook with a stand-in for the kernel (``run``): the contents
page, the previous/next links, the links between notebooks, what an exercise shows with and without
``--solutions``, and the tool's errors. The slow test runs chapter 01 for real, builds it both ways and
opens every page in headless Chromium with every request that is not ``file:`` blocked: nothing may be
asked of the network, the math must be typeset and the explorer's picture loaded.
"""

import base64
import io
import json
import re
import time
from pathlib import Path

import pytest
from bs4 import BeautifulSoup
from PIL import Image

from bnlib.course.classroom import course_notebooks, folded_solution, source
from bnlib.site import build
from bnlib.site.__main__ import chosen, main
from bnlib.site.pages import WIDGET, is_exercise, page_name, static_outputs, title

ROOT = Path(__file__).resolve().parent.parent
FIRST = ROOT / "notebooks" / "01_input_normalization.ipynb"  # math, an explorer and exercises
BUILD_TIME = 90  # seconds to run and publish chapter 01 with its results cached (about 50 s on 2 cores)


def png(width=40, height=20):
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), "steelblue").save(buffer, format="png")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def fake_run(notebook, folder):
    """What a kernel gives back, without one: every code cell prints "Correct.", and a cell that calls an
    explorer shows a widget view with its picture (as ``Explorer._repr_mimebundle_`` makes it)."""
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"] = [{"output_type": "stream", "name": "stdout", "text": "Correct.\n"}]
            if re.search(r"\w+_explorer\(", source(cell)):
                cell["outputs"].append({"output_type": "display_data", "metadata": {"image/png": {"width": 40}},
                                        "data": {"text/plain": "headline; detail", "image/png": png(),
                                                 WIDGET: {"version_major": 2, "version_minor": 0, "model_id": "x"}}})
    return notebook


def text_of(path):
    return BeautifulSoup(path.read_text(), "html.parser")


def solutions_of(notebook):
    """The lines of the folded solutions that no other cell of the notebook holds."""
    cells = build.read(notebook)["cells"]
    stubs = "\n".join(source(cell) for cell in cells if folded_solution(cell) is None)
    return [line.strip() for cell in cells if folded_solution(cell) is not None
            for line in folded_solution(cell).split("\n") if line.strip() and line.strip() not in stubs]


@pytest.fixture(scope="module")
def fake_site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site") / "html"
    build.build_site(course_notebooks(), out, run=fake_run, say=lambda line: None)
    return out


def test_the_contents_page_lists_every_chapter_in_order(fake_site):
    links = text_of(fake_site / "index.html").select("ul.bn-contents a")
    expected = [(page_name(notebook), title(build.read(notebook))) for notebook in course_notebooks()]
    assert [(link["href"], link.get_text()) for link in links] == expected
    numbers = [re.match(r"(\d\d) · \w", text) for _, text in expected]
    assert all(numbers) and [int(n.group(1)) for n in numbers] == list(range(1, len(expected) + 1))
    assert all((fake_site / name).is_file() for name, _ in expected)


def test_each_page_links_to_the_previous_the_next_and_the_contents(fake_site):
    names = [page_name(notebook) for notebook in course_notebooks()]
    for at, name in enumerate(names):
        page = text_of(fake_site / name)
        for nav in page.select("nav.bn-nav"):  # at the top and at the bottom
            assert [a["href"] for a in nav.select("a[rel=prev]")] == names[max(at - 1, 0):at]
            assert [a["href"] for a in nav.select("a[rel=next]")] == names[at + 1:at + 2]
            assert nav.select_one("a[href='index.html']")
        assert len(page.select("nav.bn-nav")) == 2
        assert page.title.get_text() and page.h1.get_text().startswith(name[:2])


def test_links_between_notebooks_point_to_the_pages(fake_site):
    links = [a["href"] for name in fake_site.glob("[0-9][0-9]_*.html") for a in text_of(name).select("a[href]")]
    assert any(re.match(r"\d\d_\w+\.html", href) for href in links if not href.startswith("index"))
    assert not [href for href in links if ".ipynb" in href]


def test_pages_show_no_solution_and_no_check_output(fake_site):
    for notebook in course_notebooks():
        page = text_of(fake_site / page_name(notebook))
        text = page.get_text()
        assert "BEGIN SOLUTION" not in text and not page.select("details")
        assert solutions_of(notebook) and not [line for line in solutions_of(notebook) if line in text], notebook.name
        exercises = sum(is_exercise(cell) for cell in build.read(notebook)["cells"])
        code_cells = len(page.select(".jp-CodeCell"))
        assert text.count("Correct.") == code_cells - exercises, notebook.name  # only the other cells'


def test_with_solutions_they_are_folded_and_unmarked(tmp_path):
    build.build_site([FIRST], tmp_path, solutions=True, run=fake_run, say=lambda line: None)
    page = text_of(tmp_path / page_name(FIRST))
    folded = page.select("details")
    assert len(folded) == 4 and not any(block.has_attr("open") for block in folded)
    inside = "\n".join(block.get_text() for block in folded)
    assert all(line in inside for line in solutions_of(FIRST))
    assert "BEGIN SOLUTION" not in page.get_text() and "Correct." not in inside


def test_an_explorer_becomes_its_picture_and_other_widgets_go():
    view = {"version_major": 2, "version_minor": 0, "model_id": "x"}
    outputs = [{"output_type": "display_data", "metadata": {"image/png": {"width": 40}},
                "data": {"text/plain": "1.5 steps; slow", "image/png": png(), WIDGET: view}},
               {"output_type": "display_data", "metadata": {}, "data": {"text/plain": "HBox()", WIDGET: view}},
               {"output_type": "stream", "name": "stdout", "text": "kept\n"}]
    shown = static_outputs(outputs, "01_input_normalization.ipynb")
    assert [output.get("text") for output in shown] == [None, "kept\n"]
    figure = BeautifulSoup(shown[0]["data"]["text/html"], "html.parser")
    assert figure.img["src"] == "data:image/png;base64," + png() and figure.img["width"] == "40"
    assert figure.b.get_text() == "1.5 steps" and "01_input_normalization.ipynb" in figure.get_text()
    assert "make lab" in figure.get_text() and "make app" in figure.get_text()


def test_an_explorer_keeps_a_picture_of_its_first_view():
    from bnlib.course.ch01.explorers import learning_rate_explorer

    explorer = learning_rate_explorer()
    data, metadata = explorer._repr_mimebundle_()
    assert WIDGET in data and data["text/plain"] == explorer.text  # JupyterLab shows the widget view
    assert base64.b64decode(data["image/png"]) == explorer.image.value
    assert metadata["image/png"]["width"] == int(explorer.image.layout.width[:-2])


def test_bad_input_is_refused_with_a_reason(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit:
        main(["--out", str(tmp_path / "html"), "01_no_such_chapter.ipynb"])
    assert exit.value.code == 2 and "unknown notebook '01_no_such_chapter.ipynb'" in capsys.readouterr().err
    (tmp_path / "a_file").write_text("mine")
    with pytest.raises(ValueError, match="is a file"):
        build.build_site([FIRST], tmp_path / "a_file", run=fake_run)
    with pytest.raises(ValueError, match="did not write"):  # a folder of the user's own files
        build.build_site([FIRST], tmp_path, run=fake_run)
    assert (tmp_path / "a_file").read_text() == "mine" and not (tmp_path / "index.html").exists()
    assert chosen(["01_input_normalization", "notebooks/02_internal_covariate_shift.ipynb"])[0] == FIRST
    untitled = tmp_path / "untitled" / "10_untitled.ipynb"
    untitled.parent.mkdir()
    untitled.write_text(FIRST.read_text().replace('"# 01 · Input normalization', '"Input normalization'))
    with pytest.raises(ValueError, match="10_untitled.ipynb does not start with .* its title"):
        build.build_site([untitled], tmp_path / "site", run=fake_run)


@pytest.fixture(scope="module")
def chromium(tmp_path_factory):
    from browser import launch_chromium, require_browser

    require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = launch_chromium(playwright, tmp_path_factory.mktemp("chromium-profile"))
        yield context
        context.close()


def offline_view(context, page_path):
    """Open ``page_path`` with every request that is not ``file:`` aborted; what the page shows, and the
    requests that were blocked or failed."""
    blocked, failed = [], []
    page = context.new_page()
    page.route(lambda url: not url.startswith("file:"), lambda route: (blocked.append(route.request.url),
                                                                      route.abort()))
    page.on("requestfailed", lambda request: failed.append(request.url))
    page.goto(page_path.as_uri())
    page.wait_for_load_state("load")
    if page.evaluate("() => !!window.MathJax"):
        page.evaluate("() => new Promise(done => MathJax.Hub.Queue(done))")  # typesetting done
    seen = page.evaluate("""() => ({
        text: document.body.innerText,
        math: document.querySelectorAll('.MathJax, .MathJax_Display').length,
        mathErrors: document.querySelectorAll('.MathJax_Error, merror').length,
        pictures: [...document.querySelectorAll('.bn-static-explorer img')].map(img => img.naturalWidth),
        folded: document.querySelectorAll('details:not([open])').length,
        unfolded: document.querySelectorAll('details[open]').length,
        images: [...document.images].map(img => img.naturalWidth)})""")
    page.close()
    return seen, blocked, [url for url in failed if url not in blocked and url != "about:blank"]


@pytest.mark.slow
def test_every_kind_of_math_is_typeset_offline(tmp_path, chromium):
    """Script, blackboard and calligraphic letters too (their fonts are STIX-Web's, MathJax's default TeX
    fonts are not shipped)."""
    notebook = build.read(FIRST)
    notebook["cells"] = [{"cell_type": "markdown", "id": "math", "metadata": {}, "source": (
        "# 10 · Math\n\n$\\mu_\\mathcal{B}$, $\\mathbb{E}[x]$, $\\mathfrak{g}$, "
        "$\\boldsymbol{\\gamma}$ and\n\n$$\\hat x = \\frac{x-\\mu}{\\sqrt{\\sigma^2+\\epsilon}}$$")}]
    (tmp_path / "10_math.ipynb").write_text(json.dumps(notebook))
    build.build_site([tmp_path / "10_math.ipynb"], tmp_path / "site", run=fake_run, say=lambda line: None)
    seen, blocked, failed = offline_view(chromium, tmp_path / "site" / "10_math.html")
    assert not blocked and not failed, f"asked for {blocked + failed}"
    assert seen["math"] >= 6 and not seen["mathErrors"] and "\\frac" not in seen["text"]


@pytest.mark.slow
def test_chapter_01_published_works_offline_in_chromium(tmp_path, chromium):
    runs = []

    def run_once(notebook, folder):  # both versions from one run of the notebook
        runs.append(runs[0] if runs else build.execute(notebook, folder))
        return runs[-1]
    start = time.monotonic()
    build.build_site([FIRST], tmp_path / "learner", run=run_once, say=lambda line: None)
    took = time.monotonic() - start
    build.build_site([FIRST], tmp_path / "instructor", solutions=True, run=run_once, say=lambda line: None)
    assert took < BUILD_TIME, f"building chapter 01 took {took:.0f} s"
    assert not [cell for cell in runs[0]["cells"] if cell.get("outputs") and any(
        output["output_type"] == "error" for output in cell["outputs"])]
    for site in ("learner", "instructor"):
        for page_path in sorted((tmp_path / site).glob("*.html")):
            seen, blocked, failed = offline_view(chromium, page_path)
            assert not blocked and not failed, f"{page_path.name} asked for {blocked + failed}"
            assert all(width > 0 for width in seen["images"]), page_path.name
            if page_path.name == "index.html":
                continue
            assert seen["math"] > 20 and not seen["mathErrors"], f"{page_path.name}: math not typeset"
            assert "$$" not in seen["text"] and "\\frac" not in seen["text"] and "$\\" not in seen["text"]
            assert len(seen["pictures"]) == 1 and seen["pictures"][0] > 0, "the explorer's picture"
            assert "Interactive in the notebook: open 01_input_normalization.ipynb" in seen["text"]
            assert "BEGIN SOLUTION" not in seen["text"] and "Correct." not in seen["text"]
            assert not [line for line in solutions_of(FIRST) if line in seen["text"]], "a solution in view"
            assert (seen["folded"], seen["unfolded"]) == ((4, 0) if site == "instructor" else (0, 0))
