"""MNIST loading: from a local copy (gzipped or plain), checked byte for byte, never from a damaged file."""

import gzip
import os
import shutil
import warnings

import pytest
import torch

from bnlib.course import data
from bnlib.course.data import SHA256, MNISTUnavailable, load_mnist, prepare_mnist

# Published class counts of the MNIST training and test sets.
TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.fixture(scope="module")
def source():
    """The local MNIST copy CI provides, else the course's own checked copy in data/."""
    return os.environ.get("BNLIB_MNIST_DIR") or str(prepare_mnist())


@pytest.fixture
def offline(monkeypatch):
    """Make any download attempt fail as it does without internet, and forget BNLIB_MNIST_DIR."""
    import torchvision.datasets

    class NoNetwork(torchvision.datasets.MNIST):
        def download(self):
            raise RuntimeError("Error downloading train-images-idx3-ubyte.gz: no network")

    monkeypatch.setattr(torchvision.datasets, "MNIST", NoNetwork)
    monkeypatch.delenv("BNLIB_MNIST_DIR", raising=False)


def test_local_copy_loads_with_the_published_shapes_values_and_counts(tmp_path, source):
    images, labels = load_mnist(train=True, root=tmp_path, source=source)
    assert images.shape == (60000, 784) and images.dtype == torch.float32
    assert labels.dtype == torch.int64
    assert images.min() == 0.0 and images.max() == 1.0
    assert labels.bincount().tolist() == TRAIN_COUNTS
    test_images, test_labels = load_mnist(train=False, flatten=False, root=tmp_path)
    assert test_images.shape == (10000, 1, 28, 28)
    assert test_labels.bincount().tolist() == TEST_COUNTS
    assert data.damaged_files(tmp_path / "MNIST" / "raw") == []


def test_uncompressed_local_copy_is_accepted(tmp_path, source):
    plain = tmp_path / "plain"
    raw = prepare_mnist(tmp_path / "first", source)
    shutil.copytree(raw, plain)
    assert prepare_mnist(tmp_path / "second", plain) == tmp_path / "second" / "MNIST" / "raw"
    _, labels = load_mnist(train=False, root=tmp_path / "second")
    assert labels.bincount().tolist() == TEST_COUNTS


def test_corrupt_local_copy_is_refused_with_a_way_out(tmp_path, source):
    bad = tmp_path / "bad"
    shutil.copytree(prepare_mnist(tmp_path / "good", source), bad)
    with open(bad / "t10k-labels-idx1-ubyte", "r+b") as f:
        f.seek(100)
        label = f.read(1)[0]
        f.seek(100)
        f.write(bytes([(label + 1) % 10]))  # one label changed: the file still parses
    with pytest.raises(MNISTUnavailable, match="SHA-256 mismatch") as err:
        prepare_mnist(tmp_path / "target", bad)
    assert "BNLIB_MNIST_DIR" in str(err.value)
    assert not (tmp_path / "target" / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").exists()
    assert list((tmp_path / "target" / "MNIST" / "raw").glob("*.part")) == []


def test_truncated_gzip_is_refused(tmp_path, source):
    raw = prepare_mnist(tmp_path / "good", source)
    cut = tmp_path / "cut"
    cut.mkdir()
    for name in SHA256:
        shutil.copy(raw / name, cut / name)
    with gzip.open(cut / "train-labels-idx1-ubyte.gz", "wb") as f:
        f.write((raw / "train-labels-idx1-ubyte").read_bytes()[:30000])
    (cut / "train-labels-idx1-ubyte").unlink()
    with pytest.raises(MNISTUnavailable, match="train-labels-idx1-ubyte"):
        prepare_mnist(tmp_path / "target", cut)


def test_corrupt_file_in_data_is_detected_and_fetched_again_leaving_good_files_alone(tmp_path, source):
    raw = prepare_mnist(tmp_path, source)
    untouched = (raw / "train-images-idx3-ubyte").stat().st_mtime_ns
    (raw / "t10k-images-idx3-ubyte").write_bytes(b"partial download")
    with pytest.warns(UserWarning, match="failed their checksum"):
        prepare_mnist(tmp_path, source)
    assert data.damaged_files(raw) == []
    assert (raw / "train-images-idx3-ubyte").stat().st_mtime_ns == untouched


def test_missing_files_without_source_or_network_say_how_to_get_mnist(tmp_path, offline):
    with pytest.raises(MNISTUnavailable, match="downloading MNIST failed") as err:
        load_mnist(root=tmp_path)
    assert "BNLIB_MNIST_DIR" in str(err.value)
    assert data.damaged_files(tmp_path / "MNIST" / "raw") == list(SHA256)


def test_a_partial_download_is_never_used(tmp_path, monkeypatch):
    import torchvision.datasets

    class HalfDownload(torchvision.datasets.MNIST):
        def download(self):
            os.makedirs(self.raw_folder, exist_ok=True)
            for name in SHA256:
                with open(os.path.join(self.raw_folder, name), "wb") as f:
                    f.write(b"\x00\x00\x08\x03" + b"\x00" * 100)

    monkeypatch.setattr(torchvision.datasets, "MNIST", HalfDownload)
    monkeypatch.delenv("BNLIB_MNIST_DIR", raising=False)
    with pytest.raises(MNISTUnavailable, match="MNIST"):
        prepare_mnist(tmp_path)
    assert not any((tmp_path / "MNIST" / "raw").iterdir())


def test_missing_source_folder_is_named(tmp_path, offline):
    with pytest.raises(MNISTUnavailable, match="does not exist"):
        prepare_mnist(tmp_path, tmp_path / "nowhere")


def test_valid_files_are_not_copied_again(tmp_path, source):
    raw = prepare_mnist(tmp_path, source)
    before = {name: (raw / name).stat().st_mtime_ns for name in SHA256}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        prepare_mnist(tmp_path, tmp_path / "nowhere")
    assert {name: (raw / name).stat().st_mtime_ns for name in SHA256} == before
