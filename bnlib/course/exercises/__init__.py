"""The checks of the notebooks' exercises: one module per chapter (``ch01`` ... ), ``checks`` for what they
share. A notebook imports its chapter's, e.g. ``from bnlib.course.exercises import ch03 as exercises``."""
