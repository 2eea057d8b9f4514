"""The result cache: keyed by configuration, damaged files recomputed, never half-written."""

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


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage"])
def test_a_damaged_file_is_detected_and_recomputed(damage):
    config = {"lr": 0.5}
    cache.cached("run", config, Counter(1.0))
    path = cache.cache_path("run", config)
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
    assert cache.load(path, config) is not None


def test_a_file_holding_another_configuration_is_not_trusted():
    cache.cached("run", {"lr": 0.5}, Counter(1.0))
    cache.cache_path("run", {"lr": 0.5}).rename(cache.cache_path("run", {"lr": 0.1}))
    again = Counter(2.0)
    with pytest.warns(UserWarning, match="another configuration"):
        result = cache.cached("run", {"lr": 0.1}, again)
    assert again.calls == 1 and result["accuracy"][0] == 2.0


def test_a_failed_computation_leaves_no_file():
    def broken():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cache.cached("run", {"lr": 0.5}, broken)
    assert not cache.cache_dir().exists() or not any(cache.cache_dir().iterdir())
