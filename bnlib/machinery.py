"""The machinery behind the readable batch norm: speed and compatibility, kept apart from the math.

``bnlib.functional``, ``layers``, ``sync``, ``batch_renorm`` and ``running_stats`` read as the formulas
they compute. What they need beyond the formulas lives here, each piece with what it buys, measured on
the course machine (2 CPU cores, torch 2.14, one thread):

- Buffers (``scale_and_shift``). A full-size result is written, through ``out=``, into a full-size
  tensor of ours that is no longer needed: the squares (x - mu)^2 become the output, the products
  dy (x - mu) become dx. A fresh tensor's first touch costs page faults: without the reuse,
  bn_fwd_bwd_ratio_2d (64, 64, 28, 28) was 10-25% higher when measured on a quiet machine, 5-10% on a
  busy one. Where torch refuses ``out=`` (while autograd records, under vmap) the result is a new tensor.
- Low precision (``compute_dtype``, ``cast``, ``stored``, ``kept_statistics``). float16 and bfloat16
  inputs are computed in float32, as torch's CPU kernels do (their "opmath" type), so every sum is
  accumulated in float32; the input gradient returns to the input's type, the parameter gradients to the
  parameters'. A float16/bfloat16 layer's statistics are rounded where torch's kernel stores them in that
  type. With both, outputs and gradients agree with torch's within its own tolerances for these types,
  most of them bit for bit (``tests/test_torch_compat.py``).
- torch.func (``apply``). torch.func's transforms (vmap, grad, jacrev) need an autograd Function in
  another form: a forward without ctx, a ``setup_context``, a generated vmap rule. torch binds that
  form's arguments by signature on every call: a (256, 100) forward takes about 300 us of CPU in that
  form against 190 us in the plain one; so the form is made, and picked, only under a transform.
- Replaying a running average (``replay_ema_blocks``). The recursion r_t = (1 - m) r_{t-1} + m b_t is a
  first-order linear filter: run over blocks of the steps kept, with ``scipy.signal.lfilter`` over the
  blocks, the momentum explorer's replay (50,000 steps of 300 units, every 500th kept) takes about 45 ms,
  a Python loop of ``ema_update`` about 0.9 s. (Keeping every step, the filter is no faster than the loop.)
"""

import functools

import numpy as np
import torch

from .normalization import per_channel
from .validation import LOW_PRECISION


# Low precision -------------------------------------------------------------------------------------

def compute_dtype(dtype):
    """The type the arithmetic runs in: float32 for float16 and bfloat16, as in torch's CPU kernels."""
    return torch.promote_types(dtype, torch.float32)


def cast(tensor, dtype):
    """``tensor.to(dtype)``, passing None (no affine parameter) and tensors already of that type through."""
    return tensor if tensor is None or tensor.dtype == dtype else tensor.to(dtype)


def rounding_dtype(dtype):
    """The type torch's CPU kernel rounds a layer's statistics to when the layer is held in ``dtype``:
    float16 or bfloat16 itself; None (nothing rounded) for float32 and float64."""
    return dtype if dtype in LOW_PRECISION else None


def stored(vector, dtype):
    """``vector`` rounded to ``dtype`` and back, as torch's kernel stores what normalizes a float16 or
    bfloat16 layer's batch: its mean, and 1/sqrt(var + eps); unchanged when ``dtype`` is None."""
    return vector if dtype is None else vector.to(dtype).to(vector.dtype)


def kept_statistics(mean, var, m, dtype):
    """The batch mean and biased variance over m values per channel as torch's kernel keeps them for a
    layer held in ``dtype``, to normalize with and to update the running statistics. A bfloat16 layer's
    are bfloat16: the mean rounded, the variance its float32 sum of squares rounded and divided by m
    rounded (bfloat16 division: 257 counts as 256). A float16 layer's stay float32 (a float16 sum of
    squares could overflow); only the mean and 1/sqrt(var + eps) it normalizes with are rounded
    (``stored``). float32 and float64 layers round nothing."""
    if dtype != torch.bfloat16:
        return mean, var
    count = torch.tensor(float(m), dtype=dtype).item()  # m as bfloat16 holds it
    return stored(mean, dtype), ((var * m).to(dtype) / count).to(var.dtype)


# Buffers -------------------------------------------------------------------------------------------

def scale_and_shift(x, scale, shift, buffer=None):
    """x scale + shift with per-channel (C,) vectors ``scale`` and ``shift`` (either may be None), in one
    fused pass where there are both, written into ``buffer`` when it is given and torch takes ``out=``.

    ``buffer`` must be a full-size tensor of ours that nothing needs any more, of x's type and layout.
    torch refuses ``out=`` while autograd records an operation on a tensor that requires grad (a backward
    differentiated with ``create_graph=True``) and under vmap (torch.func's, and the older one of
    gradcheck's batched gradients), before it computes anything; there the result is a new tensor.
    Trying costs nothing where it works, while checking those conditions first costs a few microseconds
    on every call, several percent of a small batch's step.
    """
    ndim = x.dim()
    if scale is None:
        return x if shift is None else x + per_channel(shift, ndim)
    scale = per_channel(scale, ndim)
    if shift is None:
        return _into(buffer, torch.mul, x, scale)
    return _into(buffer, torch.addcmul, per_channel(shift, ndim), x, scale)


def _into(buffer, op, *args):
    """``op(*args, out=buffer)``, or ``op(*args)`` where there is no buffer or torch refuses ``out=``."""
    if buffer is not None:
        try:
            return op(*args, out=buffer)
        except RuntimeError:  # out= refused (autograd recording, vmap): a new tensor instead
            pass
    return op(*args)


# torch.func ----------------------------------------------------------------------------------------

def apply(function, *inputs):
    """``function.apply(*inputs)``, or under a torch.func transform the same computation in the form the
    transforms need. ``function`` is an autograd Function whose ``forward(ctx, *inputs)`` is
    ``compute(*inputs) -> (outputs, kept)`` followed by ``remember(ctx, inputs, outputs, kept)``."""
    if torch._C._are_functorch_transforms_active():
        outputs = _torch_func_form(function).apply(*inputs)
        return outputs[:len(outputs) - function.kept_count]
    return function.apply(*inputs)


@functools.cache
def _torch_func_form(function):
    """``function`` with torch.func's forward and ``setup_context``: what the backward keeps (``kept``)
    becomes extra outputs, which ``apply`` drops again."""

    def forward(*inputs):
        outputs, kept = function.compute(*inputs)
        return (*outputs, *kept)

    def setup_context(ctx, inputs, output):
        split = len(output) - function.kept_count
        function.remember(ctx, inputs, output[:split], output[split:])

    return type(f"{function.__name__}ForTorchFunc", (function,),
                {"generate_vmap_rule": True, "forward": staticmethod(forward),
                 "setup_context": staticmethod(setup_context)})


# Replaying a running average ------------------------------------------------------------------------

def replay_ema_blocks(values, momentum, initial, every):
    """``bnlib.running_stats.replay_ema`` computed in blocks: ``values`` (T, ...), T a multiple of
    ``every``; the running value after steps every, 2 every, ..., T, in float32 or wider.

    Every L = ``every`` steps, r_{t+L} = (1 - m)^L r_t + sum_{k=1..L} m (1 - m)^(L-k) b_{t+k}: one
    weighted sum per block of L values (a matrix product), then a running average over the blocks with
    momentum a = 1 - (1 - m)^L, fed with (block sum) / a, by ``lfilter``. ``momentum=None`` (momentum 1/t
    at step t) is the cumulative average, r_t = (b_1 + ... + b_t) / t whatever the initial value.
    """
    from scipy.signal import lfilter  # imported here: scipy.signal takes a second to load

    dtype, shape = np.result_type(values.dtype, np.float32), values.shape[1:]
    if momentum is None:
        steps = np.arange(1, len(values) + 1).reshape((-1,) + (1,) * len(shape))
        return (np.cumsum(values, axis=0, dtype=np.float64) / steps)[every - 1::every].astype(dtype)
    blocks = values.reshape(len(values) // every, every, -1).astype(np.float64)
    weights = momentum * (1 - momentum) ** np.arange(every - 1, -1, -1.0)  # m (1 - m)^(L-k); 0^0 = 1
    block_momentum = 1 - (1 - momentum) ** every                            # a = 1 - (1 - m)^L
    fed = weights @ blocks / block_momentum if block_momentum > 0 else np.zeros(blocks[:, 0].shape)
    start = np.broadcast_to(np.asarray(initial, dtype=np.float64), shape).reshape(1, -1)
    # y[t] = a x[t] + (1 - a) y[t-1]; the filter state before step 0 is (1 - a) r_0.
    running, _ = lfilter([block_momentum], [1.0, block_momentum - 1], fed, axis=0, zi=(1 - block_momentum) * start)
    return running.reshape(len(running), *shape).astype(dtype)
