"""An on-disk cache for experiment results, keyed by their configuration AND the code that computes them.

An experiment's settings are a :class:`Config`, a frozen dataclass with the defaults in its fields, and
``@experiment("name")`` makes its compute function cached: ``run(config)`` returns the stored result when
there is one, and ``run.is_cached(config)`` says whether there is (an explorer asks it before a slow draw).

Each result is a dict of numpy arrays stored as ``data/cache/<name>-<key>.npz``. The key is a hash of:

- the configuration, written as canonical JSON (numbers exactly, arrays in full; anything else refused);
- a fingerprint of the code: the source of the module that defines ``compute`` and of every ``bnlib``
  module it imports, directly or through others, plus the versions of Python, torch and numpy.

So changing a setting, or a line of any module an experiment depends on, computes the result afresh;
the old file stays where it was (nothing computed is ever overwritten). Files are written to a
temporary name and renamed into place, so a crash never leaves half a file under the real name; a
file that does not load (truncated, bad CRC, another configuration) is reported and recomputed. A lock
file per result makes a second process (a parallel test or figure worker) wait for the first's result
instead of computing it twice.
"""

import ast
import dataclasses
import fcntl
import functools
import hashlib
import importlib.util
import json
import os
import platform
import tempfile
import warnings
import zipfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from bnlib.course.data import data_dir

FORMAT_VERSION = 3


@dataclasses.dataclass(frozen=True)
class Config:
    """Base of an experiment's settings: subclasses are frozen dataclasses whose fields carry the defaults.
    ``config.replace(steps=300)`` is a copy with some settings changed (a misspelt one is a TypeError)."""

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)


def cache_dir():
    return data_dir() / "cache"


def canonical(value):
    """``value`` as plain JSON data, exactly: dict keys sorted by JSON, arrays and tuples as full lists, a
    :class:`Config` as its type's name and its fields."""
    if isinstance(value, Config):
        return {"type": type(value).__name__, **canonical(dataclasses.asdict(value))}
    if isinstance(value, dict):
        return {str(key): canonical(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [canonical(item) for item in value]
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):  # numpy arrays and scalars, tensors
        return canonical(value.tolist())
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"a cache configuration holds numbers, strings, lists, dicts and arrays; got {value!r} "
                    f"of type {type(value).__name__}: describe it by its settings instead")


def _module_file(name):
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):  # not a module (an imported name), or __main__ of a notebook
        return None
    return Path(spec.origin) if spec and spec.origin and spec.origin.endswith(".py") else None


def _imported_modules(path, name):
    """Names of the bnlib modules that the module ``name`` (source ``path``) imports anywhere in its code."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from .x import y, from .. import z
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)  # kept only if a module
    return {module for module in found if module.split(".")[0] == "bnlib"}


def code_modules(name):
    """The module ``name`` and every bnlib module it depends on: ``{module: source file}``, with the
    packages on the way (their ``__init__`` runs on import too)."""
    files, todo = {}, [name]
    while todo:
        module = todo.pop()
        parents = [".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 1)]
        for candidate in (module, *parents):
            if candidate in files:
                continue
            path = _module_file(candidate)
            if path is None and candidate != name:
                continue
            files[candidate] = path
            if path is not None:
                todo.extend(_imported_modules(path, candidate))
    return {module: path for module, path in files.items() if path is not None}


def code_fingerprint(name):
    """SHA-256 over the sources of ``code_modules(name)`` and the versions of Python, torch and numpy."""
    import torch

    digest = hashlib.sha256(f"{platform.python_version()} torch {torch.__version__} numpy {np.__version__}".encode())
    for module, path in sorted(code_modules(name).items()):
        digest.update(f"\n{module}\n".encode() + path.read_bytes())
    return digest.hexdigest()


def config_key(config, code):
    """``(key, text)``: the file key and the full canonical text of the configuration and code fingerprint."""
    text = json.dumps({"format": FORMAT_VERSION, "config": canonical(config), "code": code_fingerprint(code)},
                      sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16], text


def cache_path(name, config, code):
    return cache_dir() / f"{name}-{config_key(config, code)[0]}.npz"


def load(path, text):
    """The arrays stored at ``path`` if it holds a complete result whose key text is ``text``, else None."""
    try:
        with np.load(path, allow_pickle=False) as stored:
            arrays = {key: stored[key] for key in stored.files}
    except FileNotFoundError:
        return None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as err:
        warnings.warn(f"cache file {path} is damaged ({err}); recomputing it")
        return None
    if str(arrays.pop("__config__", "")) != text:
        warnings.warn(f"cache file {path} holds another configuration; recomputing it")
        return None
    return arrays


def save(path, text, arrays):
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".part.npz")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, __config__=np.array(text), **arrays)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


@contextmanager
def locked(path):
    """Hold an exclusive lock on ``path``'s lock file: one process computes a result, the others wait."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def cached(name, config, compute, code=None):
    """``compute()`` (a dict of arrays) for ``config``, from the cache when a valid copy is there.

    ``code`` names the module whose code computes the result (default: the module defining ``compute``);
    its source and that of every bnlib module it imports are part of the key.
    """
    code = code or getattr(compute, "__module__", None) or "__main__"
    key, text = config_key(config, code)
    path = cache_dir() / f"{name}-{key}.npz"
    with locked(path):  # a parallel process computing the same result finishes first; then we load it
        arrays = load(path, text)
        if arrays is None:
            arrays = {key: np.asarray(value) for key, value in compute().items()}
            save(path, text, arrays)
    return arrays


def experiment(name, settings):
    """Decorator: ``compute(config, **options)``, which returns a dict of arrays for a ``settings`` (a
    :class:`Config` subclass), becomes cached under ``name``; without a config it runs ``settings()``, the
    defaults. ``options`` (a progress bar, a number of processes) do not change the result and are not part
    of the key. The decorated function also has ``is_cached(config)``."""

    def checked(config, compute):
        config = settings() if config is None else config
        if not isinstance(config, settings):
            raise TypeError(f"{compute.__name__} takes its settings as a {settings.__name__}, got {config!r}; "
                            f"change a setting with {settings.__name__}().replace(name=value)")
        return config

    def decorate(compute):
        @functools.wraps(compute)
        def run(config=None, **options):
            config = checked(config, compute)
            return cached(name, config, lambda: compute(config, **options), compute.__module__)

        run.is_cached = lambda config=None: cache_path(name, checked(config, compute), compute.__module__).exists()
        run.compute = compute
        return run

    return decorate
