"""A small on-disk cache for experiment results, keyed by their full configuration.

Each result is a dict of numpy arrays stored as ``data/cache/<name>-<key>.npz``, where the key is a
hash of the configuration. Files are written to a temporary name and renamed into place, so a crash
never leaves half a file under the real name; a file that does not load (truncated, bad CRC, wrong
configuration) is reported and recomputed.
"""

import hashlib
import json
import os
import tempfile
import warnings
import zipfile
from pathlib import Path

import numpy as np

from bnlib.course.data import data_dir

FORMAT_VERSION = 1


def cache_dir():
    return data_dir() / "cache"


def config_key(config):
    text = json.dumps({"format": FORMAT_VERSION, **config}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16], text


def cache_path(name, config):
    return cache_dir() / f"{name}-{config_key(config)[0]}.npz"


def load(path, config):
    """The arrays stored at ``path`` if it holds a complete result for ``config``, else None."""
    try:
        with np.load(path, allow_pickle=False) as stored:
            arrays = {key: stored[key] for key in stored.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as err:
        warnings.warn(f"cache file {path} is damaged ({err}); recomputing it")
        return None
    if str(arrays.pop("__config__", "")) != config_key(config)[1]:
        warnings.warn(f"cache file {path} holds another configuration; recomputing it")
        return None
    return arrays


def save(path, config, arrays):
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".part.npz")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, __config__=np.array(config_key(config)[1]), **arrays)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def cached(name, config, compute):
    """``compute()`` (a dict of arrays) for ``config``, from the cache when a valid copy is there."""
    path = cache_path(name, config)
    if path.exists():
        arrays = load(path, config)
        if arrays is not None:
            return arrays
    arrays = {key: np.asarray(value) for key, value in compute().items()}
    save(path, config, arrays)
    return arrays
