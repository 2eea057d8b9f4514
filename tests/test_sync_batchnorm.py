"""bnlib.SyncBatchNorm: k processes holding shards of a batch compute what one process computes on the
whole batch with bnlib.BatchNorm1d/2d: outputs, input and parameter gradients, running statistics, and
the weights after a few steps of DDP training.

The processes (gloo on 127.0.0.1, started by ``bnlib.course.parallel.run_on_ranks``; what they run is in
``sync_workers.py``) take a few seconds to start, so one run per world size does many checks and the
tests below share it through a module fixture. Upstream gradients are random (an all-ones upstream
gradient has dx = 0, which many wrong backward passes would match).
"""

import inspect
import math
import time

import pytest
import sync_workers
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bnlib import BatchNorm1d, BatchNorm2d, SyncBatchNorm, convert_sync_batchnorm
from bnlib.course.parallel import run_on_ranks
from bnlib.sync import chan_merge

# Spawns process groups of 2 and 4 ranks; each spawned run has timeouts of its own, this is the backstop.
# One test worker runs the module, so each group is started once (the module fixture is per worker).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(120), pytest.mark.xdist_group("sync-ranks")]

FLOAT32_EPS = torch.finfo(torch.float32).eps
# (rtol, atol): torch.testing.assert_close's and upstream assertEqual's defaults for the type
TORCH_TOLERANCES = {torch.float16: (1e-3, 1e-5), torch.bfloat16: (1.6e-2, 1e-5), torch.float32: (1.3e-6, 1e-5)}


def make_case(shape, sizes, dtype=torch.float64, steps=3, options=None, offset=0.0, spread=1.0, seed=0,
              naive=False, input_dtype=None):
    """Batches of ``shape`` split into shards of ``sizes`` rows, upstream gradients, random weights; the
    layer in ``dtype``, the batches in ``input_dtype`` (by default the same)."""
    assert sum(sizes) == shape[0]
    generator = torch.Generator().manual_seed(seed)
    input_dtype = input_dtype or dtype

    def draw():
        return torch.randn(shape, generator=generator, dtype=torch.float64)

    options = options or {}
    layer = (BatchNorm2d if len(shape) == 4 else BatchNorm1d)(shape[1], dtype=dtype, **options)
    with torch.no_grad():
        for parameter in layer.parameters():
            parameter.normal_(generator=generator)
    return {"channels": shape[1], "sizes": sizes, "options": options, "state": layer.state_dict(),
            "layer_dtype": dtype, "inputs": [(offset + spread * draw()).to(input_dtype) for _ in range(steps)],
            "upstreams": [draw().to(input_dtype) for _ in range(steps)], "naive": naive}


def single_process(case, dtype, layers=(BatchNorm1d, BatchNorm2d)):
    """The case's steps by bnlib.BatchNorm1d/2d (or the given ``layers``) on the whole batch, the layer
    and the data in ``dtype`` (None: the case's own types): per step the output, the input gradient and
    the parameter gradients, and the final state."""
    shape = case["inputs"][0].shape
    layer = layers[len(shape) == 4](shape[1], dtype=dtype or case["layer_dtype"], **case["options"])
    layer.load_state_dict(case["state"])
    steps = []
    for batch, upstream in zip(case["inputs"], case["upstreams"]):
        x = batch.to(dtype or batch.dtype).requires_grad_()
        out = layer(x)
        out.backward(upstream.to(dtype or upstream.dtype))
        steps.append({"out": out.detach(), "dx": x.grad,
                      "grads": {name: p.grad for name, p in layer.named_parameters()}})
        layer.zero_grad(set_to_none=True)
    return steps, layer.state_dict()


def errors(ranks, case_index, reference):
    """Largest absolute differences from ``reference`` (``single_process``'s result), by quantity: the
    ranks' outputs and input gradients concatenated, their parameter gradients summed, and every rank's
    state."""
    steps, state = reference
    found = {}

    def note(key, value, expected):
        found[key] = max(found.get(key, 0.0), (value.double() - expected.double()).abs().max().item())

    for step, expected in enumerate(steps):
        per_rank = [rank[case_index]["steps"][step] for rank in ranks]
        for key in ("out", "dx"):
            note(key, torch.cat([r[key] for r in per_rank]), expected[key])
        for name, grad in expected["grads"].items():
            note(f"grad {name}", sum(r["grads"][name] for r in per_rank), grad)
    for rank in ranks:
        assert list(rank[case_index]["state"]) == list(state)
        for key, value in state.items():
            if value.is_floating_point():
                note(key, rank[case_index]["state"][key], value)
            else:
                assert torch.equal(rank[case_index]["state"][key], value), key
    return found


def low_precision_cases(world_size):
    """float16/bfloat16 layers, and float32 layers on float16/bfloat16 batches, in uneven shards."""
    def sizes(rows):
        return (rows - world_size + 1,) + (1,) * (world_size - 1)

    return [make_case((4, 9, 1, 1), sizes(4), torch.float16),
            make_case((4, 9, 1, 1), sizes(4), torch.float32, input_dtype=torch.float16),
            make_case((8, 5, 3), sizes(8), torch.float32, input_dtype=torch.bfloat16),
            make_case((4, 8, 6, 6), sizes(4), torch.bfloat16),
            make_case((12, 6), sizes(12), torch.float32, options=dict(momentum=None), input_dtype=torch.bfloat16)]


# Cases per world size: uneven shards, an empty shard, every input rank, the layer's options, low precision.
CASES = {
    2: [make_case((7, 5), (4, 3)),
        make_case((6, 4, 5), (1, 5), options=dict(affine=False, momentum=None)),
        make_case((5, 3, 4, 4), (2, 3), options=dict(track_running_stats=False, bias=False)),
        make_case((4, 3, 2, 3), (0, 4)),
        make_case((64, 6), (40, 24), torch.float32, steps=1, options=dict(momentum=1.0), offset=1e4,
                  spread=1e-2, naive=True)] + low_precision_cases(2),
    4: [make_case((10, 5), (3, 0, 5, 2)),
        make_case((6, 3, 4, 4), (1, 2, 0, 3), options=dict(momentum=None)),
        make_case((8, 4, 3), (2, 2, 2, 2), options=dict(affine=False)),
        make_case((96, 6), (10, 0, 50, 36), torch.float32, steps=1, options=dict(momentum=1.0), offset=1e4,
                  spread=1e-2, naive=True)] + low_precision_cases(4),
}
FLOAT32_CASE = {2: 4, 4: 3}  # the float32 case's index
PAIR_BATCHES = torch.randn(2, 6, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
DDP_STEPS = 5


def ddp_batches(dtype):
    generator = torch.Generator().manual_seed(1)
    return ([torch.randn(8, 2, 5, 5, generator=generator, dtype=torch.float64).to(dtype)
             for _ in range(DDP_STEPS)],
            [torch.randint(3, (8,), generator=generator) for _ in range(DDP_STEPS)])


@pytest.fixture(scope="module", params=[2, 4], ids=["2 ranks", "4 ranks"])
def ranks(request):
    """One run of ``sync_workers.all_checks`` on 2 or 4 processes: (world size, every rank's results)."""
    world_size = request.param
    return world_size, run_on_ranks(sync_workers.all_checks, world_size, CASES[world_size], PAIR_BATCHES,
                                    {dtype: ddp_batches(dtype) for dtype in (torch.float64, torch.float32)},
                                    timeout=60)


def test_float64_shards_match_one_process_on_the_whole_batch(ranks):
    world_size, results = ranks
    layers = [rank["layers"] for rank in results]
    for index, case in enumerate(CASES[world_size]):
        if case["inputs"][0].dtype == torch.float64:
            found = errors(layers, index, single_process(case, torch.float64))
            assert max(found.values()) < 1e-12, (case["sizes"], found)


def test_float32_at_a_large_offset_is_as_precise_as_one_process_and_a_naive_merge_is_not(ranks):
    """Mean 1e4, std 1e-2: float32 holds the deviations to about 1e-3, so no float32 batch norm is exact
    (errors are judged against float64 on the same float32 data). SyncBatchNorm's are at most twice
    single-process bnlib's in float32 (or a few float32 rounding steps of the value); the variance from
    summed x and x^2 over the same process group is wrong by orders of magnitude, while SyncBatchNorm's
    (exchanged in float64) is exact to float32's rounding of the result."""
    world_size, results = ranks
    index = FLOAT32_CASE[world_size]
    case = CASES[world_size][index]
    layers = [rank["layers"] for rank in results]
    exact = single_process(case, torch.float64)
    steps, state = single_process(case, torch.float32)
    sync, single = errors(layers, index, exact), errors([[{"steps": steps, "state": state}]], 0, exact)
    scale = {**{key: exact[0][0][key].abs().max().item() for key in ("out", "dx")},
             **{f"grad {name}": g.abs().max().item() for name, g in exact[0][0]["grads"].items()},
             **{key: v.abs().max().item() for key, v in exact[1].items() if v.is_floating_point()}}
    for key, error in sync.items():
        assert error <= 2 * single[key] + 4 * FLOAT32_EPS * scale[key], (key, error, single[key])
    true_var = exact[1]["running_var"]  # momentum 1: the running variance is the batch's unbiased variance
    sync_var = results[0]["layers"][index]["state"]["running_var"].double()
    m = case["inputs"][0].numel() // case["channels"]
    naive_var = results[0]["layers"][index]["naive_var"].double() * m / (m - 1)
    sync_relative = ((sync_var - true_var).abs() / true_var).max().item()
    naive_relative = ((naive_var - true_var).abs() / true_var).max().item()
    assert sync_relative < 1e-6 and naive_relative > 1e3, (sync_relative, naive_relative)


def test_low_precision_shards_agree_with_torch_on_the_whole_batch(ranks):
    """float16/bfloat16 layers, and float32 layers on float16/bfloat16 batches, follow the layers' policy
    (float32 arithmetic, results in the input's type, statistics rounded as torch's): the ranks' outputs
    and input gradients, their parameter gradients summed, and every rank's running statistics agree with
    torch.nn.BatchNorm1d/2d on the whole batch within torch's default tolerances for the type. The weight
    gradient is allowed upstream's 1e-4, and the summed gradients the rounding of each rank's shard."""
    world_size, results = ranks
    layers = [rank["layers"] for rank in results]
    cases = [(index, case) for index, case in enumerate(CASES[world_size])
             if case["inputs"][0].dtype in (torch.float16, torch.bfloat16)]
    assert len(cases) == 5
    for index, case in cases:
        steps, state = single_process(case, None, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d))
        for step, expected in enumerate(steps):
            per_rank = [rank[index]["steps"][step] for rank in layers]
            for key in ("out", "dx"):
                found = torch.cat([r[key] for r in per_rank])
                assert found.dtype == case["inputs"][0].dtype
                torch.testing.assert_close(found, expected[key], msg=lambda m, key=key: f"{index} {key}: {m}")
            for name, grad in expected["grads"].items():
                shards = [r["grads"][name].double() for r in per_rank]
                rtol, atol = TORCH_TOLERANCES[grad.dtype]
                rounding = torch.finfo(grad.dtype).eps * sum(shard.abs() for shard in shards)
                torch.testing.assert_close(sum(shards), grad.double(), rtol=max(rtol, 1e-4),
                                           atol=max(atol, 1e-4, rounding.max().item()))
        for rank in layers:
            for key, value in state.items():
                torch.testing.assert_close(rank[index]["state"][key], value, msg=lambda m, key=key: f"{key}: {m}")


def test_each_process_group_normalizes_its_own_batch(ranks):
    """With ranks paired into groups, each pair's outputs are batch norm of that pair's batch alone."""
    world_size, results = ranks
    for pair in range(world_size // 2):
        expected = BatchNorm1d(3, dtype=torch.float64)(PAIR_BATCHES[pair])
        found = torch.cat([results[2 * pair]["pairs"], results[2 * pair + 1]["pairs"]])
        torch.testing.assert_close(found, expected, rtol=1e-12, atol=1e-12)


def test_bad_input_is_the_same_clear_error_on_every_rank(ranks):
    world_size, results = ranks
    expected = ", ".join(f"rank {r} has {3 + r}" for r in range(world_size))
    for rank in results:
        messages = rank["errors"]
        assert f"different numbers of channels: {expected}." in messages["channels"]
        assert messages["single_value"].startswith("Expected more than 1 value per channel when training, "
                                                   "got 1 across the shards of ranks")
        assert messages["after"] == (2, 3)  # errors leave the group usable
    assert results[0]["errors"]["eval"] == (4, 3)  # eval mode on rank 0 alone: no communication


def test_ddp_training_with_sync_batch_norm_gives_the_weights_of_one_process(ranks):
    world_size, results = ranks
    for dtype, tolerance in ((torch.float64, 1e-12), (torch.float32, 1e-5)):
        model = sync_workers.small_model(dtype)
        sync_workers.sgd_steps(model, *ddp_batches(dtype))
        expected = model.state_dict()
        for rank in results:
            state = rank["ddp"][dtype]
            assert list(state) == list(expected)
            difference = max((state[k].double() - v.double()).abs().max().item() for k, v in expected.items())
            assert difference < tolerance, (world_size, dtype, difference)


def test_the_overhead_benchmark_measures_positive_ratios(ranks):
    """A tiny run of ``syncbn_overhead_2proc``'s measurement (its value depends on the machine)."""
    _, results = ranks
    for rank in results:
        assert len(rank["bench"]) == 2 and all(math.isfinite(r) and r > 0 for r in rank["bench"])


def test_a_failing_rank_makes_the_others_fail_within_their_timeout_not_hang():
    """The last rank raises after 4 s without joining the all_gather that rank 0 waits in; rank 0's
    collective gives up after its 2 s timeout, and run_on_ranks reports both failures."""
    start = time.monotonic()
    with pytest.raises(RuntimeError) as raised:
        run_on_ranks(sync_workers.fail_on_last_rank, 2, 4.0, timeout=2.0)
    elapsed = time.monotonic() - start
    message = str(raised.value)
    assert "rank 1 of 2 failed" in message and "rank 1 fails on purpose" in message
    assert "rank 0 of 2 failed" in message and "could not exchange statistics with the other ranks" in message
    assert elapsed < 40, elapsed


def test_run_on_ranks_refuses_a_function_it_could_not_import():
    def work(rank, world_size):
        return rank

    work.__module__ = "__main__"  # as if defined in a notebook
    with pytest.raises(ValueError, match="must be a function from an importable module"):
        run_on_ranks(work, 2)


def test_training_without_a_process_group_says_how_to_make_one_and_eval_mode_needs_none():
    layer = SyncBatchNorm(3, dtype=torch.float64)
    with pytest.raises(RuntimeError, match="call torch.distributed.init_process_group") as raised:
        layer(torch.randn(4, 3, dtype=torch.float64))
    assert "Eval mode (model.eval()) needs no process group, nor does bnlib.BatchNorm1d/2d" in str(raised.value)
    reference = BatchNorm1d(3, dtype=torch.float64)
    with torch.no_grad():
        for tensor in list(reference.parameters()) + [reference.running_mean, reference.running_var]:
            tensor.uniform_(0.5, 1.5)
    layer.load_state_dict(reference.state_dict())
    x = torch.randn(4, 3, 2, dtype=torch.float64)
    torch.testing.assert_close(layer.eval()(x), reference.eval()(x), rtol=1e-12, atol=1e-12)


def test_constructor_and_state_dict_are_torch_sync_batch_norm_s():
    ours, theirs = inspect.signature(SyncBatchNorm.__init__), inspect.signature(torch.nn.SyncBatchNorm.__init__)
    assert list(ours.parameters) == list(theirs.parameters)
    for name in ours.parameters:
        assert ours.parameters[name].default == theirs.parameters[name].default, name
    mine, reference = SyncBatchNorm(4, momentum=None), torch.nn.SyncBatchNorm(4, momentum=None)
    assert repr(mine).split("(", 1)[1] == repr(reference).split("(", 1)[1]
    with torch.no_grad():
        for tensor in list(reference.parameters()) + list(reference.buffers()):
            tensor.add_(torch.arange(tensor.numel()).view_as(tensor).to(tensor.dtype))
    mine.load_state_dict(reference.state_dict())
    torch.nn.SyncBatchNorm(4).load_state_dict(mine.state_dict())
    for (key, value), (other, expected) in zip(mine.state_dict().items(), reference.state_dict().items()):
        assert key == other and torch.equal(value, expected), key


def test_bad_arguments_are_refused_by_the_shared_checks():
    with pytest.raises(ValueError, match="num_features must be at least 1"):
        SyncBatchNorm(0)
    with pytest.raises(ValueError, match="momentum must lie in"):
        SyncBatchNorm(3, momentum=1.5)
    with pytest.raises(ValueError, match="batch norm needs an input of shape"):
        SyncBatchNorm(3)(torch.randn(3))


def test_convert_swaps_every_batch_norm_of_either_library_and_keeps_the_tensors():
    bns = [BatchNorm1d(3), BatchNorm2d(4, affine=False), torch.nn.BatchNorm1d(5, momentum=None),
           torch.nn.BatchNorm2d(6, track_running_stats=False), torch.nn.BatchNorm3d(7, eps=1e-3)]
    model = torch.nn.Sequential(torch.nn.Linear(2, 3), bns[0], torch.nn.Sequential(bns[1], bns[2]),
                                bns[3], bns[4])
    bns[2].eval()
    before = {name: tensor for name, tensor in model.state_dict(keep_vars=True).items()}
    process_group = object()  # any group object: it is only stored
    converted = convert_sync_batchnorm(model, process_group)
    layers = [converted[1], converted[2][0], converted[2][1], converted[3], converted[4]]
    assert all(type(layer) is SyncBatchNorm and layer.process_group is process_group for layer in layers)
    assert type(converted[0]) is torch.nn.Linear
    for layer, original in zip(layers, bns):
        for attribute in ("num_features", "eps", "momentum", "affine", "track_running_stats", "training"):
            assert getattr(layer, attribute) == getattr(original, attribute), attribute
    after = converted.state_dict(keep_vars=True)
    assert list(after) == list(before)
    assert all(after[name] is tensor for name, tensor in before.items())  # the very same tensors
    single = convert_sync_batchnorm(torch.nn.BatchNorm1d(2))
    assert type(single) is SyncBatchNorm


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(0, 6), min_size=1, max_size=5).filter(lambda sizes: sum(sizes) > 0),
       st.floats(-1e3, 1e3), st.integers(0, 2 ** 31))
def test_chan_merge_gives_the_whole_batch_s_mean_and_m2(sizes, offset, seed):
    x = offset + torch.randn(sum(sizes), 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    stats = [torch.stack([part.mean(0), ((part - part.mean(0)) ** 2).sum(0)]) for part in x.split(sizes)]
    mean, m2 = chan_merge(sizes, stats)
    torch.testing.assert_close(mean, x.mean(0), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(m2, ((x - x.mean(0)) ** 2).sum(0), rtol=1e-10, atol=1e-12)
