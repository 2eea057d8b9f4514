"""The result cache: keyed by configuration and code, damaged files recomputed, never half-written, computed once."""

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from bnlib.course import cache


@pytest.fixture(autouse=True)
def scratch_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("BNLIB_DATA_DIR", str(tmp_path))


class Counter:
    def __init__(self, value):
        self.calls, self.value = 0, value

    def __call__(self):
        self.calls += 1
        return {"steps": np.arange(5), "accuracy": np.full(5, self.value)}


def test_second_call_loads_what_the_first_computed():
    compute = Counter(0.97)
    first = cache.cached("run", {"lr": 0.5}, compute)
    second = cache.cached("run", {"lr": 0.5}, compute)
    assert compute.calls == 1
    np.testing.assert_array_equal(first["accuracy"], second["accuracy"])
    assert set(second) == {"steps", "accuracy"}


def test_each_configuration_has_its_own_entry():
    cache.cached("run", {"lr": 0.5}, Counter(1.0))
    other = cache.cached("run", {"lr": 0.1}, Counter(2.0))
    assert other["accuracy"][0] == 2.0
    assert len(list(cache.cache_dir().glob("run-*.npz"))) == 2


@dataclass(frozen=True)
class Toy(cache.Config):
    lr: float = 0.5
    steps: int = 5


CALLS = []


@cache.experiment("toy", Toy)
def toy_run(config, progress=True):
    CALLS.append((config, progress))
    return {"losses": np.full(config.steps, config.lr)}


def test_a_typed_configuration_keys_an_experiment_and_options_do_not():
    CALLS.clear()
    assert not toy_run.is_cached() and not toy_run.is_cached(Toy(lr=0.1))
    assert toy_run()["losses"].tolist() == [0.5] * 5  # the defaults, Toy()
    assert toy_run.is_cached() and toy_run.is_cached(Toy(lr=0.5, steps=5)) and not toy_run.is_cached(Toy(lr=0.1))
    toy_run(Toy(), progress=False)  # an option: the same result, from the cache
    assert toy_run(Toy().replace(lr=0.1))["losses"].tolist() == [0.1] * 5
    assert CALLS == [(Toy(), True), (Toy(lr=0.1), True)]
    assert toy_run.compute(Toy(steps=2), progress=False)["losses"].tolist() == [0.5, 0.5]  # uncached
    assert not toy_run.is_cached(Toy(steps=2))


def test_an_experiment_refuses_settings_that_are_not_its_configuration():
    with pytest.raises(TypeError, match="takes its settings as a Toy"):
        toy_run({"lr": 0.5, "steps": 5})
    with pytest.raises(TypeError, match="rate"):
        Toy().replace(rate=0.1)


def test_a_configuration_is_keyed_by_its_type_and_fields():
    @dataclass(frozen=True)
    class Other(cache.Config):
        lr: float = 0.5
        steps: int = 5

    assert cache.canonical(Toy()) == {"type": "Toy", "lr": 0.5, "steps": 5}
    assert cache.config_key(Toy(), __name__) != cache.config_key(Other(), __name__)


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage"])
def test_a_damaged_file_is_detected_and_recomputed(damage):
    config = {"lr": 0.5}
    cache.cached("run", config, Counter(1.0))
    path = cache.cache_path("run", config, __name__)
    raw = bytearray(path.read_bytes())
    if damage == "truncate":
        raw = raw[: len(raw) // 2]
    elif damage == "flip":
        offset = raw.index(b"accuracy.npy") + 200  # inside the stored array's bytes
        raw[offset] ^= 0xFF
    else:
        raw = bytearray(b"not a zip file")
    path.write_bytes(bytes(raw))
    again = Counter(1.0)
    with pytest.warns(UserWarning, match="damaged"):
        result = cache.cached("run", config, again)
    assert again.calls == 1
    np.testing.assert_array_equal(result["accuracy"], np.full(5, 1.0))
    assert cache.load(path, cache.config_key(config, __name__)[1]) is not None


def test_a_file_holding_another_configuration_is_not_trusted():
    cache.cached("run", {"lr": 0.5}, Counter(1.0))
    cache.cache_path("run", {"lr": 0.5}, __name__).rename(cache.cache_path("run", {"lr": 0.1}, __name__))
    again = Counter(2.0)
    with pytest.warns(UserWarning, match="another configuration"):
        result = cache.cached("run", {"lr": 0.1}, again)
    assert again.calls == 1 and result["accuracy"][0] == 2.0


def test_a_failed_computation_leaves_no_file():
    def broken():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cache.cached("run", {"lr": 0.5}, broken)
    assert not list(cache.cache_dir().glob("*.npz"))  # no result and no partial file (".*.part.npz")
    assert not list(cache.cache_dir().glob(".*part*"))


def test_arrays_in_a_configuration_are_keyed_in_full():
    """json.dumps(default=str) abbreviates long arrays with '...': two of them would share a key."""
    first, second = np.zeros(2000), np.zeros(2000)
    second[1000] = 1.0
    assert cache.config_key({"w": first}, __name__) != cache.config_key({"w": second}, __name__)
    assert cache.config_key({"w": (1, 2)}, __name__) == cache.config_key({"w": np.array([1, 2])}, __name__)


def test_a_configuration_that_cannot_be_written_exactly_is_refused():
    with pytest.raises(TypeError, match="describe it by its settings"):
        cache.config_key({"model": object()}, __name__)


def test_the_code_of_an_experiment_and_of_what_it_imports_is_part_of_the_key():
    modules = cache.code_modules("bnlib.course.ch06.paper")
    assert {"bnlib.course.ch06.paper", "bnlib.course.ch06.fast_trainer", "bnlib.functional", "bnlib.layers",
            "bnlib.course.cache", "bnlib.course.drift"} <= set(modules)
    assert "bnlib.course.ch07.landscape" not in modules  # another chapter's code does not invalidate this one


EDITED_EXPERIMENT = """
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import numpy as np
from bnlib.course.ch02 import recording
assert recording.__file__.startswith(sys.argv[1]), recording.__file__
calls = []
recording.train_and_record = lambda config, progress: calls.append(1) or {"steps": np.arange(3)}
recording.drift_run(progress=False)
print(len(calls))
"""


def test_editing_an_experiments_source_recomputes_its_result(tmp_path):
    """A learner edits a line of an experiment (in a copy of bnlib) and reruns: the result is computed anew."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    import bnlib

    copy = tmp_path / "code"
    shutil.copytree(Path(bnlib.__file__).parent, copy / "bnlib", ignore=shutil.ignore_patterns("__pycache__"))

    def run():
        out = subprocess.run([sys.executable, "-c", EDITED_EXPERIMENT, str(copy)], capture_output=True, text=True,
                             env={**os.environ, "BNLIB_DATA_DIR": str(tmp_path / "data")}, check=True)
        return int(out.stdout.split()[-1])

    assert run() == 1   # computed
    assert run() == 0   # cached
    module = copy / "bnlib" / "course" / "ch02" / "recording.py"
    module.write_text(module.read_text().replace("np.arange(0, 101, 5)", "np.arange(0, 101, 5.0)"))
    assert run() == 1   # the experiment's own code changed
    assert run() == 0
    core = copy / "bnlib" / "functional.py"
    core.write_text(core.read_text() + "\n# a comment is a change too\n")
    assert run() == 1   # a library module it imports changed


def compute_slowly_once(path_text):
    import time

    counter = Path(path_text)
    with counter.open("a") as f:
        f.write("x")
    time.sleep(1.0)
    return {"value": np.arange(3)}


def test_two_processes_asking_for_the_same_result_compute_it_once(tmp_path):
    from concurrent.futures import ProcessPoolExecutor
    from functools import partial

    counter = tmp_path / "calls"
    counter.touch()
    with ProcessPoolExecutor(2) as pool:
        futures = [pool.submit(cache.cached, "slow", {"n": 3}, partial(compute_slowly_once, str(counter)), __name__)
                   for _ in range(2)]
        results = [future.result(timeout=60) for future in futures]
    assert counter.read_text() == "x"
    for result in results:
        np.testing.assert_array_equal(result["value"], np.arange(3))
