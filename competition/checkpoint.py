"""Self-describing checkpoints: weights + config + normalisation + metrics. One loader for all."""

from __future__ import annotations

import math
import pickle
import re
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .config import REFERENCE_RECIPE, TrainConfig
from .errors import UserError
from .io import atomic_write, versions
from .model import NORMALIZE, build_model

FORMAT = "competition-checkpoint/1"


@dataclass
class Checkpoint:
    model: nn.Module  # in eval mode, on the CPU
    config: TrainConfig
    normalize: dict[str, float]  # applied to x / 255
    path: Path
    fold: int | None = None  # None for a model trained on all rows or a bare state dict
    metrics: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # history, OOF predictions, data fingerprint...


def save_checkpoint(path: Path, model: nn.Module, config: TrainConfig, *, fold: int | None,
                    metrics: dict[str, Any], extra: dict[str, Any]) -> None:
    state = {k: v.detach().cpu().float() if v.is_floating_point() else v.cpu()
             for k, v in model.state_dict().items()}
    payload = {
        "format": FORMAT, "arch": config.arch, "state_dict": state, "config": config.to_dict(),
        "normalize": NORMALIZE, "fold": fold, "metrics": metrics, "versions": versions(), **extra,
    }
    try:
        atomic_write(path, lambda handle: torch.save(payload, handle))
    except RuntimeError as exc:  # torch.save reports a failed write (a full disk, say) as a RuntimeError
        raise UserError(f"{path}: cannot write the checkpoint ({_first_line(exc)}); is the disk full?") from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _why_unloadable(exc: BaseException) -> str:
    """torch.load's reason in a few words: its weights-only refusals are paragraphs that suggest weights_only=False."""
    text = str(exc)
    found = re.search(r"Unsupported global: GLOBAL (\S+)", text)
    if found:
        return (f"it pickles {found.group(1)}, not only tensors, and unpickling that could run code; "
                f"save the model's state_dict() instead")
    if "WeightsUnpickler error" in text:
        return "not a file of tensors that torch.save wrote"
    return _first_line(exc)


def _checked_normalize(value: object) -> dict[str, float]:
    """The normalisation a checkpoint names, if it is one a model can predict with."""
    if not isinstance(value, dict) or not {"mean", "std"} <= set(value):
        raise UserError(f"normalize is {value!r}, not {{'mean': ..., 'std': ...}}")
    mean, std = value["mean"], value["std"]
    if not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in (mean, std)) or std <= 0:
        raise UserError(f"normalize has mean {mean!r} and std {std!r}: needs finite numbers and std > 0")
    return {"mean": float(mean), "std": float(std)}


def _read_ours(payload: dict[str, Any]) -> tuple[TrainConfig, Any, dict[str, float]]:
    """(config, state dict, normalisation) of a checkpoint in FORMAT; UserError naming what is missing or wrong."""
    missing = [key for key in ("config", "state_dict", "normalize") if key not in payload]
    if missing:
        raise UserError(f"lacks {', '.join(missing)}")
    if not isinstance(payload["config"], dict):
        raise UserError(f"config is a {type(payload['config']).__name__}, not a dict")
    return TrainConfig.from_dict(payload["config"], base=REFERENCE_RECIPE).validate(), payload["state_dict"], _checked_normalize(payload["normalize"])


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
        with warnings.catch_warnings():  # a pickle of another protocol is refused below in one line; torch's note is noise
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        raise UserError(f"{path}: not a loadable PyTorch checkpoint ({_why_unloadable(exc)})") from exc
    if not isinstance(payload, dict):
        raise UserError(f"{path}: holds a {type(payload).__name__}, not a checkpoint or state dict")
    if payload.get("format") == FORMAT:
        try:
            config, state, normalize = _read_ours(payload)
        except UserError as exc:
            raise UserError(f"{path}: {exc}") from exc
        meta = {k: v for k, v in payload.items() if k not in ("format", "state_dict", "config", "normalize", "fold", "metrics", "arch")}
        fold, metrics = payload.get("fold"), payload.get("metrics", {})
    elif all(isinstance(v, torch.Tensor) for v in payload.values()):
        # The original notebook: torch.save(model.state_dict(), "mnist_cnn.pth"), inputs at mean/std 0.5.
        config, state, normalize, meta, fold, metrics = REFERENCE_RECIPE, payload, NORMALIZE, {}, None, {}
    else:
        raise UserError(f"{path}: a dict, but neither a {FORMAT} checkpoint nor a state dict")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"{path}: state_dict is not a dict of tensors")
    broken = [name for name, value in state.items() if value.is_floating_point() and not torch.isfinite(value).all()]
    if broken:
        raise UserError(f"{path}: weights hold NaN or infinity ({broken[0]}): a diverged run cannot predict")
    model = build_model(config.arch, dropout=config.dropout)
    try:
        model.load_state_dict(_strip_prefix(dict(state)))
    except RuntimeError as exc:
        raise UserError(f"{path}: weights do not fit the {config.arch!r} CNN ({_first_line(exc)})") from exc
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
