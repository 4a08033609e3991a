"""Average the fold models' softmax: the ensemble behind submit, evaluate, predict and the demo."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .checkpoint import Checkpoint, find_checkpoints, load_checkpoint
from .errors import UserError
from .infer import pick_device, predict_views, tta_views


@dataclass
class Ensemble:
    members: list[Checkpoint]
    source: Path  # the run folder or checkpoint file it was loaded from

    @classmethod
    def load(cls, models: str | Path) -> Ensemble:
        device = pick_device()
        members = [load_checkpoint(p) for p in find_checkpoints(models)]
        for member in members:
            member.model.to(device).to(memory_format=torch.channels_last)  # matches infer.to_input's layout
        return cls(members=members, source=Path(models))

    def member_probs(self, images: np.ndarray, *, progress: bool = False) -> np.ndarray:
        """(models, N, 10) softmax of each member for uint8 images (N, 28, 28), with test-time augmentation where
        the member's config asks for it (as its OOF score was measured). progress: a bar over the members on stderr."""
        views = tta_views(images) if any(m.config.tta for m in self.members) else [images]  # rotated once for all
        members = tqdm(self.members, desc="predict", unit="model", disable=not progress, dynamic_ncols=True)
        probs = []
        for member in members:
            probs.append(predict_views(member.model, views if member.config.tta else [images], member.normalize,
                                       bf16=member.config.bf16))
            if not np.isfinite(probs[-1]).all():
                raise UserError(f"{member.path}: predicts NaN or infinite probabilities; retrain this run")
        return np.stack(probs) if probs else np.empty((0, len(images), 10), np.float32)

    def predict_proba(self, images: np.ndarray, *, progress: bool = False) -> np.ndarray:
        """(N, 10) mean of the members' softmax."""
        return self.member_probs(images, progress=progress).mean(0)

    def cv_score(self) -> float | None:
        """OOF accuracy from the run's cv_report.json, else the mean of the members' fold accuracy."""
        report = self.source / "cv_report.json"
        if report.is_file():
            return float(json.loads(report.read_text())["oof_accuracy"])
        accs = [m.metrics["val_acc"] for m in self.members if "val_acc" in m.metrics]
        return float(np.mean(accs)) if accs else None
