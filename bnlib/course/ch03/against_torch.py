"""A batch norm module next to torch's, on the same numbers: everything a user can observe, compared.

Both modules start from the same random weight and bias, see the same few training batches (with
random upstream gradients, since a sum of outputs would hide a wrong backward), then one batch in
eval mode. We record the largest absolute difference of the outputs, of the gradients with respect to
the input, weight and bias, and of the running statistics, after each training batch and after the eval
batch too (which must leave them alone). A difference is infinite where either side holds NaN or lacks a
gradient (``bnlib.course.checks.largest_difference``): a max over differences would report 0 for NaN.
Each module gets its own copy of every input, so that one editing it in place cannot change the other's.
"""

import torch

from bnlib import layers
from bnlib.course.checks import largest_difference

SHAPES = {"BatchNorm1d": (32, 6), "BatchNorm2d": (8, 4, 5, 5)}
QUANTITIES = ("output", "input gradient", "weight gradient", "bias gradient", "running_mean", "running_var",
              "eval output")


def side_by_side(ours, theirs, shape, steps=3, seed=0):
    """``{quantity: largest |ours - theirs|}`` for two modules with torch's parameters and buffers; inputs of
    ``shape`` in the dtype of ``ours.weight``. ``theirs`` is given ``ours``' state first."""
    dtype, channels = ours.weight.dtype, shape[1]
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        ours.weight.copy_(1 + 0.5 * torch.randn(channels, generator=generator, dtype=dtype))
        ours.bias.copy_(torch.randn(channels, generator=generator, dtype=dtype))
    theirs.load_state_dict(ours.state_dict())
    worst = dict.fromkeys(QUANTITIES, 0.0)

    def note(key, a, b):
        worst[key] = max(worst[key], largest_difference(a, b))

    ours.train(), theirs.train()
    for _ in range(steps):
        x = 3 + 2 * torch.randn(shape, generator=generator, dtype=dtype)
        dout = torch.randn(shape, generator=generator, dtype=dtype)
        results = []
        for module in (ours, theirs):
            module.zero_grad()
            xin = x.clone().requires_grad_(True)
            out = module(xin)
            out.backward(dout)
            results.append((out, xin.grad, module.weight.grad, module.bias.grad))
        for key, a, b in zip(QUANTITIES[:4], *results):
            note(key, a, b)
        note("running_mean", ours.running_mean, theirs.running_mean)
        note("running_var", ours.running_var, theirs.running_var)
    ours.eval(), theirs.eval()
    x = 3 + 2 * torch.randn(shape, generator=generator, dtype=dtype)
    with torch.no_grad():
        note("eval output", ours(x.clone()), theirs(x.clone()))
    note("running_mean", ours.running_mean, theirs.running_mean)
    note("running_var", ours.running_var, theirs.running_var)
    return worst


def library_table(dtypes=(torch.float64, torch.float32)):
    """``{(name, dtype name): differences}``: ``bnlib.BatchNorm1d/2d`` against ``torch.nn.BatchNorm1d/2d``."""
    return {(name, str(dtype).replace("torch.", "")):
            side_by_side(getattr(layers, name)(shape[1]).to(dtype), getattr(torch.nn, name)(shape[1]).to(dtype), shape)
            for name, shape in SHAPES.items() for dtype in dtypes}


def print_table(table):
    """One row per comparison of ``{row name: differences}``, one column per quantity."""
    print(f"{'max |ours - torch|':<22}" + "".join(f"{q:>16}" for q in QUANTITIES))
    for name, worst in table.items():
        name = " ".join(name) if isinstance(name, tuple) else name
        print(f"{name:<22}" + "".join(f"{worst[q]:>16.1e}" for q in QUANTITIES))
