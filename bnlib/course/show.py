"""Show the library's real code in a notebook, highlighted, where a chapter teaches it.

A chapter that teaches a function the library holds either defines it in a ``#@save`` cell (checked to be
the library's very source, see ``tests/test_saved_cells.py``) or shows the library's source with ``source``:
the code on screen is always the code that runs, never a copy that could drift.
"""

import inspect


def source(obj):
    """The source code of ``obj`` (a function, class or module of bnlib), highlighted in the notebook."""
    from IPython.display import Code

    return Code(inspect.getsource(obj), language="python")
