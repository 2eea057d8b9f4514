"""Running statistics: what batch norm uses at inference time instead of the batch's own statistics.

During training each BN layer keeps an exponential moving average of the batch means and variances.
At test time it normalizes with those, so a prediction no longer depends on the other examples in
the batch. The paper (Ioffe & Szegedy 2015, Algorithm 2) instead averages over the whole training
set after training, with the unbiased variance m/(m-1) E[var_B]; ``population_statistics`` does that.

``ema_update`` is the one update rule: ``update_running_stats`` applies it to a layer's buffers
(``bnlib.BatchNorm1d/2d``, ``bnlib.SyncBatchNorm``, ``bnlib.BatchRenorm1d/2d``), ``replay_ema`` replays it
over a recorded history.
"""

import numpy as np
import torch

from .machinery import cast, replay_ema_blocks
from .validation import check_momentum


def ema_update(running, batch, momentum, out=None):
    """One step of the running average, PyTorch convention: ``(1 - momentum) * running + momentum * batch``.

    ``momentum`` is the weight of the NEW value (torch default 0.1). Works for floats, numpy arrays
    and torch tensors alike; for tensors it is ``torch.lerp``, the same rule written
    running + momentum (batch - running) in one kernel (exact at momentum 0 and 1), written into the
    tensor ``out`` if given (the layers update their buffers in place).
    """
    momentum = check_momentum(momentum, allow_none=False)
    if isinstance(running, torch.Tensor) and isinstance(batch, torch.Tensor):
        return torch.lerp(running, batch, momentum, out=out)
    return (1 - momentum) * running + momentum * batch


def update_running_stats(layer, **batch_values):
    """One training step of ``layer``'s running statistics: each buffer named in ``batch_values`` takes an
    ``ema_update`` step towards the batch's value, in place, with the layer's momentum.

    ``momentum=None`` is the cumulative average: the t-th batch counted in ``num_batches_tracked`` gets
    weight 1/t (torch's rule; 0 when nothing is counted). A float16/bfloat16 buffer is updated in its
    batch value's precision (float32) and rounded once. The batch values carry no gradient (they are
    the non-differentiable outputs of the Functions), so nothing is recorded.
    """
    momentum = layer.momentum
    if momentum is None:  # the cumulative average: the t-th batch gets weight 1/t
        count = layer.num_batches_tracked
        momentum = 0.0 if count is None else 1.0 / float(count)
    for name, batch in batch_values.items():
        running = getattr(layer, name)
        ema_update(cast(running, batch.dtype), batch, momentum, out=running)


def keras_to_torch_momentum(decay):
    """The PyTorch ``momentum`` equal to a Keras/TensorFlow BN ``momentum`` (a decay): ``1 - decay``.

    The same word means opposite things in the two libraries:

    - PyTorch: ``running = (1 - momentum) * running + momentum * batch``, default ``momentum=0.1``:
      momentum is the weight of the new batch.
    - Keras / TensorFlow: ``moving = decay * moving + (1 - decay) * batch``, default ``momentum=0.99``
      (called ``decay`` in TF1): the weight of the OLD average.

    Copied unchanged, either value makes the running statistics follow almost only the last batch:
    Keras' ``momentum=0.99`` in PyTorch weights the new batch 0.99, and torch's ``momentum=0.1`` in Keras
    weights it 1 - 0.1 = 0.9. A model that trains well then evaluates badly. Keras' 0.99 is torch's 0.01,
    and torch's 0.1 is Keras' 0.9.
    """
    decay = check_momentum(decay, allow_none=False)
    return 1.0 - decay


def replay_ema(batch_values, momentum, initial, every=1):
    """The running value after every ``every``-th step of feeding ``batch_values[t]`` to ``ema_update``.

    ``batch_values`` has shape (T, ...); ``initial`` (a scalar or of shape (...)) is the running value
    before the first step (torch starts running_mean at 0 and running_var at 1). Returns (T / every, ...):
    the values after steps every, 2 every, ..., T. That is r_0 = initial and
    r_t = (1 - m_t) r_{t-1} + m_t b_t, with m_t = momentum, or m_t = 1/t for ``momentum=None`` (torch's
    cumulative average, which forgets the initial value). All steps and values are computed at once, in
    compiled code (``bnlib.machinery.replay_ema_blocks``).
    """
    momentum = check_momentum(momentum)
    values = np.asarray(batch_values)
    if values.ndim < 1 or len(values) == 0:
        raise ValueError(f"batch_values must have shape (T, ...) with T >= 1 steps; got shape {values.shape}")
    if int(every) != every or every < 1 or len(values) % every:
        raise ValueError(f"every must be a positive divisor of the number of steps {len(values)}; got {every!r}")
    return replay_ema_blocks(values, momentum, initial, int(every))


def unbiased_variance(biased_var, m):
    """m/(m-1) var: the unbiased variance from the biased one of m values (Bessel's correction).

    The batch normalizes with the biased variance, but E[var_B] = (m-1)/m Var[x], so the running and
    population statistics store var_B m/(m-1) (the paper's Algorithm 2, step 10, and torch's running_var).
    """
    if m < 2:
        raise ValueError(f"the unbiased variance needs at least 2 values per channel (m/(m-1)); got m = {m}")
    return biased_var * (m / (m - 1))


def replay_running_stats(batch_means, batch_vars, batch_size, momentum=0.1, every=1):
    """A BN layer's ``(running_mean, running_var)`` at steps 0, every, 2 every, ..., T, replayed afterwards.

    ``batch_means`` and ``batch_vars`` (T, ...) are every training step's batch mean and BIASED batch
    variance over ``batch_size`` = m values per channel. The running statistics never influence training,
    so they can be replayed for any momentum: as torch keeps them, from 0 and 1, fed with the batch mean
    and the unbiased batch variance. Each result has shape (T / every + 1, ...), the start first.
    """
    means, variances = np.asarray(batch_means), unbiased_variance(np.asarray(batch_vars), batch_size)
    replayed = []
    for values, start in ((means, 0.0), (variances, 1.0)):
        running = replay_ema(values, momentum, start, every)
        replayed.append(np.concatenate([np.full((1, *running.shape[1:]), start, running.dtype), running]))
    return tuple(replayed)


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
    if int(batch_size) != batch_size:
        raise ValueError(f"batch_size must be an int, the number m of values per channel; got {batch_size!r}")
    return means.mean(axis=0), unbiased_variance(variances.mean(axis=0), batch_size)


def batch_norm_layers(model):
    """The batch norm layers of ``model`` that keep running statistics: torch's, and bnlib's, which
    subclass torch's base class."""
    kinds = torch.nn.modules.batchnorm._BatchNorm
    return [module for module in model.modules() if isinstance(module, kinds) and module.track_running_stats]


def recompute_population_statistics(model, batches):
    """Replace every BN layer's running statistics by population statistics for the current weights.

    One pass over ``batches`` (tensors, or tuples whose first item is the input) with the weights
    frozen (no gradients, no optimizer), every BN layer in training mode with ``momentum=None`` and
    the rest of the model in eval mode (dropout off). momentum=None is a cumulative average, so each
    layer ends with the paper's Algorithm 2 over those batches of m examples::

        running_mean = mean over batches of mu_B
        running_var  = mean over batches of m/(m-1) var_B

    Use batches of equal size (the average weighs every batch alike). The model's mode and the
    layers' momentum are restored afterwards. Returns ``model``.
    """
    layers = batch_norm_layers(model)
    if not layers:
        raise ValueError("the model has no batch norm layer with track_running_stats=True: nothing to recompute")
    was_training, momenta = model.training, [layer.momentum for layer in layers]
    model.eval()
    for layer in layers:
        layer.reset_running_stats()    # running_mean 0, running_var 1, no batch counted yet
        layer.momentum = None          # the cumulative average: momentum 1/t at the t-th batch
        layer.train()                  # normalize with the batch's statistics, and update the running ones
    try:
        count = 0
        with torch.no_grad():          # the weights are frozen: no graph, no gradients
            for batch in batches:
                model(batch[0] if isinstance(batch, (tuple, list)) else batch)
                count += 1
        if count == 0:
            raise ValueError("batches is empty: pass an iterable of training batches, e.g. images.split(60)")
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum
        model.train(was_training)
    return model
