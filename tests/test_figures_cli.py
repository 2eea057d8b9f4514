"""`python -m bnlib.figures`: lists the figures, regenerates one by name, refuses an unknown one."""

import json
import subprocess
import sys

import pytest

from bnlib import figures


def test_list_names_every_registered_figure(capsys):
    assert figures.main(["--list"]) == 0
    assert capsys.readouterr().out.split() == list(figures.all_figures())


def test_a_name_regenerates_that_figure_with_its_numbers(tmp_path):
    assert figures.main(["bn_forward_stages", "--out", str(tmp_path)]) == 0
    assert sorted(path.name for path in tmp_path.iterdir()) == ["bn_forward_stages.json", "bn_forward_stages.png"]
    assert (tmp_path / "bn_forward_stages.png").read_bytes().startswith(b"\x89PNG")
    _, data = figures.all_figures()["bn_forward_stages"]()
    assert json.loads((tmp_path / "bn_forward_stages.json").read_text()) == figures.to_json(data)


def test_an_unknown_name_is_refused_with_the_way_to_list(tmp_path, capsys):
    with pytest.raises(SystemExit):
        figures.main(["no_such_figure", "--out", str(tmp_path)])
    assert "--list" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_the_command_runs_as_a_module():
    """`python -m bnlib.figures --list`, as the README and the Makefile run it: the package has a __main__."""
    result = subprocess.run([sys.executable, "-m", "bnlib.figures", "--list"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.split() == list(figures.all_figures()), result.stderr
