"""Checks for the notebooks' exercises: each ``check_*`` prints a verdict and returns True or False.

A wrong answer gets a hint that points at the mistake rather than the solution.
"""


def report(correct, praise, hint):
    print(("Correct. " + praise) if correct else ("Not yet. " + hint))
    return bool(correct)
