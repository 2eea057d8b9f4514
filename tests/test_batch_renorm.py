"""bnlib.BatchRenorm1d/2d, Batch Renormalization (Ioffe 2017, Algorithm 1): batch norm when r_max = 1 and
d_max = 0, a hand-derived backward with r and d held constant, the running statistics of lines 7-8, the
inference transform, the 2d layer as the 1d layer on the channels, clear errors, and state dicts.

Upstream gradients are random (an all-ones upstream gradient has dx = 0 for batch norm, see
tests/test_normalization.py).
"""

import copy

import pytest
import torch
from torch.autograd import gradcheck

from bnlib import BatchNorm1d, BatchNorm2d, BatchRenorm1d, BatchRenorm2d
from bnlib.batch_renorm import BatchRenormFunction

EPS = 1e-5
PAIRS = {1: (BatchRenorm1d, BatchNorm1d), 2: (BatchRenorm2d, BatchNorm2d)}
SHAPES = {1: (6, 3, 4), 2: (4, 3, 2, 3)}


def per_channel(vector, x):
    return vector.view(1, -1, *[1] * (x.dim() - 2))


def reference(x, weight, bias, running_mean, running_std, eps, r_max, d_max):
    """Algorithm 1, lines 1-6, in plain torch operations that autograd differentiates, r and d detached
    (stop_gradient): ``(out, mu_B, sigma_B, r, d)``."""
    axes = [0, *range(2, x.dim())]
    mean = x.mean(axes)                                                           # line 1
    std = torch.sqrt(((x - per_channel(mean, x)) ** 2).mean(axes) + eps)         # line 2
    r = (std / running_std).clamp(1 / r_max, r_max).detach()                      # line 3
    d = ((mean - running_mean) / running_std).clamp(-d_max, d_max).detach()       # line 4
    x_hat = (x - per_channel(mean, x)) / per_channel(std, x) * per_channel(r, x) + per_channel(d, x)  # line 5
    return per_channel(weight, x) * x_hat + per_channel(bias, x), mean, std, r, d  # line 6


def random_layer(kind, channels, seed=0, **options):
    """A layer with random weight and bias (not the defaults, which hide a swapped gamma and beta)."""
    layer = PAIRS[kind][0](channels, dtype=torch.float64, **options)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(channels, generator=generator, dtype=torch.float64))
        layer.bias.copy_(torch.randn(channels, generator=generator, dtype=torch.float64))
    return layer


def batch(kind, seed, n=None, offset=2.0, spread=3.0):
    shape = SHAPES[kind] if n is None else (n, *SHAPES[kind][1:])
    generator = torch.Generator().manual_seed(seed)
    return offset + spread * torch.randn(shape, generator=generator, dtype=torch.float64)


def step(layer, x, upstream):
    """One forward and backward: output, input gradient, weight and bias gradients."""
    layer.zero_grad(set_to_none=True)
    x = x.clone().requires_grad_()
    out = layer(x)
    out.backward(upstream)
    return out.detach(), x.grad, layer.weight.grad, layer.bias.grad


@pytest.mark.parametrize("kind", [1, 2])
def test_with_r_max_1_and_d_max_0_it_is_batch_norm(kind):
    """r = 1 and d = 0: outputs, input and parameter gradients and the running mean equal bnlib's batch
    norm layer's over several steps of varying batch size, in float64."""
    renorm = random_layer(kind, 3, r_max=1.0, d_max=0.0, momentum=0.3)
    norm = PAIRS[kind][1](3, momentum=0.3, dtype=torch.float64)
    with torch.no_grad():
        norm.weight.copy_(renorm.weight)
        norm.bias.copy_(renorm.bias)
    for seed, n in enumerate((6, 3, 5)):
        x = batch(kind, seed, n)
        upstream = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed + 10), dtype=torch.float64)
        for mine, expected in zip(step(renorm, x, upstream), step(norm, x, upstream)):
            torch.testing.assert_close(mine, expected, rtol=0, atol=1e-12)
        torch.testing.assert_close(renorm.running_mean, norm.running_mean, rtol=0, atol=1e-12)


def test_backward_passes_gradcheck_where_the_clips_hold_r_and_d():
    """Running statistics far from the batch's: r and d sit at their clips, constants whatever x is near
    this point, so the hand-derived backward is the function's true derivative (finite differences)."""
    x = batch(2, 0, offset=2.0, spread=3.0).requires_grad_()
    weight = torch.randn(3, dtype=torch.float64, generator=torch.Generator().manual_seed(1), requires_grad=True)
    bias = torch.randn(3, dtype=torch.float64, generator=torch.Generator().manual_seed(2), requires_grad=True)
    running_mean = torch.tensor([50.0, -1e3, 50.0], dtype=torch.float64)      # d at -d_max, d_max, -d_max
    running_std = torch.tensor([0.01, 100.0, 0.01], dtype=torch.float64)      # r at r_max, 1/r_max, r_max
    r_max, d_max = 3.0, 5.0
    _, _, _, r, d = reference(x, weight, bias, running_mean, running_std, EPS, r_max, d_max)
    assert torch.equal(r, torch.tensor([r_max, 1 / r_max, r_max], dtype=torch.float64))
    assert torch.equal(d, torch.tensor([-d_max, d_max, -d_max], dtype=torch.float64))

    def function(x, weight, bias):
        return BatchRenormFunction.apply(x, weight, bias, running_mean, running_std, EPS, r_max, d_max)[0]

    assert gradcheck(function, (x, weight, bias))


@pytest.mark.parametrize("kind", [1, 2])
def test_backward_holds_r_and_d_constant_where_they_are_not_clipped(kind):
    """Running statistics near the batch's: r and d lie inside their clips and depend on x, but are
    stop-gradient. The gradients equal autograd's through Algorithm 1 with r and d detached, and differ
    from autograd's through r and d (so the comparison can tell them apart)."""
    x = batch(kind, 3)
    upstream = torch.randn(x.shape, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    layer = random_layer(kind, 3)
    with torch.no_grad():
        layer.running_mean.copy_(x.mean([0, *range(2, x.dim())]) + torch.tensor([0.5, -0.3, 0.1]))
        layer.running_std.copy_(torch.tensor([2.0, 4.0, 3.5], dtype=torch.float64))
    inputs = [t.detach().clone().requires_grad_() for t in (x, layer.weight, layer.bias)]
    out, _, _, r, d = reference(*inputs, layer.running_mean, layer.running_std, EPS, layer.r_max, layer.d_max)
    assert (r > 1 / layer.r_max).all() and (r < layer.r_max).all() and (d.abs() < layer.d_max).all()
    expected = torch.autograd.grad(out, inputs, upstream)
    mine = step(copy.deepcopy(layer), x, upstream)
    torch.testing.assert_close(mine[0], out.detach(), rtol=0, atol=1e-12)
    for found, wanted in zip(mine[1:], expected):
        torch.testing.assert_close(found, wanted, rtol=0, atol=1e-12)

    def through_r_and_d(x):  # the same function, with the gradient flowing through r and d
        axes = [0, *range(2, x.dim())]
        mean, std = x.mean(axes), torch.sqrt(x.var(axes, correction=0) + EPS)
        r, d = std / layer.running_std, (mean - layer.running_mean) / layer.running_std
        x_hat = (x - per_channel(mean, x)) / per_channel(std, x) * per_channel(r, x) + per_channel(d, x)
        return per_channel(layer.weight.detach(), x) * x_hat + per_channel(layer.bias.detach(), x)

    full = torch.autograd.grad(through_r_and_d(inputs[0]), inputs[0], upstream)[0]
    assert (full - mine[1]).abs().max() > 1e-3


def test_2d_equals_1d_on_the_channels_as_columns():
    """BatchRenorm2d on (N, C, H, W) is BatchRenorm1d on (N H W, C): outputs, input and parameter
    gradients, running statistics, over a few steps."""
    layers = {2: random_layer(2, 3, r_max=2.0, d_max=1.0), 1: random_layer(1, 3, r_max=2.0, d_max=1.0)}

    def columns(t):
        return t.permute(0, 2, 3, 1).reshape(-1, t.shape[1])

    for seed in range(3):
        x = batch(2, seed)
        upstream = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed + 7), dtype=torch.float64)
        out, dx, dweight, dbias = step(layers[2], x, upstream)
        expected = step(layers[1], columns(x), columns(upstream))
        for found, wanted in zip((columns(out), columns(dx), dweight, dbias), expected):
            torch.testing.assert_close(found, wanted, rtol=0, atol=1e-12)
        for buffer in ("running_mean", "running_std", "num_batches_tracked"):
            torch.testing.assert_close(getattr(layers[2], buffer), getattr(layers[1], buffer), rtol=0, atol=1e-12)


@pytest.mark.parametrize("kind", [1, 2])
def test_running_statistics_follow_algorithm_1(kind):
    """Lines 7 and 8 against a hand computation over four batches: mu and sigma (running_std) move by
    momentum towards mu_B and sigma_B = sqrt(var_B + eps), var_B biased; each batch's output is lines 1-6
    with r and d from the running statistics before that batch."""
    momentum, r_max, d_max = 0.25, 1.5, 0.5
    layer = random_layer(kind, 3, momentum=momentum, r_max=r_max, d_max=d_max)
    mu, sigma = torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)
    for seed in range(4):
        x = batch(kind, seed, offset=seed - 1.0, spread=0.5 + seed)
        axes = [0, *range(2, x.dim())]
        mean, std = x.mean(axes), torch.sqrt(x.var(axes, correction=0) + EPS)
        r, d = (std / sigma).clamp(1 / r_max, r_max), ((mean - mu) / sigma).clamp(-d_max, d_max)
        x_hat = (x - per_channel(mean, x)) / per_channel(std, x) * per_channel(r, x) + per_channel(d, x)
        expected = per_channel(layer.weight.detach(), x) * x_hat + per_channel(layer.bias.detach(), x)
        torch.testing.assert_close(layer(x), expected, rtol=0, atol=1e-12)
        mu, sigma = mu + momentum * (mean - mu), sigma + momentum * (std - sigma)
        torch.testing.assert_close(layer.running_mean, mu, rtol=0, atol=1e-12)
        torch.testing.assert_close(layer.running_std, sigma, rtol=0, atol=1e-12)
    assert layer.num_batches_tracked.item() == 4


@pytest.mark.parametrize("kind", [1, 2])
def test_eval_mode_uses_the_running_statistics_and_changes_nothing(kind):
    """Inference: y = gamma (x - mu) / sigma + beta with the running statistics, for a single example too,
    and the state stays as it was."""
    layer = random_layer(kind, 3)
    for seed in range(3):
        layer(batch(kind, seed))
    layer.eval()
    state = copy.deepcopy(layer.state_dict())
    for x in (batch(kind, 5), batch(kind, 6, n=1)):
        expected = ((x - per_channel(layer.running_mean, x)) / per_channel(layer.running_std, x)
                    * per_channel(layer.weight.detach(), x) + per_channel(layer.bias.detach(), x))
        torch.testing.assert_close(layer(x), expected, rtol=0, atol=1e-12)
    for key, value in state.items():
        assert torch.equal(layer.state_dict()[key], value), key


def test_float16_and_bfloat16_inputs_are_computed_in_float32():
    """A float32 layer on a float16 or bfloat16 batch: output and input gradient in the batch's type, equal
    to the float32 layer's results on the same values up to that type's rounding of them."""
    for dtype in (torch.float16, torch.bfloat16):
        x = batch(2, 0).to(dtype)
        upstream = torch.randn(x.shape, generator=torch.Generator().manual_seed(1)).to(dtype)
        low, exact = BatchRenorm2d(3), BatchRenorm2d(3)
        out, dx, dweight, dbias = step(low, x, upstream)
        expected = step(exact, x.float(), upstream.float())
        assert out.dtype == dx.dtype == dtype and dweight.dtype == torch.float32
        for found, wanted in zip((out, dx), expected):
            torch.testing.assert_close(found, wanted.to(dtype))
        torch.testing.assert_close((dweight, dbias), expected[2:], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(low.running_std, exact.running_std)


@pytest.mark.parametrize("make, shape, message", [
    (lambda: BatchRenorm2d(3), (2, 3, 4), "BatchRenorm2d expects a 4D input (N, C, H, W), got a 3D input"),
    (lambda: BatchRenorm1d(3), (2, 3, 4, 4), "Use BatchRenorm1d for (N, C) or (N, C, L) inputs and BatchRenorm2d"),
    (lambda: BatchRenorm1d(3), (4, 5), "expected 3 channels on axis 1 (num_features)"),
    (lambda: BatchRenorm1d(3).eval(), (4, 5), "expected 3 channels on axis 1 (num_features)"),
    (lambda: BatchRenorm2d(3), (1, 3, 1, 1), "Expected more than 1 value per channel when training"),
    (lambda: BatchRenorm1d(3), (0, 3), "batch statistics need at least 2 values per channel"),
])
def test_bad_input_is_refused_as_the_batch_norm_layers_refuse_it(make, shape, message):
    with pytest.raises(ValueError) as raised:
        make()(torch.zeros(shape))
    assert message in str(raised.value)


def test_one_example_is_fine_in_eval_mode():
    assert BatchRenorm2d(3).eval()(torch.randn(1, 3, 1, 1)).shape == (1, 3, 1, 1)


@pytest.mark.parametrize("arguments, error, message", [
    (dict(eps=0.0), ValueError, "eps must be positive"),
    (dict(eps="1e-5"), TypeError, "eps must be a float"),
    (dict(momentum=1.5), ValueError, "momentum must lie in [0, 1]"),
    (dict(momentum=None), TypeError, "momentum must be a float in [0, 1]"),
    (dict(r_max=0.5), ValueError, "r_max must be at least 1"),
    (dict(r_max=float("nan")), ValueError, "r_max must be at least 1"),
    (dict(d_max=-1.0), ValueError, "d_max must be at least 0"),
    (dict(d_max="5"), TypeError, "d_max must be a float"),
    (dict(num_features=0), ValueError, "num_features must be at least 1"),
])
def test_bad_arguments_are_refused_with_the_fix(arguments, error, message):
    with pytest.raises(error) as raised:
        BatchRenorm1d(**{"num_features": 3, **arguments})
    assert message in str(raised.value)


@pytest.mark.parametrize("name, value, message", [
    ("r_max", 0.9, "r_max must be at least 1"), ("d_max", -0.1, "d_max must be at least 0"),
    ("eps", -1.0, "eps must be positive"), ("momentum", 2.0, "momentum must lie in [0, 1]"),
])
def test_attributes_changed_after_construction_are_checked_when_training(name, value, message):
    """r_max and d_max are plain attributes (their schedule is the caller's): a bad value set later is
    refused at the next training step, with the same message, and nothing is updated."""
    layer = BatchRenorm1d(3)
    setattr(layer, name, value)
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        layer(torch.randn(4, 3))
    assert layer.num_batches_tracked.item() == 0 and torch.equal(layer.running_std, torch.ones(3))


def test_state_of_the_wrong_shape_or_type_is_refused():
    layer = BatchRenorm1d(3)
    layer.running_std = torch.ones(4)
    with pytest.raises(ValueError, match=r"BatchRenorm1d.running_std must have shape \(3,\)"):
        layer(torch.randn(4, 3))
    with pytest.raises(TypeError, match="BatchRenorm1d holds torch.float32 parameters but got a torch.float64"):
        BatchRenorm1d(3)(torch.randn(4, 3, dtype=torch.float64))


@pytest.mark.parametrize("kind", [1, 2])
def test_state_dict_round_trips(kind):
    """The state (weight, bias, running_mean, running_std, num_batches_tracked) saved after training and
    loaded into a fresh layer gives the same outputs in eval mode and in the next training step."""
    trained = random_layer(kind, 3)
    for seed in range(3):
        trained(batch(kind, seed))
    state = trained.state_dict()
    assert list(state) == ["weight", "bias", "running_mean", "running_std", "num_batches_tracked"]
    fresh = PAIRS[kind][0](3, dtype=torch.float64)
    fresh.load_state_dict(state, strict=True)
    x = batch(kind, 9)
    torch.testing.assert_close(fresh.eval()(x), trained.eval()(x), rtol=0, atol=0)
    torch.testing.assert_close(fresh.train()(x), trained.train()(x), rtol=0, atol=0)
    for key, value in trained.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key


def test_repr_names_the_settings():
    assert repr(BatchRenorm2d(4, momentum=0.2)) == "BatchRenorm2d(4, eps=1e-05, momentum=0.2, r_max=3.0, d_max=5.0)"
