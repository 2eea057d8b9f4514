"""What the tests of the exercise checks share: a refusal with its hints, a learner's unwritten stub, and a
reading of a cached run made once for a whole bank."""

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


def once(read):
    """``read``, remembering its result for each arguments: a bank calls a check a hundred times, and each call
    would read the same run from the disk cache (the checks copy what they hand to an answer)."""
    kept = {}

    def remembered(*args, **kwargs):
        key = repr((args, sorted(kwargs.items())))
        if key not in kept:
            kept[key] = read(*args, **kwargs)
        return kept[key]

    return remembered


class UpdatesInEval:
    """Mixin for a batch norm layer: a real mistake, it updates its running statistics in eval mode too."""

    def forward(self, x):
        if not self.training:
            self.train()
            super().forward(x)
            self.eval()
        return super().forward(x)

