"""``bnlib.course.parallel``: the processes it starts are forked from a server process that imported torch
once, yet behave like new ones: they see the caller's environment of the moment and the modules as they
are on disk now."""

import sys
import textwrap

from bnlib.course.parallel import run_in_processes, split_by_cost


def write_task(folder, returns):
    """A module ``edited_task`` in ``folder`` whose ``task(report)`` returns ``returns`` and the environment
    variable BNLIB_TEST_MARK as the process sees it."""
    (folder / "edited_task.py").write_text(textwrap.dedent(f"""
        import os

        def task(report):
            return {returns!r}, os.environ.get("BNLIB_TEST_MARK")
        """))


def test_processes_see_the_callers_environment_and_modules_of_the_moment(tmp_path, monkeypatch, request):
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("BNLIB_TEST_MARK", raising=False)
    write_task(tmp_path, "first")
    import edited_task
    request.addfinalizer(lambda: sys.modules.pop("edited_task", None))

    assert run_in_processes([(edited_task.task, ())], progress=False) == [("first", None)]
    # The server process is running now, with the environment it started with.
    monkeypatch.setenv("BNLIB_TEST_MARK", "set after the first start")
    write_task(tmp_path, "the edited version")  # another size: no stale bytecode either
    results = run_in_processes([(edited_task.task, ()), (edited_task.task, ())], progress=False)
    assert results == [("the edited version", "set after the first start")] * 2


def test_split_by_cost_balances_the_parts_and_keeps_every_name():
    costs = {"a": 60, "b": 45, "c": 20, "d": 2}
    parts = split_by_cost(costs)
    assert sorted(sum(parts, [])) == sorted(costs) and parts[0][0] == "a"
    assert sorted(sum(costs[n] for n in part) for part in parts) == [62, 65]  # not 107 + 20 or any worse split
    assert split_by_cost({"only": 1.0}) == [["only"]]                        # no empty process

