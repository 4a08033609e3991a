"""Kaggle Digit Recognizer workbench: K-fold CNN ensembles, submissions, and a draw-a-digit demo.

The names below are imported on first use, so `python -m competition --help` does not load PyTorch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .checkpoint import Checkpoint, load_checkpoint
    from .config import RECIPES, TrainConfig
    from .data import Digits, read_test, read_train
    from .ensemble import Ensemble
    from .errors import UserError
    from .preprocess import preprocess, segment
    from .recognize import Reading, recognize

_WHERE = {"Checkpoint": "checkpoint", "load_checkpoint": "checkpoint", "RECIPES": "config", "TrainConfig": "config",
          "Digits": "data", "read_test": "data", "read_train": "data", "Ensemble": "ensemble", "UserError": "errors",
          "preprocess": "preprocess", "segment": "preprocess", "Reading": "recognize", "recognize": "recognize"}
__all__ = ["Checkpoint", "Digits", "Ensemble", "RECIPES", "Reading", "TrainConfig", "UserError", "load_checkpoint",
           "preprocess", "read_test", "read_train", "recognize", "segment"]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'competition' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
