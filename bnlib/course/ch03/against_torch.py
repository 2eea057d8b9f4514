"""Our ``BatchNorm1d``/``BatchNorm2d`` next to ``torch.nn.BatchNorm1d``/``2d``, on the same numbers.

Both modules start from the same random weight and bias, see the same few training batches (with
random upstream gradients, since a sum of outputs would hide a wrong backward), then one batch in
eval mode. We record the largest absolute difference of everything a user can observe: outputs,
gradients with respect to the input, weight and bias, and the running statistics.
"""

import torch

from bnlib import layers

SHAPES = {"BatchNorm1d": (32, 6), "BatchNorm2d": (8, 4, 5, 5)}


def side_by_side(name="BatchNorm2d", dtype=torch.float64, steps=3, seed=0):
    """Largest |ours - torch's| of each quantity, for ``name`` in ``SHAPES``."""
    if name not in SHAPES:
        raise ValueError(f"name must be one of {sorted(SHAPES)}, got {name!r}")
    shape = SHAPES[name]
    generator = torch.Generator().manual_seed(seed)
    ours = getattr(layers, name)(shape[1]).to(dtype)
    theirs = getattr(torch.nn, name)(shape[1]).to(dtype)
    with torch.no_grad():
        ours.weight.copy_(1 + 0.5 * torch.randn(shape[1], generator=generator, dtype=dtype))
        ours.bias.copy_(torch.randn(shape[1], generator=generator, dtype=dtype))
    theirs.load_state_dict(ours.state_dict())
    worst = dict.fromkeys(["output", "input gradient", "weight gradient", "bias gradient",
                           "running_mean", "running_var", "eval output"], 0.0)

    def note(key, a, b):
        worst[key] = max(worst[key], (a - b).abs().max().item())

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
        for key, a, b in zip(["output", "input gradient", "weight gradient", "bias gradient"], *results):
            note(key, a, b)
        note("running_mean", ours.running_mean, theirs.running_mean)
        note("running_var", ours.running_var, theirs.running_var)
    ours.eval()
    theirs.eval()
    x = 3 + 2 * torch.randn(shape, generator=generator, dtype=dtype)
    with torch.no_grad():
        note("eval output", ours(x), theirs(x))
    return worst


def comparison_table(dtypes=(torch.float64, torch.float32)):
    """``{(module name, dtype name): {quantity: max abs difference}}`` for every module and dtype."""
    return {(name, str(dtype).replace("torch.", "")): side_by_side(name, dtype)
            for name in SHAPES for dtype in dtypes}


def print_comparison(table):
    quantities = list(next(iter(table.values())))
    print(f"{'max |ours - torch|':<22}" + "".join(f"{q:>16}" for q in quantities))
    for (name, dtype), worst in table.items():
        print(f"{name + ' ' + dtype:<22}" + "".join(f"{worst[q]:>16.1e}" for q in quantities))
