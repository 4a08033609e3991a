"""Kaggle Digit Recognizer workbench: K-fold CNN ensembles, submissions, and a draw-a-digit demo."""

from .checkpoint import Checkpoint, load_checkpoint
from .config import RECIPES, TrainConfig
from .data import Digits, read_test, read_train
from .ensemble import Ensemble
from .errors import UserError
from .preprocess import preprocess, segment
from .recognize import Reading, recognize

__all__ = ["Checkpoint", "Digits", "Ensemble", "RECIPES", "Reading", "TrainConfig", "UserError", "load_checkpoint",
           "preprocess", "read_test", "read_train", "recognize", "segment"]
