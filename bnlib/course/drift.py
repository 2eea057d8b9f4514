"""How far a layer's inputs wander during training: the course's one drift measure.

A unit's inputs over a fixed set of examples are summarized at each checkpoint by their 15th, 50th and
85th percentiles (the paper's Figure 1b, c). Its drift from step t0 to the end T (fixed before looking at
any result, and used by every chapter):

- how far its median moved, ``|median(T) - median(t0)|``;
- divided by its band width, the 15-85 percentile spread averaged over the checkpoints t0..T.

A layer's drift is the average over its units: 1 means the median moved by a whole band width. The
start t0 is after the first steps, which only leave the tiny initialization (learning, not drift).
The measure follows the median only: a band that widens or narrows around a still median does not
count (``band_growth`` reports that separately).
"""

import numpy as np

PERCENTILES = (15, 50, 85)


def percentiles(values, axis=0):
    """The 15th, 50th and 85th percentiles of ``values`` along ``axis``: shape (3, ...) in that order."""
    return np.percentile(np.asarray(values), PERCENTILES, axis=axis)


def band_width(percentiles):
    """The 15th-to-85th percentile spread, from percentiles of shape (..., 3, units)."""
    return percentiles[..., 2, :] - percentiles[..., 0, :]


def start_index(steps, start):
    """Index of the first checkpoint at or after step ``start``."""
    steps = np.asarray(steps)
    if start > steps[-1]:
        raise ValueError(f"the drift starts at step {start}, after the last checkpoint {steps[-1]}")
    return int(np.argmax(steps >= start))


def unit_drifts(percentiles, steps, start):
    """Each unit's drift from step ``start`` to the end. ``percentiles``: (checkpoints, 3, units)."""
    percentiles = np.asarray(percentiles, dtype=np.float64)
    if percentiles.ndim != 3 or percentiles.shape[1] != 3:
        raise ValueError(f"percentiles must have shape (checkpoints, 3, units) for the 15/50/85th percentiles; "
                         f"got {percentiles.shape}")
    window = percentiles[start_index(steps, start):]
    moved = np.abs(window[-1, 1] - window[0, 1])  # |median(T) - median(t0)|
    return moved / band_width(window).mean(axis=0)  # in band widths, averaged over t0..T


def network_drift(percentiles, steps, start):
    """The layer's drift: the average of its units' drifts."""
    return float(unit_drifts(percentiles, steps, start).mean())


def typical_unit(percentiles, steps, start):
    """The unit whose drift is closest to the median drift of its layer: the one a figure shows."""
    drifts = unit_drifts(percentiles, steps, start)
    return int(np.argmin(np.abs(drifts - np.median(drifts))))


def band_growth(percentiles, steps, start):
    """Each unit's band width at the end over its band width at step ``start``."""
    percentiles = np.asarray(percentiles, dtype=np.float64)
    return band_width(percentiles[-1]) / band_width(percentiles[start_index(steps, start)])


def steps_to_reach(accuracy, steps, target):
    """The first checkpoint step at which ``accuracy`` reaches ``target``, or None if it never does."""
    reached = np.flatnonzero(np.asarray(accuracy) >= target)
    return int(np.asarray(steps)[reached[0]]) if len(reached) else None
