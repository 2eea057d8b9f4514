"""Notebook 03's side-by-side: our BatchNorm1d/2d against torch.nn's, in float64 and float32."""

import pytest
import torch

from bnlib import layers
from bnlib.course.ch03.against_torch import comparison_table, print_comparison, side_by_side


def test_float64_agrees_to_rounding_and_float32_to_single_precision(capsys):
    table = comparison_table()
    for (name, dtype), worst in table.items():
        assert set(worst) == {"output", "input gradient", "weight gradient", "bias gradient",
                              "running_mean", "running_var", "eval output"}
        bound = 1e-12 if dtype == "float64" else 1e-5
        assert max(worst.values()) < bound, (name, dtype, worst)
    print_comparison(table)
    assert "BatchNorm2d float32" in capsys.readouterr().out


def test_the_comparison_can_fail(monkeypatch):
    """A different eps in our module must show up as a difference."""
    original = layers.BatchNorm1d
    monkeypatch.setattr(layers, "BatchNorm1d", lambda channels: original(channels, eps=1e-1))
    assert side_by_side("BatchNorm1d", torch.float64)["output"] > 1e-3


def test_unknown_module_is_named():
    with pytest.raises(ValueError, match="BatchNorm1d"):
        side_by_side("BatchNorm3d")
