"""What every exercise check shares: a verdict that prints when right and raises when not.

A check is one call in the exercise's test cell, e.g. ``check_eval_mode(batch_norm_eval)``. A right answer
prints one short line, "Correct. ..." (never the answer itself), and returns nothing. A wrong or missing
answer raises ``NotYet`` with a hint that points at the mistake rather than the solution: raising is what
lets nbgrader's autograder give the cell zero points, and what makes the learner's mistake impossible to
miss. The check's own frames are hidden from the traceback, so the learner sees their cell and the hint.
"""

import math

import numpy as np

UNANSWERED = "Fill in your answer first (it is still None)."


class NotYet(AssertionError):
    """An exercise's answer is not right yet; the message is the hint."""


def passed(praise):
    """A right answer: one line, starting "Correct."."""
    print(f"Correct. {praise}")


def not_yet(hint):
    """A wrong or missing answer: raise ``NotYet("Not yet. <hint>")``."""
    __tracebackhide__ = True  # noqa: F841 (IPython and pytest leave this frame out of the traceback)
    raise NotYet(f"Not yet. {hint}")


def verdict(correct, praise, hint):
    """``passed(praise)`` if ``correct``, else ``not_yet(hint)``."""
    __tracebackhide__ = True  # noqa: F841
    passed(praise) if correct else not_yet(hint)


def run(function, *args, returns="the result"):
    """``function(*args)``, the learner's function; one that is missing, raises or returns None is a
    ``NotYet`` that says so (the learner's exception is chained, for its traceback). ``returns`` names
    what it should return, for the hint."""
    __tracebackhide__ = True  # noqa: F841
    if function is None:
        not_yet(UNANSWERED)
    if not callable(function):
        not_yet(f"Pass your function itself, not its result (got {type(function).__name__}).")
    try:
        value = function(*args)
    except NotImplementedError:
        not_yet("Your function is not written yet: replace `raise NotImplementedError()` by its body.")
    except Exception as err:  # the learner's code: turned into a hint, with their traceback chained
        raise NotYet(f"Not yet. Your function raised {type(err).__name__}: {err}") from err
    if value is None:
        not_yet(f"Your function returned None: finish it and return {returns}.")
    return value


def call(function, *args):
    """``run(function, *args)`` as a float64 array."""
    __tracebackhide__ = True  # noqa: F841
    value = run(function, *args)
    try:
        return np.asarray(value.detach() if hasattr(value, "detach") else value, dtype=np.float64)
    except (TypeError, ValueError):
        not_yet(f"Your function must return an array of numbers, not {type(value).__name__}.")


def as_number(answer):
    """``answer`` as a float, or None when it is not a single finite real number."""
    if isinstance(answer, bool):
        return None
    try:
        value = float(answer)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def check_value(answer, expected, praise, mistakes, hint, rel_tol=1e-6):
    """A numeric answer: right when |answer - expected| <= rel_tol |expected|. A wrong answer that close to a
    known mistake (``mistakes``: pairs of value and hint) gets that mistake's hint, any other ``hint``."""
    __tracebackhide__ = True  # noqa: F841
    value = as_number(answer)
    if value is None:
        not_yet(UNANSWERED if answer is None else f"The answer should be a single number (it is {answer!r}).")
    hint = next((text for mistake, text in mistakes if math.isclose(value, mistake, rel_tol=rel_tol)), hint)
    verdict(math.isclose(value, expected, rel_tol=rel_tol), praise, hint)


def check_choice(answer, expected, choices, praise, hint):
    """A prediction: ``answer`` must be one of ``choices`` (strings) and equal ``expected``, what the run shows
    (or a function that computes it, called only for an answer among ``choices``)."""
    __tracebackhide__ = True  # noqa: F841
    if answer is None:
        not_yet(UNANSWERED)
    if answer not in choices:
        not_yet(f"Answer with one of {', '.join(repr(choice) for choice in choices)} (got {answer!r}).")
    verdict(answer == (expected() if callable(expected) else expected), praise, hint)
