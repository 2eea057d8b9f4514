"""The course around the library: one package per notebook, and what the chapters share.

Each chapter ``chNN`` (one per notebook, ``ch01`` to ``ch11``) holds its experiments and figures, its
explorers (``explorers.py``) and the checks of its exercises (``exercises.py``). A chapter imports the shared
modules below and the core library (``bnlib``), never another chapter and never a tool (``bnlib.figures``,
``bnlib.bench``); ``tests/test_layering.py`` reads the imports and says so.

Shared by the chapters: ``data`` (MNIST, checked), ``cache`` (results keyed by configuration and code),
``models``, ``training``, ``drift``, ``plots``, ``parallel`` (processes), ``timing`` (a paired timer), ``show``,
``explorer`` (the explorers' base) and ``checks`` (what the exercise checks share). On top: ``app`` (the
classroom app, which shows every chapter's explorers) and ``classroom`` (nbgrader).
"""
