"""bnlib.BatchNorm1d/2d as drop-ins for torch.nn.BatchNorm1d/2d, on PyTorch's own batch norm test cases.

Each test adapts an upstream test, named in its docstring: the ModuleInfo sample inputs of
``torch/testing/_internal/common_modules.py`` (``module_inputs_torch_nn_BatchNorm1d/2d``) run through
the standard module checks of ``test/test_modules.py``, the batch norm tests of ``test/test_nn.py``
and ``test/nn/test_load_state_dict.py``, and torch's tools that look for batch norm layers. Where the
upstream test checks torch against itself, ours is compared with torch on the same inputs: outputs,
gradients, running statistics, num_batches_tracked, state dicts. Float64 comparisons are to rounding
(1e-12), lower precisions to the last unit in the last place (ulp).
"""

import copy
import io
import pickle
from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd import gradcheck, gradgradcheck

import bnlib

OURS = {"BatchNorm1d": bnlib.BatchNorm1d, "BatchNorm2d": bnlib.BatchNorm2d}
THEIRS = {"BatchNorm1d": nn.BatchNorm1d, "BatchNorm2d": nn.BatchNorm2d}

# module_inputs_torch_nn_BatchNorm1d / _BatchNorm2d: (layer, constructor args, kwargs, input shape, desc)
SAMPLES = [
    ("BatchNorm1d", (10,), {}, (4, 10), "affine"),
    ("BatchNorm1d", (5,), {}, (4, 5, 3), "3d_input"),
    ("BatchNorm1d", (10, 1e-3, None), {}, (4, 10), "affine_simple_average"),
    ("BatchNorm1d", (10, 1e-3, 0.3, False), {}, (4, 10), "not_affine"),
    ("BatchNorm1d", (10, 1e-3, 0.3, True, False), {}, (4, 10), "not_tracking_stats"),
    ("BatchNorm1d", (5, 1e-3, 0.3, False), {}, (4, 5, 3), "3d_input_not_affine"),
    ("BatchNorm1d", (5, 1e-3, 0.3, False), {}, (0, 5, 9), "zero_batch"),
    ("BatchNorm1d", (10,), {"bias": False}, (4, 10), "affine_not_bias"),
    ("BatchNorm2d", (3,), {}, (2, 3, 6, 6), "affine"),
    ("BatchNorm2d", (3, 1e-3, None), {}, (2, 3, 6, 6), "2d_simple_average"),
    ("BatchNorm2d", (3, 1e-3, 0.8), {}, (2, 3, 6, 6), "momentum"),
    ("BatchNorm2d", (3, 1e-3, 0.8, False), {}, (2, 3, 6, 6), "not_affine"),
    ("BatchNorm2d", (3, 1e-3, 0.8, True, False), {}, (2, 3, 6, 6), "not_tracking_stats"),
    ("BatchNorm2d", (5, 1e-3, 0.3, False), {}, (0, 5, 2, 2), "zero_batch"),
    ("BatchNorm2d", (3,), {"bias": False}, (2, 3, 6, 6), "affine_not_bias"),
]
SAMPLE_IDS = [f"{name}-{desc}" for name, _, _, _, desc in SAMPLES]
NON_EMPTY = [sample for sample in SAMPLES if sample[3][0]]
NON_EMPTY_IDS = [f"{name}-{desc}" for name, _, _, _, desc in NON_EMPTY]
MODES = pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])


@pytest.fixture(autouse=True)
def seeded():
    """Every test draws the same numbers on every run."""
    torch.manual_seed(0)


def make_pair(name, args=(), kwargs=None, dtype=torch.float64, training=True, seed=0):
    """Our layer and torch's from the same constructor arguments, with the same random weights and
    running statistics (not the defaults, which would hide a swapped gamma or mean)."""
    generator = torch.Generator().manual_seed(seed)
    ours, theirs = OURS[name](*args, **(kwargs or {})), THEIRS[name](*args, **(kwargs or {}))
    with torch.no_grad():
        for value in ours.parameters():
            value.copy_(torch.randn(value.shape, generator=generator))
        if ours.running_var is not None:
            ours.running_mean.copy_(torch.randn(ours.running_mean.shape, generator=generator))
            ours.running_var.copy_(torch.rand(ours.running_var.shape, generator=generator) + 0.5)
    theirs.load_state_dict(ours.state_dict())
    return ours.to(dtype).train(training), theirs.to(dtype).train(training)


def random_input(shape, dtype=torch.float64, seed=1):
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=generator, dtype=torch.float64) * 3 + 2).to(dtype)


def assert_same_state(ours, theirs, **close):
    mine, reference = ours.state_dict(), theirs.state_dict()
    assert list(mine) == list(reference)
    for key, value in reference.items():
        assert mine[key].dtype == value.dtype, key
        torch.testing.assert_close(mine[key], value, **close, msg=lambda m, key=key: f"state {key}: {m}")


def run_both(ours, theirs, x, upstream=None, **close):
    """One forward and backward through both layers on copies of x; everything compared."""
    ours.zero_grad(), theirs.zero_grad()
    x_ours, x_theirs = x.clone().requires_grad_(), x.clone().requires_grad_()
    y_ours, y_theirs = ours(x_ours), theirs(x_theirs)
    torch.testing.assert_close(y_ours, y_theirs, **close)
    upstream = torch.randn_like(y_theirs) if upstream is None else upstream
    y_ours.backward(upstream)
    y_theirs.backward(upstream)
    torch.testing.assert_close(x_ours.grad, x_theirs.grad, **close)
    for (key, mine), reference in zip(ours.named_parameters(), theirs.parameters()):
        torch.testing.assert_close(mine.grad, reference.grad, **close, msg=lambda m, key=key: f"grad {key}: {m}")
    assert_same_state(ours, theirs, **close)
    return y_ours, x_ours.grad


EXACT = dict(rtol=0, atol=1e-12)


# test/test_modules.py's standard checks on the common_modules sample inputs --------------------------

@MODES
@pytest.mark.parametrize("name, args, kwargs, shape, desc", SAMPLES, ids=SAMPLE_IDS)
def test_modules_forward_repeated_and_to_dtype(name, args, kwargs, shape, desc, training):
    """TestModule.test_forward (and the repeated calls of test_non_contiguous_tensors): three steps in
    float64 equal torch's, then ``module.float()`` and a float32 step; parameters and buffers follow."""
    ours, theirs = make_pair(name, args, kwargs, training=training)
    for seed in (1, 2, 3):
        run_both(ours, theirs, random_input(shape, seed=seed), **EXACT)
    ours.float(), theirs.float()
    run_both(ours, theirs, random_input(shape, torch.float32, seed=4), rtol=1e-5, atol=1e-5)
    for layer in (ours, theirs):
        assert all(t.dtype == torch.float32 for t in [*layer.parameters(), *layer.buffers()] if t.is_floating_point())
    ours.to(torch.float64), theirs.to(torch.float64)
    ours.load_state_dict(theirs.state_dict())  # the float32 step left rounding differences behind
    run_both(ours, theirs, random_input(shape, seed=5), **EXACT)


@pytest.mark.parametrize("name, args, kwargs, shape, desc", SAMPLES, ids=SAMPLE_IDS)
def test_modules_factory_kwargs_repr_and_meta_device(name, args, kwargs, shape, desc):
    """TestModule.test_factory_kwargs, test_repr and test_device_ctx_init: the same parameters and
    buffers (names, shapes, types, device) as torch's, also when built on the meta device."""
    for factory in ({}, {"dtype": torch.float64, "device": "cpu"}):
        ours, theirs = OURS[name](*args, **kwargs, **factory), THEIRS[name](*args, **kwargs, **factory)
        assert repr(ours) == repr(theirs)
        assert isinstance(ours, nn.modules.batchnorm._BatchNorm)
        for (key, mine), (_, reference) in zip([*ours.named_parameters(), *ours.named_buffers()],
                                               [*theirs.named_parameters(), *theirs.named_buffers()]):
            assert (key, mine.shape, mine.dtype, mine.device) == (key, reference.shape, reference.dtype,
                                                                   reference.device)
    with torch.device("meta"):
        on_meta = OURS[name](*args, **kwargs)
    reference = THEIRS[name](*args, **kwargs)
    for mine, theirs_tensor in zip([*on_meta.parameters(), *on_meta.buffers()],
                                   [*reference.parameters(), *reference.buffers()]):
        assert mine.is_meta and (mine.shape, mine.dtype) == (theirs_tensor.shape, theirs_tensor.dtype)


@MODES
@pytest.mark.parametrize("name, args, kwargs, shape, desc", SAMPLES, ids=SAMPLE_IDS)
def test_modules_pickle_deepcopy_and_state_dict_round_trip(name, args, kwargs, shape, desc, training):
    """TestModule.test_pickle (torch.save/torch.load of the module), a deepcopy, and state dicts moved
    between our layer and torch's: every copy computes what the original does."""
    ours, theirs = make_pair(name, args, kwargs, training=training)
    x = random_input(shape)
    buffer = io.BytesIO()
    torch.save(ours, buffer)
    buffer.seek(0)
    copies = [torch.load(buffer, weights_only=False), copy.deepcopy(ours), pickle.loads(pickle.dumps(ours))]
    from_torch = OURS[name](*args, **kwargs).double().train(training)
    from_torch.load_state_dict(theirs.state_dict())
    to_torch = THEIRS[name](*args, **kwargs).double().train(training)
    to_torch.load_state_dict(ours.state_dict())
    expected = theirs(x)
    for layer in [ours, *copies, from_torch, to_torch]:
        torch.testing.assert_close(layer(x), expected, **EXACT)
        assert_same_state(layer, theirs, **EXACT)


@MODES
@pytest.mark.parametrize("name, args, kwargs, shape, desc", NON_EMPTY, ids=NON_EMPTY_IDS)
def test_modules_non_contiguous_tensors(name, args, kwargs, shape, desc, training):
    """TestModule.test_non_contiguous_tensors: every mix of (non-)contiguous input and upstream
    gradient gives the contiguous results, and torch's."""
    ours, theirs = make_pair(name, args, kwargs, training=training)
    x, upstream = random_input(shape), random_input(shape, seed=7)
    strided = lambda t: torch.repeat_interleave(t, 2, dim=-1)[..., ::2]  # noqa: E731
    assert not strided(x).is_contiguous()
    for x_in in (x, strided(x)):
        for upstream_in in (upstream, strided(upstream)):
            run_both(ours, theirs, x_in, upstream_in, **EXACT)


@MODES
@pytest.mark.parametrize("name, args, kwargs, shape, desc", [s for s in NON_EMPTY if s[0] == "BatchNorm2d"],
                         ids=[i for i in NON_EMPTY_IDS if i.startswith("BatchNorm2d")])
def test_modules_channels_last_memory_format(name, args, kwargs, shape, desc, training):
    """TestModule.test_memory_format: a channels_last input gives a channels_last output and input
    gradient, equal to the contiguous ones (and torch's)."""
    ours, theirs = make_pair(name, args, kwargs, training=training)
    ours_channels_last = copy.deepcopy(ours).to(memory_format=torch.channels_last)
    x, upstream = random_input(shape), random_input(shape, seed=7)
    expected, expected_grad = run_both(ours, theirs, x, upstream, **EXACT)
    channels_last = x.to(memory_format=torch.channels_last).requires_grad_()
    out = ours_channels_last(channels_last)
    out.backward(upstream.to(memory_format=torch.channels_last))
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert channels_last.grad.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, expected, **EXACT)
    torch.testing.assert_close(channels_last.grad, expected_grad, **EXACT)
    assert_same_state(ours_channels_last, theirs, **EXACT)


@MODES
@pytest.mark.parametrize("name, args, kwargs, shape, desc", NON_EMPTY, ids=NON_EMPTY_IDS)
def test_modules_grad_and_gradgrad(name, args, kwargs, shape, desc, training):
    """TestModule.test_grad and test_gradgrad in float64, with the checks the upstream gradcheck
    wrapper turns on (batched gradients through vmap, fast mode): the total derivative, then each
    parameter alone with the others' requires_grad off."""
    layer = make_pair(name, args, kwargs, training=training)[0]
    x = random_input(shape).requires_grad_()
    names = [key for key, _ in layer.named_parameters()]

    def forward(x, *values):  # the parameters as arguments, so that gradcheck perturbs them
        return torch.func.functional_call(layer, dict(zip(names, values)), (x,))

    for requires in [[True] * len(names)] + [[i == j for j in range(len(names))] for i in range(len(names))]:
        values = [p.detach().clone().requires_grad_(flag) for p, flag in zip(layer.parameters(), requires)]
        assert gradcheck(forward, (x, *values), check_batched_grad=True, fast_mode=True)
        assert gradgradcheck(forward, (x, *values), check_batched_grad=True, fast_mode=True)


@pytest.mark.parametrize("name, shape", [("BatchNorm1d", (2, 10)), ("BatchNorm2d", (2, 10, 5, 5))])
@pytest.mark.parametrize("eps", [-1.0, 0.0])
def test_modules_errors(name, shape, eps):
    """TestModule.test_errors (module_error_inputs_torch_nn_BatchNorm1d_2d_3d): built with eps <= 0,
    the layer raises ValueError "eps must be positive" when it runs in training, as torch's does."""
    for layer in (OURS[name](10, eps=eps), THEIRS[name](10, eps=eps)):
        with pytest.raises(ValueError, match="eps must be positive"):
            layer(torch.randn(shape))


# test/test_nn.py ------------------------------------------------------------------------------------

def test_batchnorm_update_stats():
    """TestNNDeviceType.test_batchnorm_update_stats: training updates the running statistics and
    counts the batch (both as torch's); eval mode changes nothing."""
    ours, theirs = make_pair("BatchNorm1d", (3,), dtype=torch.float32)
    x = torch.rand(4, 3)
    before = copy.deepcopy(ours.state_dict())
    run_both(ours, theirs, x, rtol=1e-6, atol=1e-6)
    assert ours.num_batches_tracked.item() == before["num_batches_tracked"].item() + 1
    assert not torch.equal(ours.running_mean, before["running_mean"])
    assert not torch.equal(ours.running_var, before["running_var"])
    ours.eval(), theirs.eval()
    after = copy.deepcopy(ours.state_dict())
    run_both(ours, theirs, x, rtol=1e-6, atol=1e-6)
    for key, value in after.items():
        assert torch.equal(ours.state_dict()[key], value)


@pytest.mark.parametrize("dtype, module_dtype", [(torch.float32, torch.float32), (torch.float64, torch.float64),
                                                 (torch.bfloat16, torch.float32), (torch.float16, torch.float32)])
def test_batchnorm_simple_average(dtype, module_dtype):
    """TestNNDeviceType.test_batchnorm_simple_average (and _mixed): with momentum=None the running
    statistics after two batches are the average of those after each one alone."""
    layer = bnlib.BatchNorm1d(3, momentum=None).to(module_dtype)
    data1, data2 = torch.rand(4, 3).to(dtype), torch.rand(4, 3).to(dtype)
    statistics = []
    for data in (data1, data2):
        layer(data)
        statistics.append((layer.running_mean.clone(), layer.running_var.clone()))
        layer.reset_running_stats()
        assert torch.equal(layer.running_mean, torch.zeros(3, dtype=module_dtype))
        assert torch.equal(layer.running_var, torch.ones(3, dtype=module_dtype))
    layer(data1), layer(data2)
    torch.testing.assert_close(layer.running_mean, (statistics[0][0] + statistics[1][0]) / 2)
    torch.testing.assert_close(layer.running_var, (statistics[0][1] + statistics[1][1]) / 2)
    theirs = nn.BatchNorm1d(3, momentum=None).to(module_dtype)
    theirs(data1), theirs(data2)
    assert_same_state(layer, theirs, rtol=1e-6, atol=0)  # float32 sums taken in another order


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("dtype, module_dtype", [(torch.float32, torch.float32), (torch.bfloat16, torch.float32),
                                                 (torch.float16, torch.float32)])
def test_batchnorm_eval(ndim, dtype, module_dtype):
    """TestNNDeviceType.test_batchnorm_eval (and _mixed): in eval mode two passes give the same output
    and gradient; without running statistics eval mode equals training mode. All as torch's."""
    for track in (True, False):
        ours, theirs = make_pair("BatchNorm1d", (3,), {"track_running_stats": track}, module_dtype, training=track)
        if track:
            ours.eval(), theirs.eval()
        data = torch.rand([3] * ndim if track else [4, 3]).to(dtype)
        upstream = torch.rand(data.shape).to(dtype)
        first = run_both(ours, theirs, data, upstream, rtol=1e-5, atol=1e-5)
        ours.eval(), theirs.eval()
        second = run_both(ours, theirs, data, upstream, rtol=1e-5, atol=1e-5)
        assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("dtype, module_dtype", [(torch.float32, torch.float32), (torch.bfloat16, torch.float32)])
def test_batchnorm_affine(ndim, dtype, module_dtype):
    """TestNNDeviceType.test_batchnorm_affine (and _mixed): weights of one and biases of zero give
    exactly the output and input gradient of affine=False."""
    plain = bnlib.BatchNorm1d(3, affine=False).to(module_dtype)
    affine = bnlib.BatchNorm1d(3).to(module_dtype)
    data = torch.rand([3] * ndim).to(dtype)
    results = []
    for layer in (affine, plain):
        x = data.clone().requires_grad_()
        out = layer(x)
        out.backward(torch.ones_like(out))
        results.append((out, x.grad))
    torch.testing.assert_close(results[0], results[1], rtol=0, atol=0)


@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
def test_batchnorm_grad(training):
    """TestNNDeviceType.test_batchnorm_grad: gradcheck and gradgradcheck in float64 on the upstream
    input (arange values, per-channel weight, bias and running statistics, eps=1e-4)."""
    x = torch.arange(4 * 5 * 6, dtype=torch.float64).view(4, 5, 6).requires_grad_()
    layer = bnlib.BatchNorm1d(5, eps=1e-4, dtype=torch.float64).train(training)
    with torch.no_grad():
        layer.running_mean.copy_(1 - torch.arange(5.0))
        layer.running_var.copy_(2 * torch.arange(5.0))
    weight = torch.arange(1, 6, dtype=torch.float64, requires_grad=True)
    bias = torch.arange(5, dtype=torch.float64, requires_grad=True)

    def forward(x, weight, bias):
        return torch.func.functional_call(layer, {"weight": weight, "bias": bias}, (x,))

    assert gradcheck(forward, (x, weight, bias), check_batched_grad=True)
    assert gradgradcheck(forward, (x, weight, bias), check_batched_grad=True)


def test_BatchNorm_empty():
    """TestNNDeviceType.test_BatchNorm_empty with _test_module_empty_input: an empty batch gives an
    empty output; weight, bias and input get zero gradients; the running statistics stay put and
    num_batches_tracked counts the batch, all as torch's (here float32 layers, float64 input)."""
    for layer in (bnlib.BatchNorm2d(3), nn.BatchNorm2d(3)):
        x = torch.randn(0, 3, 2, 2, dtype=torch.float64, requires_grad=True)
        out = layer(x)
        out.backward(torch.rand_like(out))
        assert out.shape == x.shape and out.dtype == torch.float64
        assert torch.equal(x.grad, torch.zeros_like(x))
        for tensor, value in ((layer.weight.grad, 0.0), (layer.bias.grad, 0.0), (layer.running_mean, 0.0),
                              (layer.running_var, 1.0)):
            assert torch.equal(tensor, torch.full((3,), value))
        assert layer.num_batches_tracked.item() == 1
    ours = bnlib.BatchNorm1d(5, momentum=None)
    ours(torch.randn(0, 5))  # an empty first batch still counts in the cumulative average, as torch
    theirs = nn.BatchNorm1d(5, momentum=None)
    theirs(torch.randn(0, 5))
    x = torch.randn(6, 5)
    torch.testing.assert_close(ours(x), theirs(x))
    assert_same_state(ours, theirs)


def test_batchnorm_raises_error_if_less_than_one_value_per_channel():
    """test_batchnorm_raises_error_if_less_than_one_value_per_channel: ValueError, as torch's."""
    x = torch.rand(10)[None, :, None]
    for layer in (bnlib.BatchNorm1d(10), nn.BatchNorm1d(10)):
        with pytest.raises(ValueError, match="Expected more than 1 value per channel when training"):
            layer(x)


@pytest.mark.parametrize("name", ["running_mean", "running_var", "weight", "bias"])
@pytest.mark.parametrize("size", [9, 11, 1])
def test_batchnorm_raises_error_if_state_is_not_same_size_as_input(name, size):
    """test_batchnorm_raises_error_if_{running_mean,running_var,weight,bias}_is_not_same_size_as_input:
    torch raises RuntimeError; ours a ValueError naming the tensor, even for size 1, which would
    otherwise broadcast silently."""
    x = torch.rand(2, 10)
    for training in (True, False):
        layer = bnlib.BatchNorm1d(10).train(training)
        setattr(layer, name, nn.Parameter(torch.rand(size)) if name in ("weight", "bias") else torch.rand(size))
        with pytest.raises(ValueError, match=rf"BatchNorm1d.{name} must have shape \(10,\)"):
            layer(x)
    with pytest.raises(RuntimeError):
        kwargs = {"running_mean": torch.rand(10), "running_var": torch.rand(10), name: torch.rand(9)}
        F.batch_norm(x, kwargs.pop("running_mean"), kwargs.pop("running_var"), **kwargs)


def test_batchnorm_buffer_update_when_stats_are_not_tracked():
    """test_batchnorm_buffer_update_when_stats_are_not_tracked: track_running_stats=False set after
    construction, with the buffers still there: training neither updates them nor counts the batch."""
    layer = bnlib.BatchNorm1d(4, track_running_stats=True)
    layer.track_running_stats = False
    before = copy.deepcopy(layer.state_dict())
    layer(torch.rand(32, 4))
    for key, value in before.items():
        assert torch.equal(layer.state_dict()[key], value)


@pytest.mark.parametrize("name, shape", [("BatchNorm1d", (6, 3, 4)), ("BatchNorm2d", (4, 3, 3, 3))])
def test_eval_without_tracking_uses_the_stored_statistics(name, shape):
    """torch's _BatchNorm.forward: in eval mode, batch statistics only when the buffers are None; a
    layer whose track_running_stats was switched off after construction normalizes with its stored
    statistics, as torch's."""
    ours, theirs = make_pair(name, (3,), training=False)
    ours.track_running_stats = theirs.track_running_stats = False
    x = random_input(shape)
    out = run_both(ours, theirs, x, **EXACT)[0]
    stored = (x - ours.running_mean.view(1, -1, *[1] * (x.dim() - 2))) / torch.sqrt(
        ours.running_var.view(1, -1, *[1] * (x.dim() - 2)) + ours.eps)
    torch.testing.assert_close(out, stored * ours.weight.view(1, -1, *[1] * (x.dim() - 2))
                               + ours.bias.view(1, -1, *[1] * (x.dim() - 2)), **EXACT)


def test_batchnorm_load_state_dict():
    """test_batchnorm_load_state_dict: a state dict without num_batches_tracked (no version metadata)
    keeps the layer's count; on the meta device, assign=True leaves a real 0, not a meta tensor."""
    layer = bnlib.BatchNorm2d(3)
    assert torch.equal(layer.state_dict()["num_batches_tracked"], torch.tensor(0))
    layer.num_batches_tracked = torch.tensor(10)
    assert torch.equal(layer.state_dict()["num_batches_tracked"], torch.tensor(10))
    layer.load_state_dict(OrderedDict(), strict=False)
    assert torch.equal(layer.state_dict()["num_batches_tracked"], torch.tensor(10))
    with torch.device("meta"):
        on_meta = bnlib.BatchNorm2d(3)
    assert on_meta.num_batches_tracked.is_meta
    on_meta.load_state_dict(OrderedDict(), assign=True, strict=False)
    assert torch.equal(on_meta.state_dict()["num_batches_tracked"], torch.tensor(0))


@pytest.mark.parametrize("shape", [(4, 8, 10, 10), (4, 1, 9, 9), (4, 9, 1, 1)])
@pytest.mark.parametrize("dtype, mixed", [(torch.float32, False), (torch.bfloat16, False), (torch.bfloat16, True),
                                          (torch.float16, False), (torch.float16, True)])
def test_batchnorm_nhwc_cpu(shape, dtype, mixed):
    """test_batchnorm_nhwc_cpu: channels_last in, channels_last out, with the contiguous results, for
    float32, bfloat16 and float16 layers and inputs, and float32 layers on the lower precisions."""
    ours, theirs = make_pair("BatchNorm2d", (shape[1],), dtype=torch.float32 if mixed else dtype)
    x = random_input(shape, dtype).to(memory_format=torch.channels_last)
    upstream = random_input(shape, dtype, seed=3).to(memory_format=torch.channels_last)
    reference = copy.deepcopy(ours)
    x_ours = x.clone().requires_grad_()
    out = ours(x_ours)
    out.backward(upstream)
    x_reference = x.contiguous().requires_grad_()
    expected = reference(x_reference)
    expected.backward(upstream.contiguous())
    assert out.is_contiguous(memory_format=torch.channels_last) and expected.is_contiguous()
    assert x_ours.grad.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, expected)  # default tolerances of the type, as upstream's assertEqual
    torch.testing.assert_close(x_ours.grad, x_reference.grad)
    for mine, theirs_param in zip(ours.parameters(), reference.parameters()):
        torch.testing.assert_close(mine.grad, theirs_param.grad, rtol=1e-4, atol=1e-4)
    if dtype == torch.float32:  # float32 sums split across threads in torch's channels_last kernel
        torch.testing.assert_close(out, theirs(x))
    else:
        assert_within_ulps(out, theirs(x), 2)


def test_batchnorm_half_overflow():
    """test_batchnorm_half_overflow: float16 data whose sum of squares per channel (over 65504)
    overflows float16: float32 arithmetic gives finite results equal to a float32 layer's."""
    x = torch.randn(4, 3, 160, 160).half()
    for layer in (bnlib.BatchNorm2d(3).half(), bnlib.BatchNorm2d(3)):
        out = layer(x)
        assert torch.isfinite(out).all()
        expected = bnlib.BatchNorm2d(3)(x.float())
        torch.testing.assert_close(out.float(), expected, rtol=1e-3, atol=2e-3)
        assert_within_ulps(out, (nn.BatchNorm2d(3).half() if layer.weight.dtype == torch.half
                                 else nn.BatchNorm2d(3))(x))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_batchnorm_non_contig_cpu(dtype):
    """test_batchnorm_non_contig_cpu: a permuted input (channels_last strides) in eval mode gives a
    channels_last output equal to the contiguous one; a float32 layer takes a permuted low-precision
    input and stays close to the float32 result."""
    x = torch.arange(6, dtype=torch.float).reshape(1, 3, 2, 1).permute(0, 2, 1, 3)
    ours, theirs = make_pair("BatchNorm2d", (2,), dtype=torch.float32, training=False)
    out = ours(x)
    assert out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, ours(x.contiguous()), rtol=0, atol=0)
    torch.testing.assert_close(out, theirs(x), rtol=1e-6, atol=1e-6)
    low = torch.arange(24, dtype=dtype).reshape(1, 3, 2, 4).permute(0, 2, 1, 3)
    mixed = bnlib.BatchNorm2d(2).eval()
    torch.testing.assert_close(mixed(low).float(), copy.deepcopy(mixed)(low.float()), atol=0.05, rtol=0.05)
    torch.testing.assert_close(mixed(low), nn.BatchNorm2d(2).eval()(low), rtol=0, atol=0)


# float16 and bfloat16 on the CPU: float32 arithmetic, as torch's kernel ------------------------------

# (rtol, atol): torch.testing.assert_close's and upstream assertEqual's defaults for the type
TORCH_TOLERANCES = {torch.float16: (1e-3, 1e-5), torch.bfloat16: (1.6e-2, 1e-5), torch.float32: (1.3e-6, 1e-5)}


def assert_within_ulps(ours, theirs, ulps=1):
    """Equal to torch's result but for rounding: no element off by more than ``ulps`` units in the last
    place of the result's largest value (torch rounds from float32 sums taken in another order)."""
    assert ours.dtype == theirs.dtype
    ulp = torch.finfo(theirs.dtype).eps * theirs.detach().abs().max().double()
    difference = (ours.detach().double() - theirs.detach().double()).abs().max()
    assert difference <= ulps * ulp, f"off by {difference / ulp:.2f} ulp"


@pytest.mark.parametrize("name, shape", [("BatchNorm1d", (64, 16)), ("BatchNorm1d", (32, 8, 20)),
                                         ("BatchNorm2d", (16, 8, 12, 12))])
@pytest.mark.parametrize("dtype, module_dtype", [(torch.float16, torch.float16), (torch.bfloat16, torch.bfloat16),
                                                 (torch.float16, torch.float32), (torch.bfloat16, torch.float32)])
def test_low_precision_matches_torch_to_the_last_ulp(name, shape, dtype, module_dtype):
    """Three training steps and one eval step of a float16/bfloat16 layer, or of a float32 layer on
    float16/bfloat16 inputs (a TypeError before): outputs and input gradients match torch's to the
    last ulp, 99% of them bit for bit; the running statistics are as close to the float64 result as
    torch's (and within an ulp of them in float16), the parameter gradients nearly so
    (float32 sums in another order). A bfloat16 layer's running statistics and eval step allow 2 ulps:
    torch blends its rounded batch statistics into them in double arithmetic, ours in float32 (lerp)."""
    ulps = 2 if module_dtype == torch.bfloat16 else 1
    ours, theirs = make_pair(name, (shape[1],), dtype=module_dtype, seed=5)
    exact = copy.deepcopy(theirs).double()
    identical = total = 0
    for seed in (1, 2, 3):
        x, upstream = random_input(shape, dtype, seed), random_input(shape, dtype, seed + 10)
        x_ours, x_theirs, x_exact = x.clone().requires_grad_(), x.clone().requires_grad_(), x.double()
        out, expected = ours(x_ours), theirs(x_theirs)
        out.backward(upstream), expected.backward(upstream), exact(x_exact).backward(upstream.double())
        assert out.dtype == dtype and x_ours.grad.dtype == dtype
        assert_within_ulps(out, expected)
        assert_within_ulps(x_ours.grad, x_theirs.grad)
        identical, total = identical + (out == expected).sum().item(), total + out.numel()
        for mine, reference, truth in zip(ours.parameters(), theirs.parameters(), exact.parameters()):
            assert mine.grad.dtype == module_dtype
            error, torch_error = ((g.double() - truth.grad).abs().max() for g in (mine.grad, reference.grad))
            assert error <= 2 * torch_error + 4 * torch.finfo(module_dtype).eps * truth.grad.abs().max()
            for t in (mine, reference, truth):
                t.grad = None
        for buffer in ("running_mean", "running_var"):
            mine, reference, truth = (getattr(layer, buffer) for layer in (ours, theirs, exact))
            if module_dtype != torch.float32:  # float32 buffers hold two float32 sums in different orders
                assert_within_ulps(mine, reference, ulps)
            error, torch_error = ((b.double() - truth).abs().max() for b in (mine, reference))
            assert error <= torch_error + torch.finfo(module_dtype).eps * truth.abs().max(), buffer
        assert ours.num_batches_tracked.item() == theirs.num_batches_tracked.item()
    assert identical >= 0.99 * total, f"{identical} of {total} output elements bit-identical to torch's"
    ours.eval(), theirs.eval()
    x = random_input(shape, dtype, seed=20)
    assert_within_ulps(ours(x), theirs(x), ulps)


@pytest.mark.parametrize("shape", [(4, 8, 10, 10), (4, 1, 9, 9), (4, 9, 1, 1), (64, 16), (32, 8, 20)])
@pytest.mark.parametrize("dtype, mixed", [(torch.float16, False), (torch.float16, True), (torch.bfloat16, False),
                                          (torch.bfloat16, True)],
                         ids=["float16", "float16-on-float32", "bfloat16", "bfloat16-on-float32"])
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last], ids=["nchw", "nhwc"])
def test_low_precision_agrees_with_torch_within_its_tolerances(shape, dtype, mixed, memory_format):
    """test_batchnorm_nhwc_cpu's data (batch and upstream gradient from randn, weight and bias uniform in
    [0, 1)), ten draws, through our layer and torch's, a float16/bfloat16 layer or a float32 one on
    float16/bfloat16 input: the output, the input gradient, the bias gradient and the running statistics
    agree within torch's default tolerances for their type (float16 rtol 1e-3, bfloat16 1.6e-2, float32
    1.3e-6; atol 1e-5), the weight gradient within upstream's ``precision`` for it, 1e-4, where that is
    looser (float32 sums of many products, taken in another order). A float16 layer's running
    statistics are torch's bit for bit: both blend in the float32 batch statistics."""
    if memory_format == torch.channels_last and len(shape) != 4:
        pytest.skip("channels_last is a layout of 4D tensors")
    name = "BatchNorm2d" if len(shape) == 4 else "BatchNorm1d"
    for seed in range(10):
        torch.manual_seed(seed)
        x = torch.randn(shape, dtype=dtype).contiguous(memory_format=memory_format)
        upstream = torch.randn(shape, dtype=dtype).contiguous(memory_format=memory_format)
        ours = OURS[name](shape[1]).to(dtype)
        with torch.no_grad():
            ours.weight.uniform_()
            ours.bias.uniform_()
        theirs = THEIRS[name](shape[1]).to(dtype)
        theirs.load_state_dict(ours.state_dict())
        if mixed:
            ours.float(), theirs.float()
        results = []
        for layer in (ours, theirs):
            x_layer = x.clone().requires_grad_()
            out = layer(x_layer)
            out.backward(upstream)
            results.append((out, x_layer.grad, layer.bias.grad, layer.weight.grad))
        (out, dx, dbias, dweight), (expected, expected_dx, expected_dbias, expected_dweight) = results
        for mine, reference in ((out, expected), (dx, expected_dx), (dbias, expected_dbias)):
            torch.testing.assert_close(mine, reference, msg=lambda m, seed=seed: f"seed {seed}: {m}")
        rtol, atol = TORCH_TOLERANCES[expected_dweight.dtype]
        torch.testing.assert_close(dweight, expected_dweight, rtol=max(rtol, 1e-4), atol=max(atol, 1e-4))
        exact = dict(rtol=0, atol=0) if dtype == torch.float16 and not mixed else {}
        for buffer in ("running_mean", "running_var"):
            torch.testing.assert_close(getattr(ours, buffer), getattr(theirs, buffer), **exact,
                                       msg=lambda m, buffer=buffer: f"{buffer}: {m}")


def test_float16_statistics_are_computed_in_float32():
    """The old float16 arithmetic was a few ulps off torch; float32 arithmetic is as accurate as
    torch's float16 layer against the float64 result, and as torch's keeps no more digits."""
    x = random_input((64, 16, 8), torch.float16)
    exact = F.batch_norm(x.double(), None, None, training=True)
    ours, theirs = bnlib.BatchNorm1d(16, affine=False).half()(x), nn.BatchNorm1d(16, affine=False).half()(x)
    our_error, torch_error = ((t.double() - exact).abs().max().item() for t in (ours, theirs))
    assert our_error <= torch_error * 1.01 + 1e-12, (our_error, torch_error)


# test/nn/test_load_state_dict.py and torch.func's functional_call ------------------------------------

def test_load_state_dict_BC():
    """TestLoadStateDict.test_load_state_dict_BC: a version-1 state dict (no num_batches_tracked), or
    one without version, loads; num_batches_tracked stays a long, the layer's own count (0 when new),
    as torch's."""
    for count in (0, 5):
        for layer in (bnlib.BatchNorm2d(3), nn.BatchNorm2d(3)):
            layer.num_batches_tracked.fill_(count)
            state_dict = layer.state_dict()
            del state_dict["num_batches_tracked"]
            state_dict._metadata[""]["version"] = 1
            layer.load_state_dict(state_dict)
            assert layer.num_batches_tracked.dtype == torch.long and layer.num_batches_tracked.item() == count
            del state_dict._metadata[""]["version"]
            layer.load_state_dict(state_dict)
            assert layer.num_batches_tracked.dtype == torch.long and layer.num_batches_tracked.item() == count


@pytest.mark.parametrize("keep_vars", [True, False])
def test_load_state_dict_assign_meta(keep_vars):
    """TestLoadStateDict.test_load_state_dict_assign_meta: a model built on the meta device takes a
    state dict with assign=True: no parameter or buffer stays on meta, the order of names is kept,
    and it computes what the original computes (in training mode, updating its statistics alike)."""
    def model():
        return nn.Sequential(nn.Linear(3, 5), bnlib.BatchNorm1d(5))

    torch.manual_seed(0)
    net = model()
    state_dict = net.state_dict(keep_vars=keep_vars)
    with torch.device("meta"):
        net_meta = model()
    net_meta.load_state_dict(state_dict, assign=True)
    assert not any(t.is_meta for t in [*net_meta.parameters(), *net_meta.buffers()])
    assert [n for n, _ in net_meta.named_buffers()] == [n for n, _ in net.named_buffers()]
    x = torch.randn(4, 3)
    torch.testing.assert_close(net_meta(x.clone()), net(x))
    assert_same_state(net_meta[1], net[1])


def test_functional_call_batch_norm():
    """test/test_stateless.py test_functional_batch_norm: torch.func.functional_call with a running
    mean passed in updates that tensor, not the layer's; without it, the layer's."""
    layer = bnlib.BatchNorm1d(10).train()
    x = torch.full((20, 10), 128.0)
    running_mean = torch.zeros(10)
    torch.func.functional_call(layer, {"running_mean": running_mean}, (x,))
    assert torch.equal(layer.running_mean, torch.zeros(10))
    torch.testing.assert_close(running_mean, torch.full((10,), 12.8))
    torch.func.functional_call(layer, {}, (x,))
    torch.testing.assert_close(layer.running_mean, torch.full((10,), 12.8))


@pytest.mark.parametrize("name, shape", [("BatchNorm1d", (5, 4, 3)), ("BatchNorm2d", (3, 4, 2, 3, 3))])
def test_torch_func_transforms_after_replace_all_batch_norm_modules(name, shape):
    """torch.func.replace_all_batch_norm_modules_ (torch's "Patching Batch Norm" recipe) drops the
    running statistics of our layers too; then vmap over the samples of a batch of batches, per-sample
    gradients (vmap of grad) and jacrev in training mode give torch's layer's results."""
    ours, theirs = make_pair(name, (shape[2],))
    for layer in (ours, theirs):
        torch.func.replace_all_batch_norm_modules_(layer)
        assert layer.running_mean is None and not layer.track_running_stats
    x = random_input(shape)
    torch.testing.assert_close(torch.func.vmap(ours)(x), torch.func.vmap(theirs)(x), **EXACT)

    def loss(layer):
        return lambda params, sample: torch.func.functional_call(layer, params, (sample,)).square().sum()

    grads = [torch.func.vmap(torch.func.grad(loss(layer)), in_dims=(None, 0))(dict(layer.named_parameters()), x)
             for layer in (ours, theirs)]
    for key in grads[1]:
        torch.testing.assert_close(grads[0][key], grads[1][key], **EXACT)
    torch.testing.assert_close(torch.func.jacrev(ours)(x[0]), torch.func.jacrev(theirs)(x[0]), **EXACT)


# torch's tools that look for batch norm layers --------------------------------------------------------

def test_update_bn_recomputes_the_statistics():
    """torch.optim.swa_utils.update_bn (test/optim/test_swa_utils.py test_update_bn_dnn/_cnn): it
    resets our layers and recomputes their statistics over a loader, as for torch's layers; with
    equal batches the result is the mean of the batch means and of the unbiased batch variances."""
    torch.manual_seed(0)
    batches = [torch.randn(16, 3, 4, 4) * 2 + 1 for _ in range(5)]
    models = {}
    for kind, norm in (("ours", bnlib.BatchNorm2d), ("torch", nn.BatchNorm2d)):
        torch.manual_seed(1)
        models[kind] = nn.Sequential(nn.Conv2d(3, 4, 3), norm(4), nn.ReLU())
        models[kind][1].running_mean.fill_(7.0)  # stale statistics that update_bn must replace
        torch.optim.swa_utils.update_bn(batches, models[kind])
    ours, theirs = models["ours"][1], models["torch"][1]
    assert ours.momentum == 0.1 and ours.num_batches_tracked.item() == 5
    assert_same_state(ours, theirs, rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        features = [models["ours"][0](b).double() for b in batches]
    torch.testing.assert_close(ours.running_mean.double(), torch.stack([f.mean((0, 2, 3)) for f in features]).mean(0),
                               rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ours.running_var.double(),
                               torch.stack([f.var((0, 2, 3)) for f in features]).mean(0), rtol=1e-5, atol=1e-6)


def test_fuse_conv_bn_eval():
    """TestFusionEval.test_fuse_module_eval_numerics: fuse_conv_bn_eval folds our layer (affine or
    not) into the convolution; in float64 the fused convolution computes the unfused pair's output,
    and the fold of torch's layer with the same state."""
    torch.manual_seed(0)
    x = torch.randn(5, 3, 5, 5, dtype=torch.float64)
    conv = nn.Conv2d(3, 6, 3, dtype=torch.float64).eval()
    for affine in (True, False):
        ours, theirs = make_pair("BatchNorm2d", (6,), {"affine": affine}, training=False)
        fused = torch.nn.utils.fusion.fuse_conv_bn_eval(conv, ours)
        torch.testing.assert_close(fused(x), ours(conv(x)), **EXACT)
        reference = torch.nn.utils.fusion.fuse_conv_bn_eval(conv, theirs)
        torch.testing.assert_close(fused.weight, reference.weight, rtol=0, atol=0)
        torch.testing.assert_close(fused.bias, reference.bias, rtol=0, atol=0)


def test_fuse_linear_bn_eval():
    """torch.nn.utils.fusion.fuse_linear_bn_eval folds our BatchNorm1d exactly as torch's."""
    torch.manual_seed(0)
    x = torch.randn(7, 4, dtype=torch.float64)
    linear = nn.Linear(4, 6, dtype=torch.float64).eval()
    ours, theirs = make_pair("BatchNorm1d", (6,), training=False)
    fused = torch.nn.utils.fusion.fuse_linear_bn_eval(linear, ours)
    torch.testing.assert_close(fused(x), ours(linear(x)), **EXACT)
    reference = torch.nn.utils.fusion.fuse_linear_bn_eval(linear, theirs)
    torch.testing.assert_close(fused.weight, reference.weight, rtol=0, atol=0)
    torch.testing.assert_close(fused.bias, reference.bias, rtol=0, atol=0)


def test_convert_sync_batchnorm():
    """test_convert_sync_batchnorm: SyncBatchNorm.convert_sync_batchnorm replaces our layers, keeping
    their state, and leaves other modules alone."""
    model = nn.Sequential(bnlib.BatchNorm1d(100), nn.InstanceNorm1d(100))
    model[0](torch.randn(8, 100))
    state = copy.deepcopy(model.state_dict())
    converted = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    assert type(converted[0]) is nn.SyncBatchNorm and type(converted[1]) is nn.InstanceNorm1d
    for key, value in state.items():
        assert torch.equal(converted.state_dict()[key], value)
