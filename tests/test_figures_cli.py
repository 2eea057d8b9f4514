"""`python -m bnlib.figures`: lists the figures, regenerates one by name, refuses an unknown one."""

import json
import subprocess
import sys

import numpy as np
import pytest

from bnlib import figures
from bnlib.figures.__main__ import main


def test_list_names_every_registered_figure(capsys):
    assert main(["--list"]) == 0
    assert capsys.readouterr().out.split() == list(figures.all_figures())


def test_a_name_regenerates_that_figure_with_its_numbers(tmp_path):
    assert main(["bn_forward_stages", "--out", str(tmp_path)]) == 0
    assert sorted(path.name for path in tmp_path.iterdir()) == ["bn_forward_stages.json", "bn_forward_stages.png"]
    assert (tmp_path / "bn_forward_stages.png").read_bytes().startswith(b"\x89PNG")
    _, data = figures.all_figures()["bn_forward_stages"]()
    assert json.loads((tmp_path / "bn_forward_stages.json").read_text()) == figures.to_json(data)


def test_an_unknown_name_is_refused_with_the_way_to_list(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["no_such_figure", "--out", str(tmp_path)])
    assert "--list" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_two_jobs_write_the_same_files_as_one(tmp_path):
    names = ["bn_forward_stages", "bias_blowup", "bn_scale_invariance"]
    assert main([*names, "--jobs", "1", "--out", str(tmp_path / "one")]) == 0
    assert main([*names, "--jobs", "2", "--out", str(tmp_path / "two")]) == 0
    for name in names:
        for suffix in (".png", ".json"):
            one, two = (tmp_path / folder / f"{name}{suffix}" for folder in ("one", "two"))
            assert one.read_bytes() == two.read_bytes(), f"{name}{suffix}"


def test_numbers_are_written_to_six_significant_digits():
    written = figures.to_json({"a": np.array([1 / 3, 2e-9 / 3]), "b": (7, np.float32(0.1), float("nan"))})
    assert written["a"] == [0.333333, 6.66667e-10]
    assert written["b"][:2] == [7, 0.1] and isinstance(written["b"][0], int)
    assert np.isnan(written["b"][2])


def test_an_experiments_settings_are_written_as_their_fields():
    """A figure's data may hold the typed configuration it was computed with (``mnist_fig1``'s ``PAPER``)."""
    from bnlib.course.ch06.paper import PAPER

    written = json.loads(json.dumps(figures.to_json({"config": PAPER})))
    assert written["config"] == {"steps": 50000, "batch_size": 60, "lr": 0.5, "init_std": 0.01, "seed": 0,
                                 "checkpoints": 100, "eval_momentum": 0.1}


def test_the_command_runs_as_a_module():
    """`python -m bnlib.figures --list`, as the README and the Makefile run it: the package has a __main__."""
    result = subprocess.run([sys.executable, "-m", "bnlib.figures", "--list"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.split() == list(figures.all_figures()), result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("name", list(figures.all_figures()))
def test_every_figure_fits_a_notebook_cell(name):
    """A figure wider than a JupyterLab cell (``MAX_WIDTH``, as the explorers) is shrunk to it, and its text with
    it: every figure is drawn at most that wide, and nothing it draws sticks out of it."""
    from bnlib.course.explorer import MAX_WIDTH

    figure, _ = figures.all_figures()[name]()
    width = figure.get_size_inches()[0]
    assert width <= MAX_WIDTH, f"{name} is {width:g} in wide"
    figure.draw_without_rendering()  # lays the figure out (constrained or tight layout) as saving it does
    drawn = figure.get_tightbbox()  # in inches
    assert drawn.x0 >= -0.01 and drawn.x1 <= width + 0.01, f"{name} draws from {drawn.x0:.2f} to {drawn.x1:.2f} in"
