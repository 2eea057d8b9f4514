"""The layering, read from the imports: arrows only point down, notebooks -> chapter -> shared course -> core.

- The core (``bnlib/*.py``) imports nothing from the course or the tools.
- A chapter (``bnlib/course/chNN/``) imports no other chapter, no tool (``bnlib.bench``, ``bnlib.figures``) and
  nothing of the course's top (``app``, ``classroom``, which show the chapters).
- What the chapters share (``bnlib/course/*.py`` but the top) imports no chapter and no tool.
- The tools may import chapters; nothing outside the tools imports a tool.
- Notebook NN imports from its own chapter and the shared modules, never from another chapter.

Every import counts, also one inside a function, so a lazy import cannot hide a dependency.
"""

import ast
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "bnlib"
TOOLS = ("bnlib.bench", "bnlib.figures", "bnlib.site")
TOP = ("bnlib.course.app", "bnlib.course.classroom")
CHAPTER = re.compile(r"bnlib\.course\.(ch\d\d)(\.|$)")


def module_name(path):
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(tree, package):
    """Every module named by an import in ``tree`` (absolute, and relative ones resolved against ``package``),
    with ``from m import n`` also giving ``m.n`` (``n`` may be a module)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {name for name in found if name == "bnlib" or name.startswith("bnlib.")}


def imports_of(path):
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    return imported(ast.parse(path.read_text(), str(path)), package)


def within(name, prefixes):
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


def chapter_of(name):
    match = CHAPTER.match(name)
    return match.group(1) if match else None


def violations(name, imports):
    """What module ``name`` may not import among ``imports``, each with the rule it breaks."""
    if within(name, TOOLS):
        return []
    wrong = [(other, "a tool") for other in imports if within(other, TOOLS)]
    if not within(name, ("bnlib.course",)):  # the core
        wrong += [(other, "the course, from the core") for other in imports if within(other, ("bnlib.course",))]
    elif chapter_of(name):
        wrong += [(other, "another chapter") for other in imports
                  if chapter_of(other) and chapter_of(other) != chapter_of(name)]
        wrong += [(other, "the course's top") for other in imports if within(other, TOP)]
    elif not within(name, TOP):  # shared by the chapters
        wrong += [(other, "a chapter, from a shared module") for other in imports if chapter_of(other)]
        wrong += [(other, "the course's top, from a shared module") for other in imports if within(other, TOP)]
    return wrong


MODULES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=[module_name(path) for path in MODULES])
def test_imports_only_point_down(path):
    wrong = violations(module_name(path), imports_of(path))
    assert not wrong, f"{path.relative_to(ROOT)} imports " + "; ".join(f"{other} ({rule})" for other, rule in wrong)


NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.stem[:2] for path in NOTEBOOKS])
def test_a_notebook_uses_its_own_chapter_only(path):
    from IPython.core.inputtransformer2 import TransformerManager

    chapter = f"ch{path.name[:2]}"
    code = [TransformerManager().transform_cell("".join(cell["source"]))
            for cell in json.loads(path.read_text())["cells"] if cell["cell_type"] == "code"]
    imports = set().union(*(imported(ast.parse(cell), "") for cell in code))
    others = sorted(name for name in imports if chapter_of(name) not in (None, chapter) or within(name, TOOLS + TOP))
    assert not others, f"{path.name} imports {others}: a notebook uses its chapter ({chapter}) and the shared modules"
    assert any(chapter_of(name) == chapter for name in imports), f"{path.name} never imports bnlib.course.{chapter}"


def test_the_rules_see_what_they_forbid():
    """Each rule fires on an import that breaks it (so the tests above could fail)."""
    assert violations("bnlib.layers", {"bnlib.course.data"})
    assert violations("bnlib.course.ch08.folding", {"bnlib.bench.layers"})
    assert violations("bnlib.course.ch08.folding", {"bnlib.course.ch06.paper"})
    assert violations("bnlib.course.ch08.explorers", {"bnlib.course.app"})
    assert violations("bnlib.course.training", {"bnlib.course.ch07.network"})
    assert not violations("bnlib.course.ch08.folding", {"bnlib.course.ch08.convnet", "bnlib.course.timing", "bnlib"})
    assert not violations("bnlib.figures", {"bnlib.course.ch06.figures"})
    assert not violations("bnlib.course.app", {"bnlib.course.ch06.explorers"})
    tree = ast.parse("def f():\n    from ..ch06 import paper\n")
    assert imported(tree, "bnlib.course.ch08") >= {"bnlib.course.ch06", "bnlib.course.ch06.paper"}
