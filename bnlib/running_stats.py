"""Running statistics: what batch norm uses at inference time instead of the batch's own statistics.

During training each BN layer keeps an exponential moving average of the batch means and variances.
At test time it normalizes with those, so a prediction no longer depends on the other examples in
the batch. The paper (Ioffe & Szegedy 2015, Algorithm 2) instead averages over the whole training
set after training, with the unbiased variance m/(m-1) E[var_B]; ``population_statistics`` does that.
"""

import numpy as np
import torch

from .validation import check_momentum


def ema_update(running, batch, momentum):
    """One step of the running average, PyTorch convention: ``(1 - momentum) * running + momentum * batch``.

    ``momentum`` is the weight of the NEW value (torch default 0.1). Works for floats, numpy arrays
    and torch tensors alike; for tensors it is ``torch.lerp``, the same rule written
    running + momentum (batch - running) in one kernel (exact at momentum 0 and 1).
    """
    momentum = check_momentum(momentum, allow_none=False)
    if isinstance(running, torch.Tensor) and isinstance(batch, torch.Tensor):
        return torch.lerp(running, batch, momentum)
    return (1 - momentum) * running + momentum * batch


def keras_to_torch_momentum(decay):
    """The PyTorch ``momentum`` equal to a Keras/TensorFlow BN ``momentum`` (a decay): ``1 - decay``.

    The same word means opposite things in the two libraries:

    - PyTorch: ``running = (1 - momentum) * running + momentum * batch``, default ``momentum=0.1``:
      momentum is the weight of the new batch.
    - Keras / TensorFlow: ``moving = decay * moving + (1 - decay) * batch``, default ``momentum=0.99``
      (called ``decay`` in TF1): the weight of the OLD average.

    Porting a Keras ``momentum=0.99`` to PyTorch unchanged makes the running statistics follow almost
    only the last batch; porting torch's 0.1 to Keras makes them barely move, so a model that trains
    well evaluates badly. Keras' 0.99 is torch's 0.01.
    """
    decay = check_momentum(decay, allow_none=False)
    return 1.0 - decay


def replay_ema(batch_values, momentum, initial):
    """The running value after each step of feeding ``batch_values[t]`` to ``ema_update``, t = 0..T-1.

    ``batch_values`` has shape (T, ...); ``initial`` (a scalar or of shape (...)) is the running value
    before the first step (torch starts running_mean at 0 and running_var at 1). Returns (T, ...).

    The recursion r_t = (1 - momentum) r_{t-1} + momentum b_t is a first-order linear filter, run by
    ``scipy.signal.lfilter`` in compiled code over all columns at once. ``momentum=None`` is torch's
    cumulative average: momentum 1/t at step t, so r_t = (b_1 + ... + b_t) / t whatever the initial value.
    """
    from scipy.signal import lfilter  # imported here: scipy.signal takes a second to load

    momentum = check_momentum(momentum)
    values = np.asarray(batch_values)
    if values.ndim < 1 or len(values) == 0:
        raise ValueError(f"batch_values must have shape (T, ...) with T >= 1 steps; got shape {values.shape}")
    dtype = np.result_type(values.dtype, np.float32)
    if momentum is None:
        steps = np.arange(1, len(values) + 1).reshape((-1,) + (1,) * (values.ndim - 1))
        return (np.cumsum(values, axis=0, dtype=np.float64) / steps).astype(dtype)
    start = np.broadcast_to(np.asarray(initial, dtype=np.float64), values.shape[1:])
    # y[t] = momentum x[t] + (1 - momentum) y[t-1]; the filter state before step 0 is (1 - momentum) r_0.
    state = ((1 - momentum) * start)[np.newaxis]
    running, _ = lfilter([momentum], [1.0, momentum - 1], values.astype(np.float64), axis=0, zi=state)
    return running.astype(dtype)


def population_statistics(batch_means, batch_vars, batch_size):
    """The paper's inference statistics (Algorithm 2, step 10) from per-batch statistics.

    ``batch_means`` and ``batch_vars`` have shape (B, ...): the mean and the BIASED variance of each
    of B training batches of ``batch_size`` = m values per channel. Returns::

        E[x]   = mean over batches of mu_B
        Var[x] = m / (m - 1) * mean over batches of var_B     (unbiased: E[var_B] = (m-1)/m Var[x])
    """
    means, variances = np.asarray(batch_means, dtype=np.float64), np.asarray(batch_vars, dtype=np.float64)
    if means.shape != variances.shape or means.ndim < 1 or len(means) == 0:
        raise ValueError(f"batch_means and batch_vars must both have shape (B, ...) with B >= 1 batches; "
                         f"got {means.shape} and {variances.shape}")
    if int(batch_size) != batch_size or batch_size < 2:
        raise ValueError(f"batch_size must be an int of at least 2 (the correction m/(m-1) needs m > 1); "
                         f"got {batch_size!r}")
    return means.mean(axis=0), batch_size / (batch_size - 1) * variances.mean(axis=0)
