"""The course around the library: data, experiments, plots, explorers and exercises, chapter by chapter.

Shared by every chapter: ``data`` (MNIST, checked), ``cache`` (results keyed by configuration and code),
``models``, ``training``, ``drift`` and ``plots``. Then one package per notebook, ``ch01`` to ``ch07``, which
import the shared modules and the core library (``bnlib``) but never each other; ``widgets`` holds the
explorers and ``exercises`` the checks of the notebooks' exercises.
"""
