"""mnistlab: one-hidden-layer networks on MNIST, plain, batch-normalised and weight-normalised."""

__version__ = "0.1.0"

from .config import Config, ConfigError, RunOptions, parse_params
from .data import DataError, MNISTSplits, fetch, load
from .models import MODELS, build_model, count_parameters
from .records import Record, RecordError
from .train import CheckpointError, run

__all__ = [
    "Config", "ConfigError", "RunOptions", "parse_params", "DataError", "MNISTSplits", "fetch", "load", "MODELS", "build_model",
    "count_parameters", "Record", "RecordError", "CheckpointError", "run",
]
