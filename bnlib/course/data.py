"""MNIST, loaded the way torchvision users expect, checked byte for byte.

The four IDX files live in ``data/MNIST/raw/`` (torchvision's layout). They get there in one of two ways:

- a local copy: a folder holding ``train-images-idx3-ubyte`` and friends, plain or ``.gz``, named by the
  ``source`` argument or the ``BNLIB_MNIST_DIR`` environment variable, is checked and copied in;
- a download through ``torchvision.datasets.MNIST(download=True)`` when online.

Either way each uncompressed file must match its published SHA-256 before it is used, so a partial
download or a damaged copy is never read as data.
"""

import gzip
import hashlib
import os
import shutil
import tempfile
import warnings
from functools import lru_cache
from pathlib import Path

import torch

# SHA-256 of the four uncompressed MNIST files (LeCun, Cortes & Burges).
SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}

TRAIN_EXAMPLES = 60_000  # the size of MNIST's training set

HOW_TO_GET_MNIST = (
    "To get MNIST, either run once with internet access (torchvision downloads it into data/), "
    "or point BNLIB_MNIST_DIR (or the `source` argument) at a folder holding the four files "
    "train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte "
    "(plain or .gz)."
)


class MNISTUnavailable(RuntimeError):
    """MNIST is missing or damaged and could not be fetched."""


def project_root():
    """The course folder, where ``data/`` and ``figures/`` live (never inside site-packages).

    The checkout that holds this package when bnlib runs from a source tree or an editable install;
    otherwise (``pip install .``) the nearest folder at or above the working directory that holds the
    course (``notebooks/``), else the working directory itself.
    """
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "pyproject.toml").is_file() and (checkout / "notebooks").is_dir():
        return checkout
    here = Path.cwd()
    return next((folder for folder in (here, *here.parents) if (folder / "notebooks").is_dir()), here)


def data_dir():
    """``data/`` of the course, or ``BNLIB_DATA_DIR`` when set."""
    return Path(os.environ.get("BNLIB_DATA_DIR", project_root() / "data"))


@lru_cache(maxsize=64)
def _sha256_of_version(path, size, modified):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_of(path):
    """The file's SHA-256, computed once per process for each version (size, modification time) of it."""
    stat = os.stat(path)
    return _sha256_of_version(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


def raw_dir(root=None):
    return Path(root or data_dir()) / "MNIST" / "raw"


def damaged_files(folder):
    """Names of the MNIST files in ``folder`` that are missing or fail their checksum."""
    folder = Path(folder)
    return [name for name, digest in SHA256.items()
            if not (folder / name).is_file() or sha256_of(folder / name) != digest]


def _find_in_source(source, name):
    source = Path(source)
    for folder in (source, source / "MNIST" / "raw", source / "raw"):
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    return None


def _install_file(candidate, target):
    """Uncompress (if needed) ``candidate`` next to ``target``, check it, then move it in place atomically."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    try:
        opener = gzip.open if candidate.suffix == ".gz" else open
        with opener(candidate, "rb") as src, os.fdopen(fd, "wb") as dst:
            shutil.copyfileobj(src, dst)
        if sha256_of(tmp) != SHA256[target.name]:
            raise MNISTUnavailable(f"{candidate} is not the published MNIST file {target.name} "
                                   f"(SHA-256 mismatch: damaged or a different data set). {HOW_TO_GET_MNIST}")
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except (OSError, EOFError, gzip.BadGzipFile) as err:
        raise MNISTUnavailable(f"could not read {candidate} ({err}). {HOW_TO_GET_MNIST}") from err
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _copy_from(source, raw, names):
    if not Path(source).is_dir():
        raise MNISTUnavailable(f"the MNIST folder {source} does not exist. {HOW_TO_GET_MNIST}")
    for name in names:
        candidate = _find_in_source(source, name)
        if candidate is None:
            raise MNISTUnavailable(f"{name} (or {name}.gz) is not in {source}. {HOW_TO_GET_MNIST}")
        _install_file(candidate, raw / name)


def _download(raw, names):
    """Download through torchvision into a scratch folder; only checked files are moved into ``raw``."""
    from torchvision.datasets import MNIST

    with tempfile.TemporaryDirectory(dir=raw.parent.parent, prefix=".mnist-download-") as scratch:
        try:
            MNIST(scratch, train=True, download=True)
            MNIST(scratch, train=False, download=True)
        except Exception as err:  # torchvision raises RuntimeError, URLError, HTTPError, ...
            raise MNISTUnavailable(f"downloading MNIST failed ({err}). {HOW_TO_GET_MNIST}") from err
        for name in names:
            _install_file(Path(scratch) / "MNIST" / "raw" / name, raw / name)


def prepare_mnist(root=None, source=None):
    """Make sure the four checked MNIST files are in ``root/MNIST/raw``; return that folder.

    A file that is missing or fails its checksum is fetched again: from ``source`` (or
    ``BNLIB_MNIST_DIR``) when given, else downloaded. Valid files already in place are left alone.
    """
    raw = raw_dir(root)
    raw.mkdir(parents=True, exist_ok=True)
    bad = damaged_files(raw)
    if not bad:
        return raw
    corrupt = [name for name in bad if (raw / name).exists()]
    if corrupt:
        warnings.warn(f"MNIST files in {raw} failed their checksum and are fetched again: {', '.join(corrupt)}")
    source = source or os.environ.get("BNLIB_MNIST_DIR")
    if source:
        _copy_from(source, raw, bad)
    else:
        _download(raw, bad)
    return raw


def read_idx(path):
    """An IDX file (MNIST's format) as a uint8 tensor: a big-endian header (zero, zero, type 0x08 for
    unsigned bytes, the number of dimensions d), d sizes as big-endian int32, then the bytes."""
    raw = Path(path).read_bytes()
    if raw[:3] != b"\x00\x00\x08":
        raise MNISTUnavailable(f"{path} is not an IDX file of unsigned bytes. {HOW_TO_GET_MNIST}")
    dims = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(dims))
    return torch.frombuffer(bytearray(raw[4 + 4 * dims:]), dtype=torch.uint8).reshape(shape)


def load_mnist(train=True, flatten=True, root=None, source=None):
    """MNIST as tensors: float32 images in [0, 1] and int64 labels.

    Images are ``(N, 784)`` when ``flatten`` else ``(N, 1, 28, 28)``; N is 60,000 for ``train`` and
    10,000 for the test set. The files are checked (``prepare_mnist``), then read directly.
    """
    raw = prepare_mnist(root, source)
    prefix = "train" if train else "t10k"
    images = read_idx(raw / f"{prefix}-images-idx3-ubyte").to(torch.float32).div_(255.0)
    images = images.reshape(len(images), -1) if flatten else images.unsqueeze(1)
    return images, read_idx(raw / f"{prefix}-labels-idx1-ubyte").to(torch.int64)


if __name__ == "__main__":
    print(f"MNIST is ready in {prepare_mnist()}")
