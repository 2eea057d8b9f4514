"""What the tests of the exercise checks share: a refusal with its hints, and a learner's unwritten stub."""

import pytest

from bnlib.course.checks import NotYet


def refused(check, answer, *hints):
    """``check(answer)`` raises NotYet whose message holds every one of ``hints``."""
    with pytest.raises(NotYet) as refusal:
        check(answer)
    for hint in hints:
        assert hint in str(refusal.value), str(refusal.value)


def stub(*args):
    """A solution cell as nbgrader leaves it for the student."""
    raise NotImplementedError()
