"""mnistlab: one-hidden-layer networks on MNIST, plain, batch-normalised and weight-normalised.

The core: ``Config`` and ``RunSpec`` (what a run is), ``register_model``/``MODELS`` (the models, each
declared once), ``fetch``/``load`` (the data), ``build_model``, ``run`` (training one config),
``runner`` (training a RunSpec, as the notebook and the CLI do) and ``Record`` (what a run produced).
Names that need torch are imported on first use, so ``import mnistlab`` and ``mnistlab.Config(...)``
stay fast. The lab (sweeps, the report) is ``mnistlab.lab``.
"""

import sys
from importlib import import_module
from pathlib import Path

from .config import Config, ConfigError
from .datasets import DATASETS, register_dataset
from .models import MODELS, build_model, count_parameters, one_hidden_layer, plugins, register_model
from .records import Record, RecordError
from .spec import RunSpec
from .version import __version__

_LAZY = {  # name -> module, imported when the name is first used (they import torch)
    "DataError": "data", "MNISTSplits": "data", "fetch": "data", "load": "data",
    "CheckpointError": "checkpoints", "run": "train", "runner": None,
}

__all__ = ["Config", "ConfigError", "DATASETS", "MODELS", "Record", "RecordError", "RunSpec", "__version__",
           "build_model", "count_parameters", "one_hidden_layer", "register_dataset", "register_model", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        module = import_module(f".{_LAZY[name] or name}", __name__)
        value = module if _LAZY[name] is None else getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mnistlab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


# A plugin that cannot be imported, when the ``mnistlab`` command is starting: it says so in a sentence
# (``cli.main``). Anywhere else (Python, a notebook, a kernel, a worker) the import fails as imports do.
PLUGIN_ERROR: ImportError | None = None

try:
    plugins()  # models of the user's own ($MNISTLAB_PLUGINS), registered after the study's three
except ImportError as error:
    if Path((getattr(sys, "argv", None) or [""])[0]).name != "mnistlab":
        raise
    PLUGIN_ERROR = error
