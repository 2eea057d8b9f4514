"""The benchmark command's contract: one JSON object, only the keys asked for, clear errors."""

import json
import math
import subprocess
import sys

import pytest
import torch

from bnlib import bench
from bnlib.bench import layers
from bnlib.bench.__main__ import main
from bnlib.course import data


@pytest.fixture
def quick_benchmarks(monkeypatch):
    """Two cheap entries in place of the real ones, so the command itself is what is tested."""
    def first():
        """the first"""
        return 1.5

    def second():
        """the second"""
        return 0.25

    monkeypatch.setattr(bench, "BENCHMARKS", {"first": first, "second": second})


def test_json_output_is_one_object_with_every_key(quick_benchmarks, capsys):
    assert main(["--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"first": 1.5, "second": 0.25}


def test_json_output_holds_only_the_keys_asked_for(quick_benchmarks, capsys):
    main(["--json", "second"])
    assert json.loads(capsys.readouterr().out) == {"second": 0.25}


def test_table_names_each_benchmark(quick_benchmarks, capsys):
    main([])
    lines = capsys.readouterr().out.splitlines()
    assert [line.split() for line in lines] == [["first", "1.5", "the", "first"], ["second", "0.25", "the", "second"]]


def test_unknown_key_is_refused_with_the_known_ones(quick_benchmarks, capsys):
    with pytest.raises(SystemExit):
        main(["--json", "third"])
    assert "unknown benchmark(s): third; known: first, second" in capsys.readouterr().err


def test_every_benchmark_is_documented():
    for key, function in bench.BENCHMARKS.items():
        assert function.__doc__, key


def test_ratio_is_a_positive_finite_number():
    """A small run of the real measurement (its value depends on the machine: not asserted)."""
    torch.manual_seed(0)
    ratio = layers.fwd_bwd_ratio(layers.BatchNorm1d, torch.nn.BatchNorm1d, (16, 4), repeats=3, number=2)
    assert math.isfinite(ratio) and ratio > 0


def test_without_mnist_the_layer_benchmarks_still_run_and_the_mnist_ones_say_why_they_skip(monkeypatch, capsys):
    def needs_mnist():
        """needs MNIST"""
        raise data.MNISTUnavailable("the MNIST folder /nowhere does not exist")

    monkeypatch.setattr(bench, "BENCHMARKS", {"layers": lambda: 1.25, "paper": needs_mnist})
    assert main(["--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out) == {"layers": 1.25}
    assert "skipped paper: it needs MNIST" in captured.err


def test_the_command_runs_as_a_module():
    """`python -m bnlib.bench`, as the README writes it: the package has a __main__."""
    result = subprocess.run([sys.executable, "-m", "bnlib.bench", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "python -m bnlib.bench" in result.stdout, result.stderr
