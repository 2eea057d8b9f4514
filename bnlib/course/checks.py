"""What every exercise check shares: a verdict that prints when right and raises when not.

A check is one call in the exercise's test cell, e.g. ``check_eval_forward(batch_norm_eval)``. A right answer
prints one short line, "Correct. ..." (never the answer itself), and returns nothing. A wrong or missing
answer raises ``NotYet`` with a hint that points at the mistake rather than the solution: raising is what
lets nbgrader's autograder give the cell zero points. In a notebook the learner sees the hint alone, in one or
two lines, not a traceback through the check's code (IPython shows an exception through its
``_render_traceback_``); the cell still fails.

What makes a check trustworthy is shared here, so that every check gets it:

- ``call`` runs the learner's function on copies of the check's data: an answer that edits its input in place
  (an array, a tensor, a module, or one inside a list, tuple or dict) is refused by name, and cannot spoil the reference the check computes. A result holding NaN or inf is
  refused (NaN never compares as close).
- ``close`` and ``largest_difference`` compare arrays; NaN is never close and its difference is infinite.
- ``one_layer`` refuses a composition (``nn.Sequential``, a function) where one layer of a kind was asked;
  ``folded_layer`` runs a fold of BN into the layer before it on copies and requires one such layer, and
  ``layer_output`` runs a returned layer in its own dtype (a float32 layer gets the precision hint).
- ``check_close`` judges an array answer: the expected value passes; a known mistake gets its hint; an answer
  right only to float32's precision gets a hint about precision, not about the formula.
- ``uniform_distance`` measures a sample against a uniform distribution, for checks of random draws whose
  thresholds come with a bound on a correct answer's chance to fail.
- ``@check`` turns an exception the learner's answer provokes inside the check (a module without a weight, a
  value of the wrong kind) into a hint instead of a traceback.
"""

import copy
import functools
import math
import traceback
from pathlib import Path

import numpy as np
import torch

UNANSWERED = "Fill in your answer first (it is still None)."
NOT_WRITTEN = "Your function is not written yet: replace `raise NotImplementedError()` by its body."
COURSE_CODE = Path(__file__).resolve().parents[1]  # bnlib/: frames there are the checks', not the learner's


class NotYet(AssertionError):
    """An exercise's answer is not right yet; the message is the hint."""

    def _render_traceback_(self):
        """What IPython shows: the hint, and where the learner's own code failed if it raised."""
        lines = [f"\x1b[1;31m{self}\x1b[0m"]
        where = learner_line(self.__cause__)
        return lines + ([where] if where else [])


def learner_line(error):
    """"In your code, line N: <source>" for the innermost frame of ``error`` outside the course's code, or ""."""
    if error is None:
        return ""
    for frame in reversed(traceback.extract_tb(error.__traceback__)):
        if not Path(frame.filename).resolve().is_relative_to(COURSE_CODE) and "site-packages" not in frame.filename:
            return f"In your code, line {frame.lineno}: {(frame.line or '').strip()}"
    return ""


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


def check(function):
    """Decorator for a check: an exception that escapes it (other than ``NotYet``) was provoked by the answer,
    which the check could not use; the learner gets that as a hint naming the exception, not a traceback."""

    @functools.wraps(function)
    def checked(*args, **kwargs):
        __tracebackhide__ = True  # noqa: F841
        try:
            return function(*args, **kwargs)
        except NotYet:
            raise
        except Exception as err:
            raise NotYet(f"Not yet. The check could not use your answer: {type(err).__name__}: {err}. Compare what "
                         f"your answer returns (its kind, shape and attributes) with what the exercise asks.") from err

    return checked


class Items(dict):
    """The snapshot of a dict: its keys and a snapshot of each item."""


class Plain:
    """The snapshot of a plain item of a dict (a number, a string): a copy, compared with ==."""

    def __init__(self, value):
        self.value = value


def snapshot(value):
    """A copy of ``value`` to compare with later: arrays, tensors and modules (their state), lists, tuples and
    dicts of them, or None."""
    if isinstance(value, (list, tuple)):
        return [snapshot(item) for item in value]
    if isinstance(value, dict):  # its items' snapshots, or the items themselves (numbers, strings)
        return Items({key: snapshot(item) if snapshot(item) is not None else Plain(copy.deepcopy(item))
                      for key, item in value.items()})
    if isinstance(value, (np.ndarray, torch.Tensor)):
        return value.copy() if isinstance(value, np.ndarray) else value.detach().clone()
    if isinstance(value, torch.nn.Module):
        return {name: tensor.detach().clone() for name, tensor in value.state_dict().items()}
    return None


def unchanged(value, before):
    """Whether ``value`` still equals its ``snapshot``."""
    if before is None:
        return True
    if isinstance(before, list):
        return len(value) == len(before) and all(unchanged(item, old) for item, old in zip(value, before))
    if isinstance(before, Items):
        return (isinstance(value, dict) and value.keys() == before.keys()
                and all(unchanged(value[key], old) for key, old in before.items()))
    if isinstance(before, Plain):
        try:
            return bool(value == before.value)
        except Exception:  # noqa: BLE001 (a value that cannot be compared counts as changed)
            return False
    if isinstance(value, torch.nn.Module):
        state = value.state_dict()
        return state.keys() == before.keys() and all(torch.equal(state[k], before[k]) for k in before)
    equal = np.array_equal if isinstance(value, np.ndarray) else torch.equal
    return bool(equal(value if isinstance(value, np.ndarray) else value.detach(), before))


def copied(value):
    """A deep copy of ``value``; a tensor inside an autograd graph (not a leaf) is itself, as a copy would leave
    the graph (an in-place edit of it is still seen, by its snapshot)."""
    if isinstance(value, torch.Tensor) and value.grad_fn is not None:
        return value
    return copy.deepcopy(value)


def run(function, *args, returns="the result", may_change=()):
    """``function(*args)``, the learner's function, on copies of ``args``. A function that is missing, raises,
    returns None, or changes an argument in place (but those at the positions ``may_change``) is a ``NotYet``
    that says so (the learner's exception is chained, for its traceback). ``returns`` names what it should
    return, for the hint."""
    __tracebackhide__ = True  # noqa: F841
    if function is None:
        not_yet(UNANSWERED)
    if not callable(function):
        not_yet(f"Pass your function itself, not its result (got {type(function).__name__}).")
    given = [arg if i in may_change else copied(arg) for i, arg in enumerate(args)]
    before = [None if i in may_change else snapshot(arg) for i, arg in enumerate(given)]
    try:
        value = function(*given)
    except NotImplementedError:
        not_yet(NOT_WRITTEN)
    except NotYet:
        raise
    except Exception as err:  # the learner's code: turned into a hint, with their traceback chained
        raise NotYet(f"Not yet. Your function raised {type(err).__name__}: {err}") from err
    for position, (arg, old) in enumerate(zip(given, before)):
        if not unchanged(arg, old):
            not_yet(f"Your function changed its argument {position + 1} ({type(arg).__name__}) in place. Leave the "
                    f"inputs as they are: compute into new arrays (x = x - mean, not x -= mean; .copy() or .clone() "
                    f"first if you must edit).")
    if value is None:
        not_yet(f"Your function returned None: finish it and return {returns}.")
    return value


def as_array(value):
    """``value`` (an array, a tensor, a number or a sequence of them) as a float64 array, or a ``NotYet``; NaN and
    inf are refused."""
    __tracebackhide__ = True  # noqa: F841
    try:
        if isinstance(value, (list, tuple)):
            value = [item.detach() if isinstance(item, torch.Tensor) else item for item in value]
        array = np.asarray(value.detach() if isinstance(value, torch.Tensor) else value, dtype=np.float64)
    except (TypeError, ValueError, RuntimeError):
        not_yet(f"Your function must return numbers (an array or a tensor), not {type(value).__name__}.")
    if not np.isfinite(array).all():
        bad = int((~np.isfinite(array)).sum())
        not_yet(f"Your answer holds NaN or inf ({bad} of {array.size} values): a division by zero, the square root "
                f"of a negative number, or an overflow?")
    return array


def call(function, *args, may_change=()):
    """``run(function, *args)`` as a float64 array of finite numbers."""
    __tracebackhide__ = True  # noqa: F841
    return as_array(run(function, *args, may_change=may_change))


def numbers(value):
    """``value`` (an array, a tensor, possibly in a graph, a number, or None) as a float64 array; None is NaN."""
    return np.asarray(value.detach() if isinstance(value, torch.Tensor) else np.nan if value is None else value,
                      dtype=np.float64)


def largest_difference(a, b):
    """max |a - b| over every entry, infinite when the shapes differ or either holds NaN (never 0 for NaN); a
    tensor counts by its values, None as NaN."""
    a, b = numbers(a), numbers(b)
    if a.shape != b.shape:
        return math.inf
    if a.size == 0:
        return 0.0
    difference = np.abs(a - b)
    return math.inf if np.isnan(difference).any() else float(difference.max())


def close(a, b, rtol=1e-9, atol=1e-12):
    """Whether ``a`` and ``b`` have one shape and agree entry by entry within ``atol + rtol |b|``; NaN never does."""
    a, b = numbers(a), numbers(b)
    return a.shape == b.shape and bool(np.all(np.abs(a - b) <= atol + rtol * np.abs(b)))


FLOAT32 = {"rtol": 1e-4, "atol": 1e-6}  # where an answer computed in float32 lands, around O(1) values
PRECISION = ("Your answer agrees only to about 4 significant digits, the precision of float32: compute in float64 "
             "(numpy's default; torch.float64), or keep the dtype of the data you are given.")


def check_close(answer, expected, praise, hint, mistakes=(), rtol=1e-9, atol=1e-12):
    """``answer`` (from ``call``) must have the shape of ``expected`` and be ``close`` to it (then ``praise`` is
    printed, unless None: one part of a larger answer passes silently). Otherwise the hint
    of the first of ``mistakes`` (pairs: the value a mistake computes, or a function computing it when asked;
    its hint) that ``answer`` reproduces, the precision hint for an answer right to float32's precision, else
    ``hint``."""
    __tracebackhide__ = True  # noqa: F841
    expected = numbers(expected)
    if numbers(answer).shape != expected.shape:
        not_yet(f"Your answer has shape {numbers(answer).shape}; it should have shape {expected.shape}.")
    if close(answer, expected, rtol, atol):
        return None if praise is None else passed(praise)
    for mistake, text in mistakes:
        if close(answer, mistake() if callable(mistake) else mistake, rtol, atol):
            not_yet(text)
    scale = float(np.abs(expected).max(initial=0.0))
    not_yet(PRECISION if close(answer, expected, FLOAT32["rtol"], FLOAT32["atol"] * max(scale, 1.0)) else hint)


def one_layer(answer, kind, what):
    """``answer`` must be one module of class ``kind`` (``nn.Linear``, ``nn.Conv2d``), not a composition that
    computes the same function; ``what`` names it in the hint."""
    __tracebackhide__ = True  # noqa: F841
    if answer is None:
        not_yet(f"Your function returned None: return {what}.")
    if type(answer) is not kind:
        not_yet(f"Return {what}: a single {kind.__module__.split('.')[0]}.nn.{kind.__name__}, not "
                f"{type(answer).__name__} (a Sequential or a function computes the same thing in two steps, "
                f"which is what folding removes).")
    return answer


def folded_layer(fold, layer, bn, kind, what):
    """``fold(layer, bn)``, the learner's fold of the eval-mode ``bn`` into the ``layer`` before it, run on
    copies (an in-place edit of either is refused by name), as one module of class ``kind`` (``one_layer``);
    ``what`` names it in the hints. A fold that trips over a layer without bias is told that its bias is None."""
    __tracebackhide__ = True  # noqa: F841
    if isinstance(fold, torch.nn.Module):
        not_yet("Pass your function itself, not a layer it returned.")
    try:
        folded = run(fold, layer, bn, returns=what)
    except NotYet as refusal:
        if layer.bias is None and isinstance(refusal.__cause__, (TypeError, AttributeError)):
            raise NotYet(f"{refusal} (The {type(layer).__name__} given here has no bias: its .bias is None, "
                         "which counts as a bias of 0.)") from refusal.__cause__
        raise
    return one_layer(folded, kind, what)


def layer_output(layer, x):
    """``layer(x)`` without gradients as a float64 array (``call``), with ``x`` cast to the layer's own dtype: a
    layer made in float32 then gets the precision hint from ``check_close``, not a dtype error."""
    __tracebackhide__ = True  # noqa: F841
    dtype = next((p.dtype for p in layer.parameters()), x.dtype)
    with torch.no_grad():
        return call(layer, x.to(dtype))


def uniform_distance(values, low, high):
    """The Kolmogorov-Smirnov distance between the sample ``values`` and U(low, high): the largest gap between
    their cumulative distributions. For n independent draws of U(low, high) it exceeds d with probability at
    most 2 exp(-2 n d^2) (the Dvoretzky-Kiefer-Wolfowitz inequality), which a check's threshold can be set by."""
    values = np.sort(np.asarray(values, dtype=np.float64).ravel())
    n = len(values)
    cdf = np.clip((values - low) / (high - low), 0.0, 1.0)
    return float(max((np.arange(1, n + 1) / n - cdf).max(), (cdf - np.arange(n) / n).max()))


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
        not_yet(UNANSWERED if answer is None else f"The answer should be a single finite number (it is {answer!r}).")
    hint = next((text for mistake, text in mistakes if math.isclose(value, mistake, rel_tol=rel_tol)), hint)
    verdict(math.isclose(value, expected, rel_tol=rel_tol), praise, hint)


def check_choice(answer, expected, choices, praise, hint):
    """A prediction: ``answer`` must be one of ``choices`` (strings) and equal ``expected``, what the run shows
    (or a function that computes it, called only for an answer among ``choices``)."""
    __tracebackhide__ = True  # noqa: F841
    if answer is None:
        not_yet(UNANSWERED)
    if not isinstance(answer, str) or answer not in choices:
        not_yet(f"Answer with one of {', '.join(repr(choice) for choice in choices)} (got {answer!r}).")
    verdict(answer == (expected() if callable(expected) else expected), praise, hint)
