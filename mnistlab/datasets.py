"""The datasets a run may name, each declared once (``register_dataset``), torch-free at import.

A dataset is a function that loads its train, validation and test splits onto a device
(``data.MNISTSplits``: normalised float rows and integer labels). Only MNIST ships with mnistlab. A
record names the dataset it trained on and carries a digest of its test labels (``labels_digest``), so
that its predictions are never scored against another test set.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module
from typing import Any


@dataclass(frozen=True)
class Dataset:
    """A registered dataset: its name, a one-line description, and the function that loads it, or its import
    path ("module:function", imported on first use: how MNIST's loader in ``mnistlab.data``, which needs torch
    and imports this module, is named here without importing it)."""

    name: str
    description: str
    loader: Callable[..., Any] | str  # (data_dir, *, device, train_size, validation) -> data.MNISTSplits

    def load(self, data_dir=None, *, device="cpu", train_size: int, validation: bool = True):
        """The dataset's train, validation and test splits on ``device`` (``data.MNISTSplits``)."""
        loader = self.loader
        if isinstance(loader, str):
            module, _, name = loader.partition(":")
            loader = getattr(import_module(module), name)
        return loader(data_dir, device=device, train_size=train_size, validation=validation)


DATASETS: dict[str, Dataset] = {}


def register_dataset(name: str, description: str) -> Callable:
    """Decorator: register ``load(data_dir, *, device, train_size, validation)`` as dataset ``name``."""
    def register(load: Callable[..., Any]) -> Callable[..., Any]:
        DATASETS[name] = Dataset(name, description, load)
        return load

    return register


# SHA-256 of the official MNIST test labels (t10k-labels-idx1-ubyte without its 8-byte header) as uint8 bytes: the
# test set of every record that names none (all of them before records named their test set).
MNIST_TEST_LABELS = "ddeff807876a9661a1110d45c266c86239a3a1b7d37da0c3716a7a683c852ff5"


def labels_digest(labels: Any) -> str:
    """SHA-256 (hex) of test labels as uint8 bytes in test-set order: how a record names the test set its
    predictions were made on."""
    import numpy as np

    labels = np.asarray(labels)
    if labels.ndim != 1 or (labels.size and (labels.min() < 0 or labels.max() > 255)):
        raise ValueError(f"test labels must be a flat array of class numbers 0-255; got shape {labels.shape}")
    return hashlib.sha256(np.ascontiguousarray(labels, dtype=np.uint8).tobytes()).hexdigest()


DATASETS["mnist"] = Dataset("mnist", "MNIST: 60,000 training and 10,000 test images of handwritten digits, 28 x 28",
                            "mnistlab.data:load")
