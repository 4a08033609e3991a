"""Self-describing checkpoints: weights + config + normalisation + metrics. One loader for all."""

from __future__ import annotations

import os
import pickle
import platform
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .config import TrainConfig
from .errors import UserError
from .model import build_model

FORMAT = "competition-checkpoint/1"
# The original notebook normalised with Normalize((0.5,), (0.5,)); every model here uses the same.
NOTEBOOK_NORM = {"mean": 0.5, "std": 0.5}


@dataclass
class Checkpoint:
    model: nn.Module  # in eval mode, on the CPU
    config: TrainConfig
    normalize: dict[str, float]  # applied to x / 255
    path: Path
    fold: int | None = None  # None for a model trained on all rows or a bare state dict
    metrics: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # history, OOF predictions, data fingerprint...


def versions() -> dict[str, str]:
    import numpy

    return {"torch": str(torch.__version__), "numpy": numpy.__version__, "python": platform.python_version()}


def atomic_write(path: Path, write: Any, mode: str = "wb") -> None:
    """Write through a temporary file in the same folder, then rename: never a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as handle:
            write(handle)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_checkpoint(path: Path, model: nn.Module, config: TrainConfig, *, fold: int | None,
                    metrics: dict[str, Any], extra: dict[str, Any]) -> None:
    state = {k: v.detach().cpu().float() if v.is_floating_point() else v.cpu()
             for k, v in model.state_dict().items()}
    payload = {
        "format": FORMAT, "arch": config.arch, "state_dict": state, "config": config.to_dict(),
        "normalize": NOTEBOOK_NORM, "fold": fold, "metrics": metrics, "versions": versions(), **extra,
    }
    atomic_write(path, lambda handle: torch.save(payload, handle))


def _strip_prefix(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """DataParallel / torch.compile save keys as 'module.conv1.weight' / '_orig_mod.conv1.weight'."""
    for prefix in ("module.", "_orig_mod."):
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Load a checkpoint of ours or the original notebook's bare `mnist_cnn.pth` state dict.

    weights_only=True: a checkpoint is data and never runs code on load.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such checkpoint file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{path}: not a loadable PyTorch checkpoint ({first})") from exc
    if not isinstance(payload, dict):
        raise UserError(f"{path}: holds a {type(payload).__name__}, not a checkpoint or state dict")
    if payload.get("format") == FORMAT:
        config = TrainConfig.from_dict(payload["config"])
        state, normalize = payload["state_dict"], payload["normalize"]
        meta = {k: v for k, v in payload.items() if k not in ("format", "state_dict", "config", "normalize", "fold", "metrics", "arch")}
        fold, metrics = payload.get("fold"), payload.get("metrics", {})
    elif all(isinstance(v, torch.Tensor) for v in payload.values()):
        # The original notebook: torch.save(model.state_dict(), "mnist_cnn.pth"), inputs at mean/std 0.5.
        config, state, normalize, meta, fold, metrics = TrainConfig(), payload, NOTEBOOK_NORM, {}, None, {}
    else:
        raise UserError(f"{path}: a dict, but neither a {FORMAT} checkpoint nor a state dict")
    model = build_model(config.arch, dropout=config.dropout)
    try:
        model.load_state_dict(_strip_prefix(dict(state)))
    except RuntimeError as exc:
        detail = str(exc).splitlines()[0]
        raise UserError(f"{path}: weights do not fit the {config.arch!r} CNN ({detail})") from exc
    model.eval()
    return Checkpoint(model=model, config=config, normalize=dict(normalize), path=path, fold=fold,
                      metrics=dict(metrics), extra=meta)


def find_checkpoints(models: str | Path) -> list[Path]:
    """A checkpoint file, or every fold*.pt in a run folder (sorted)."""
    models = Path(models)
    if models.is_file():
        return [models]
    if models.is_dir():
        found = sorted(models.glob("fold*.pt"))
        if not found:
            raise UserError(f"{models}: no fold*.pt checkpoints here; run `make cv` (or `python -m competition cv`) first")
        return found
    raise UserError(f"{models}: no such checkpoint file or run folder")


def latest_run(root: Path = Path("models")) -> Path:
    """The most recently written run folder under models/ (for `submit` / `demo` without --models)."""
    runs = [p.parent for p in root.glob("*/fold*.pt")]
    if not runs:
        raise UserError(f"no trained models under {root}/; run `make cv` first")
    return max(runs, key=lambda run: max(f.stat().st_mtime for f in run.glob("fold*.pt")))
