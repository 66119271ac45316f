"""mnistlab: one-hidden-layer networks on MNIST, plain, batch-normalised and weight-normalised.

The core: ``Config`` and ``RunSpec`` (what a run is), ``fetch``/``load`` (the data), ``build_model``,
``run`` (training) and ``Record`` (what a run produced). Names that need torch are imported on
first use, so ``import mnistlab`` and ``mnistlab.Config(...)`` stay fast. The lab (sweeps, the
report) is ``mnistlab.lab``.
"""

from importlib import import_module

__version__ = "0.3.0"

from .config import MODELS, Config, ConfigError  # noqa: E402
from .records import Record, RecordError  # noqa: E402
from .spec import RunSpec  # noqa: E402

_LAZY = {  # name -> module, imported when the name is first used (they import torch)
    "DataError": "data", "MNISTSplits": "data", "fetch": "data", "load": "data",
    "build_model": "models", "count_parameters": "models",
    "CheckpointError": "train", "run": "train",
}

__all__ = ["Config", "ConfigError", "MODELS", "Record", "RecordError", "RunSpec", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mnistlab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
