"""How far the sigmoid inputs wander during training: Figure 1(b, c) of the paper as one number per network.

The measure (fixed before looking at any result). For each of the 100 units of the last hidden layer:

- its median sigmoid input over the test set at an early checkpoint t0 (the first checkpoint at or
  after 10% of training: step 5,000 of 50,000) and at the end, T;
- the distance moved, ``|median(T) - median(t0)|``;
- divided by the unit's band width, its 15-85 percentile spread averaged over the checkpoints t0..T.

A network's drift is the average over its 100 units: 1 means the median moved by a whole band width.
The start is t0, not step 0: at step 0 every input sits near 0 (tiny initial weights) and the first
few hundred steps move every unit of both networks, which is learning, not drift. The paper's panels
also start at 10k steps.
"""

import numpy as np

START_FRACTION = 0.1


def start_index(steps, start_fraction=START_FRACTION):
    """Index of the first checkpoint at or after ``start_fraction`` of training."""
    steps = np.asarray(steps)
    return int(np.argmax(steps >= start_fraction * steps[-1]))


def unit_drifts(percentiles, steps, start_fraction=START_FRACTION):
    """Each unit's drift. ``percentiles`` (checkpoints, 3, units): the 15th, 50th, 85th percentile per unit."""
    percentiles = np.asarray(percentiles, dtype=np.float64)
    if percentiles.ndim != 3 or percentiles.shape[1] != 3:
        raise ValueError(f"percentiles must have shape (checkpoints, 3, units) for the 15/50/85th percentiles; "
                         f"got {percentiles.shape}")
    window = percentiles[start_index(steps, start_fraction):]
    low, median, high = window[:, 0], window[:, 1], window[:, 2]
    moved = np.abs(median[-1] - median[0])  # |median(T) - median(t0)|
    band = (high - low).mean(axis=0)  # the 15-85 spread, averaged over t0..T
    return moved / band


def network_drift(percentiles, steps, start_fraction=START_FRACTION):
    """The network's drift: the average of its units' drifts."""
    return float(unit_drifts(percentiles, steps, start_fraction).mean())


def typical_unit(percentiles, steps, start_fraction=START_FRACTION):
    """The unit whose drift is closest to the median drift of its layer: the one Figure 1(b, c) shows."""
    drifts = unit_drifts(percentiles, steps, start_fraction)
    return int(np.argmin(np.abs(drifts - np.median(drifts))))


def steps_to_reach(accuracy, steps, target):
    """The first checkpoint step at which ``accuracy`` reaches ``target``, or None if it never does."""
    reached = np.flatnonzero(np.asarray(accuracy) >= target)
    return int(np.asarray(steps)[reached[0]]) if len(reached) else None
