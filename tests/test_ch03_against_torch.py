"""Notebook 03's modules against torch's: the teaching BatchNorm1d, and the library's BatchNorm1d/2d."""

import pytest
import torch

from bnlib.course.ch03.against_torch import QUANTITIES, library_table, print_table, side_by_side
from bnlib.course.ch03.simple_layer import BatchNorm1d


def test_teaching_module_matches_torch_in_float64():
    ours = BatchNorm1d(6).double()
    worst = side_by_side(ours, torch.nn.BatchNorm1d(6).double(), (32, 6))
    assert set(worst) == set(QUANTITIES) and max(worst.values()) < 1e-12, worst
    assert ours.num_batches_tracked.item() == 3 and not ours.training


def test_teaching_module_has_torchs_state_and_modes():
    ours, theirs = BatchNorm1d(3), torch.nn.BatchNorm1d(3)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    theirs.load_state_dict(ours.state_dict())
    assert [name for name, _ in ours.named_parameters()] == ["weight", "bias"]
    x = torch.randn(5, 3) + 4
    ours.eval()
    before = ours.running_mean.clone()
    assert torch.allclose(ours(x), x / (1 + 1e-5) ** 0.5)  # eval: running mean 0 and variance 1 at the start
    assert torch.equal(ours.running_mean, before)


def test_running_variance_is_unbiased():
    ours = BatchNorm1d(2, momentum=1.0)
    x = torch.randn(7, 2)
    ours(x)
    torch.testing.assert_close(ours.running_var, x.var(dim=0, unbiased=True))
    torch.testing.assert_close(ours.running_mean, x.mean(dim=0))


def test_the_comparison_can_fail():
    """A different eps or momentum in our module must show up as a difference."""
    assert side_by_side(BatchNorm1d(6, eps=1e-1).double(), torch.nn.BatchNorm1d(6).double(), (32, 6))["output"] > 1e-3
    worst = side_by_side(BatchNorm1d(6, momentum=0.2).double(), torch.nn.BatchNorm1d(6).double(), (32, 6))
    assert worst["output"] < 1e-12 and worst["running_var"] > 1e-3


def test_library_layers_agree_to_rounding_in_float64_and_to_single_precision_in_float32(capsys):
    table = library_table()
    for (name, dtype), worst in table.items():
        bound = 1e-12 if dtype == "float64" else 1e-5
        assert max(worst.values()) < bound, (name, dtype, worst)
    print_table(table)
    assert "BatchNorm2d float32" in capsys.readouterr().out


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_side_by_side_uses_the_modules_dtype(dtype):
    worst = side_by_side(BatchNorm1d(4).to(dtype), torch.nn.BatchNorm1d(4).to(dtype), (16, 4), steps=1)
    assert max(worst.values()) < (1e-12 if dtype == torch.float64 else 1e-5)
