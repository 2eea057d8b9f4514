"""bnlib's torch layers against torch.nn.BatchNorm1d/2d: outputs, gradients, running statistics, state.

Upstream gradients are random: with an all-ones upstream gradient the true dx of batch norm is 0, so
many wrong backward passes would agree with it (see tests/test_normalization.py).
"""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from bnlib import BatchNorm1d, BatchNorm2d, batch_norm_train
from bnlib.functional import BatchNormFunction, bn_backward_tensor, bn_forward_tensor

OPTIONS = [dict(affine=False), dict(track_running_stats=False), dict(affine=False, track_running_stats=False),
           dict(bias=False)]

PAIRS = {1: (BatchNorm1d, torch.nn.BatchNorm1d), 2: (BatchNorm2d, torch.nn.BatchNorm2d)}
SETTINGS = settings(max_examples=20, deadline=None)


def random_pair(kind, channels, dtype=torch.float64, **kwargs):
    """Our layer and torch's, both with the same random (not default) weights."""
    ours_cls, torch_cls = PAIRS[kind]
    ours, theirs = ours_cls(channels, dtype=dtype, **kwargs), torch_cls(channels, dtype=dtype, **kwargs)
    with torch.no_grad():
        for parameter in ours.parameters():
            parameter.normal_()
    theirs.load_state_dict(ours.state_dict())
    return ours, theirs


def step_both(ours, theirs, x, atol):
    """One forward/backward through both layers with a random upstream gradient; compare everything."""
    ours.zero_grad(), theirs.zero_grad()
    x_ours, x_theirs = x.clone().requires_grad_(), x.clone().requires_grad_()
    y_ours, y_theirs = ours(x_ours), theirs(x_theirs)
    upstream = torch.randn_like(y_ours)
    y_ours.backward(upstream)
    y_theirs.backward(upstream)
    close = dict(rtol=atol, atol=atol)
    torch.testing.assert_close(y_ours, y_theirs, **close)
    torch.testing.assert_close(x_ours.grad, x_theirs.grad, **close)
    for (name, mine), theirs_param in zip(ours.named_parameters(), theirs.parameters()):
        torch.testing.assert_close(mine.grad, theirs_param.grad, **close, msg=f"grad of {name}")
    assert_same_state(ours, theirs, atol)


def assert_same_state(ours, theirs, atol):
    mine, reference = ours.state_dict(), theirs.state_dict()
    assert list(mine) == list(reference)
    for key, value in reference.items():
        torch.testing.assert_close(mine[key], value, rtol=atol, atol=atol, msg=f"state {key}")


def batch(kind, n, channels, dtype=torch.float64):
    """A batch for BatchNorm1d (N, C, L) or BatchNorm2d (N, C, H, W), mean 2 and spread 3."""
    spatial = (3,) if kind == 1 else (3, 4)
    return torch.randn((n, channels, *spatial), dtype=dtype) * 3 + 2


layouts = st.one_of(st.tuples(st.just(1), st.sampled_from([(), (1,), (4,)])),
                    st.tuples(st.just(2), st.sampled_from([(1, 1), (1, 3), (4, 2)])))


@SETTINGS
@given(layout=layouts, channels=st.integers(1, 5), sizes=st.lists(st.integers(2, 9), min_size=1, max_size=4),
       momentum=st.sampled_from([0.1, 0.0, 1.0, 0.37, None]), seed=st.integers(0, 2**31))
def test_training_steps_match_torch_in_float64(layout, channels, sizes, momentum, seed):
    """Several steps of varying batch size: outputs, gradients and every buffer, then eval mode."""
    (kind, spatial), generator = layout, torch.Generator().manual_seed(seed)
    ours, theirs = random_pair(kind, channels, momentum=momentum)
    for n in sizes + [1]:
        if n == 1:  # one sample at a time is fine with running statistics
            ours.eval(), theirs.eval()
        x = torch.randn((n, channels, *spatial), dtype=torch.float64, generator=generator) * 3 + 2
        step_both(ours, theirs, x, atol=1e-12)


@pytest.mark.parametrize("kind", [1, 2])
def test_training_and_eval_match_torch_in_float32(kind):
    torch.manual_seed(0)
    ours, theirs = random_pair(kind, 6, dtype=torch.float32)
    for n in (32, 7, 64):
        step_both(ours, theirs, batch(kind, n, 6, torch.float32), atol=1e-5)
    ours.eval(), theirs.eval()
    step_both(ours, theirs, batch(kind, 5, 6, torch.float32), atol=1e-5)


@pytest.mark.parametrize("kind", [1, 2])
@pytest.mark.parametrize("options", OPTIONS)
def test_affine_and_tracking_options_match_torch(kind, options):
    torch.manual_seed(1)
    ours, theirs = random_pair(kind, 4, **options)
    assert [name for name, _ in ours.named_parameters()] == [name for name, _ in theirs.named_parameters()]
    for n in (5, 3):
        step_both(ours, theirs, batch(kind, n, 4), atol=1e-12)
    ours.eval(), theirs.eval()  # without running statistics, eval mode still uses the batch's
    step_both(ours, theirs, batch(kind, 6, 4), atol=1e-12)


def test_momentum_none_is_the_cumulative_average():
    torch.manual_seed(2)
    layer = BatchNorm1d(3, momentum=None, affine=False, dtype=torch.float64)
    batches = [torch.randn(n, 3, dtype=torch.float64) * 2 + 1 for n in (4, 9, 6)]
    for x in batches:
        layer(x)
    torch.testing.assert_close(layer.running_mean, torch.stack([x.mean(0) for x in batches]).mean(0))
    torch.testing.assert_close(layer.running_var, torch.stack([x.var(0) for x in batches]).mean(0))
    assert layer.num_batches_tracked.item() == 3


def test_eval_mode_uses_the_running_statistics_and_changes_nothing():
    torch.manual_seed(3)
    layer = BatchNorm2d(3, dtype=torch.float64)
    layer(batch(2, 8, 3))
    layer.eval()
    state = {key: value.clone() for key, value in layer.state_dict().items()}
    x = batch(2, 1, 3)
    expected = (x - layer.running_mean.view(1, -1, 1, 1)) / torch.sqrt(layer.running_var.view(1, -1, 1, 1) + 1e-5)
    torch.testing.assert_close(layer(x), expected)
    for key, value in state.items():
        assert torch.equal(layer.state_dict()[key], value)


@pytest.mark.parametrize("kind", [1, 2])
def test_state_dicts_load_both_ways(kind):
    torch.manual_seed(4)
    trained_ours, trained_theirs = random_pair(kind, 5)
    for n in (6, 3):
        step_both(trained_ours, trained_theirs, batch(kind, n, 5), atol=1e-12)
    fresh_theirs = PAIRS[kind][1](5, dtype=torch.float64)
    fresh_theirs.load_state_dict(trained_ours.state_dict(), strict=True)
    fresh_ours = PAIRS[kind][0](5, dtype=torch.float64)
    fresh_ours.load_state_dict(trained_theirs.state_dict(), strict=True)
    for ours, theirs in ((trained_ours, fresh_theirs), (fresh_ours, trained_theirs)):
        ours.eval(), theirs.eval()
        step_both(ours, theirs, batch(kind, 4, 5), atol=1e-12)


def test_constructor_and_repr_match_torch():
    for kind in (1, 2):
        kwargs = dict(eps=1e-3, momentum=0.2, affine=False, track_running_stats=True)
        ours, theirs = PAIRS[kind][0](7, **kwargs), PAIRS[kind][1](7, **kwargs)
        assert repr(ours) == repr(theirs)
        for name in ("num_features", "eps", "momentum", "affine", "track_running_stats"):
            assert getattr(ours, name) == getattr(theirs, name)
    layer = BatchNorm1d(3, dtype=torch.float64)
    assert layer.weight.dtype == layer.running_var.dtype == torch.float64
    assert layer.num_batches_tracked.dtype == torch.long


def test_never_calls_torch_batch_norm(monkeypatch):
    """Python-level entry points raise, and the profiler sees no batch norm kernel at all."""
    def forbidden(*args, **kwargs):
        raise AssertionError("torch's batch norm was called")

    for module, name in ((F, "batch_norm"), (torch, "batch_norm"), (torch, "native_batch_norm")):
        monkeypatch.setattr(module, name, forbidden)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
        for layer, x in ((BatchNorm1d(4), torch.randn(8, 4)), (BatchNorm2d(4), torch.randn(2, 4, 3, 3))):
            x.requires_grad_()
            layer(x).square().sum().backward()
            layer.eval()
            layer(x).square().sum().backward()
    names = {event.name for event in profile.events()}
    assert any("rsqrt" in name for name in names)  # the profiler did record our kernels
    assert not [name for name in names if "batch_norm" in name], names


def test_functional_returns_batch_statistics_and_matches_torch():
    torch.manual_seed(5)
    x = (torch.randn(6, 3, 5, dtype=torch.float64) * 2 + 1).requires_grad_()
    weight = torch.randn(3, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(3, dtype=torch.float64, requires_grad=True)
    out, mean, var = batch_norm_train(x, weight, bias, eps=1e-3)
    torch.testing.assert_close(mean, x.detach().mean((0, 2)))
    torch.testing.assert_close(var, x.detach().var((0, 2), unbiased=False))
    assert not mean.requires_grad and not var.requires_grad
    upstream = torch.randn_like(out)
    ours = torch.autograd.grad(out, (x, weight, bias), upstream)
    reference = F.batch_norm(x, None, None, weight, bias, training=True, eps=1e-3)
    theirs = torch.autograd.grad(reference, (x, weight, bias), upstream)
    torch.testing.assert_close(out, reference, rtol=0, atol=1e-12)
    for mine, expected in zip(ours, theirs):
        torch.testing.assert_close(mine, expected, rtol=0, atol=1e-12)


def test_functional_without_weight_and_bias_matches_torch():
    torch.manual_seed(6)
    x = torch.randn(9, 4, dtype=torch.float64, requires_grad=True)
    out, _, _ = batch_norm_train(x, None, None)
    upstream = torch.randn_like(out)
    reference = F.batch_norm(x, None, None, training=True)
    torch.testing.assert_close(out, reference, rtol=0, atol=1e-12)
    torch.testing.assert_close(torch.autograd.grad(out, x, upstream)[0],
                               torch.autograd.grad(reference, x, upstream)[0], rtol=0, atol=1e-12)


@pytest.mark.parametrize("shape", [(5, 3), (4, 2, 3), (3, 2, 2, 3)])
@pytest.mark.parametrize("affine", [True, False])
def test_function_passes_gradcheck_and_gradgradcheck(shape, affine):
    """First and second derivatives against finite differences, and batched (vmapped) gradients."""
    torch.manual_seed(7)
    x = (torch.randn(shape, dtype=torch.float64) * 2 + 1).requires_grad_()
    params = [torch.randn(shape[1], dtype=torch.float64, requires_grad=True) for _ in range(2)] if affine \
        else [None, None]
    function = lambda *a: BatchNormFunction.apply(*a, 1e-5)[0]  # noqa: E731
    assert torch.autograd.gradcheck(function, (x, *params), check_batched_grad=True)
    assert torch.autograd.gradgradcheck(function, (x, *params), check_batched_grad=True)


def test_tensor_functions_give_what_autograd_gives():
    """The plain functions a hand-written training loop uses agree with autograd through the layer."""
    torch.manual_seed(8)
    layer = BatchNorm1d(10, dtype=torch.float64)
    with torch.no_grad():
        layer.weight.normal_()
        layer.bias.normal_()
    x = torch.randn(32, 10, dtype=torch.float64, requires_grad=True)
    out = layer(x)
    upstream = torch.randn_like(out)
    out.backward(upstream)
    manual_out, saved = bn_forward_tensor(x.detach(), layer.weight.detach(), layer.bias.detach(), layer.eps)
    dx, dweight, dbias = bn_backward_tensor(upstream, saved)
    torch.testing.assert_close(manual_out, out.detach())
    torch.testing.assert_close(dx, x.grad)
    torch.testing.assert_close(dweight, layer.weight.grad)
    torch.testing.assert_close(dbias, layer.bias.grad)


def test_large_offset_normalizes_about_as_accurately_as_torch():
    torch.manual_seed(9)
    x = 1e4 + 1e-2 * torch.randn(512, 8, dtype=torch.float64)
    exact = F.batch_norm(x, None, None, training=True)
    ours = BatchNorm1d(8)(x.float())
    theirs = torch.nn.BatchNorm1d(8)(x.float())
    our_error, torch_error = (ours - exact).abs().max().item(), (theirs - exact).abs().max().item()
    # float32 holds 1e4 only to ~1e-3, a tenth of the spread: rounding alone costs a few percent.
    assert our_error <= 2 * torch_error + 1e-3, (our_error, torch_error)
    assert our_error < 0.1


def test_second_derivatives_are_not_silently_zero():
    """d/dx of sum(dx^2) for dx = dL/dx: autograd through our backward against autograd through torch's."""
    torch.manual_seed(10)
    x = torch.randn(6, 3, 4, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(3, dtype=torch.float64, requires_grad=True)
    upstream = torch.randn(6, 3, 4, dtype=torch.float64)
    grads = []
    for out in (batch_norm_train(x, weight, None)[0], F.batch_norm(x, None, None, weight, training=True)):
        (dx,) = torch.autograd.grad(out, x, upstream, create_graph=True)
        grads.append(torch.autograd.grad(dx.square().sum(), (x, weight)))
    for mine, theirs in zip(*grads):
        assert mine.abs().max() > 1e-3  # a silent zero would pass a comparison with a zero reference
        torch.testing.assert_close(mine, theirs, rtol=0, atol=1e-10)
