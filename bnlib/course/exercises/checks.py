"""Checks for the notebooks' exercises: each ``check_*`` prints a verdict and returns True or False.

A wrong answer gets a hint that points at the mistake rather than the solution.
"""

import math

UNANSWERED = "Fill in your answer first (it is still None)"


def report(correct, praise, hint):
    print(("Correct. " + praise) if correct else ("Not yet. " + hint))
    return bool(correct)


def as_number(answer):
    """``answer`` as a float, or None when it is not a single finite real number."""
    if isinstance(answer, bool):
        return None
    try:
        value = float(answer)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def check_number(answer, expected, praise, mistakes, hint, rel_tol=1e-6):
    """Report on a numeric answer: correct when |answer - expected| <= rel_tol |expected|. A wrong answer
    that close to a known mistake (``mistakes``: pairs of value and hint) gets that mistake's hint, any
    other the general ``hint``."""
    value = as_number(answer)
    if value is None:
        return report(False, "", UNANSWERED if answer is None
                      else f"the answer should be a single number (it is {answer!r}).")
    hint = next((text for mistake, text in mistakes if math.isclose(value, mistake, rel_tol=rel_tol)), hint)
    return report(math.isclose(value, expected, rel_tol=rel_tol), praise, hint)
