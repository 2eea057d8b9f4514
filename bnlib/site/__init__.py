"""The course as a static site (``make html``, ``python -m bnlib.site``): see ``build`` and ``pages``."""
